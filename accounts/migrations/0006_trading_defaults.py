"""The embedded default for trading: the built-in demo platform with a demo
and a live account type, common instruments, and the staff roles' rights."""

from decimal import Decimal

from django.db import migrations

INSTRUMENTS = [
    # symbol, description, group, contract size, digits, profit currency
    ("EURUSD", "Euro vs US dollar", "fx_majors", "100000", 5, "USD"),
    ("GBPUSD", "Pound sterling vs US dollar", "fx_majors", "100000", 5, "USD"),
    ("USDJPY", "US dollar vs Japanese yen", "fx_majors", "100000", 3, "JPY"),
    ("USDCHF", "US dollar vs Swiss franc", "fx_majors", "100000", 5, "CHF"),
    ("AUDUSD", "Australian dollar vs US dollar", "fx_majors", "100000", 5, "USD"),
    ("USDCAD", "US dollar vs Canadian dollar", "fx_majors", "100000", 5, "CAD"),
    ("EURGBP", "Euro vs pound sterling", "fx_minors", "100000", 5, "GBP"),
    ("EURJPY", "Euro vs Japanese yen", "fx_minors", "100000", 3, "JPY"),
    ("USDTRY", "US dollar vs Turkish lira", "fx_exotics", "100000", 5, "TRY"),
    ("XAUUSD", "Gold vs US dollar", "metals", "100", 2, "USD"),
    ("XAGUSD", "Silver vs US dollar", "metals", "5000", 3, "USD"),
    ("USOIL", "WTI crude oil", "energies", "1000", 2, "USD"),
    ("US500", "S&P 500 index", "indices", "1", 1, "USD"),
    ("GER40", "DAX 40 index", "indices", "1", 1, "EUR"),
    ("BTCUSD", "Bitcoin vs US dollar", "crypto", "1", 2, "USD"),
    ("ETHUSD", "Ether vs US dollar", "crypto", "1", 2, "USD"),
]

ROLE_PERMISSIONS = {
    "Finance": [
        "accounts.view_platform",
        "accounts.view_accounttype",
        "accounts.view_instrument",
        "accounts.view_tradingaccount",
        "accounts.view_deal",
        "accounts.import_deal",
        "accounts.export_deal",
        "accounts.export_tradingaccount",
        "payments.view_tradingtransfer",
    ],
    "Compliance": [
        "accounts.view_tradingaccount",
        "accounts.view_deal",
        "payments.view_tradingtransfer",
    ],
    "Support": [
        "accounts.view_tradingaccount",
        "accounts.view_deal",
        "accounts.view_accounttype",
        "accounts.view_instrument",
        "payments.view_tradingtransfer",
    ],
    "Sales": [
        "accounts.view_tradingaccount",
        "accounts.view_deal",
        "accounts.view_accounttype",
    ],
}


def add_trading_defaults(apps, schema_editor):
    Platform = apps.get_model("accounts", "Platform")
    AccountType = apps.get_model("accounts", "AccountType")
    Instrument = apps.get_model("accounts", "Instrument")
    for symbol, description, group, size, digits, profit_currency in INSTRUMENTS:
        Instrument.objects.get_or_create(
            symbol=symbol,
            defaults={
                "description": description,
                "group": group,
                "contract_size": Decimal(size),
                "digits": digits,
                "profit_currency": profit_currency,
            },
        )
    platform, _ = Platform.objects.get_or_create(
        identifier="demo",
        defaults={"kind": "demo", "name": "Demo platform (built-in)", "settings": {}},
    )
    types = [
        ("Demo USD", True, "demo\\standard\\USD", 1),
        ("Standard USD", False, "real\\standard\\USD", 2),
        ("Standard EUR", False, "real\\standard\\EUR", 3),
    ]
    for name, is_demo, group, order in types:
        AccountType.objects.get_or_create(
            platform=platform,
            name=name,
            defaults={
                "is_demo": is_demo,
                "currency": group.rsplit("\\", 1)[-1],
                "currency_digits": 2,
                "leverage_choices": [30, 50, 100, 200, 500],
                "default_leverage": 100,
                "min_first_transfer": Decimal("0") if is_demo else Decimal("100"),
                "demo_balance": Decimal("10000"),
                "platform_group": group,
                "display_order": order,
            },
        )


def grant_trading_permissions(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_trading"),
        ("payments", "0010_trading_transfer"),
    ]

    operations = [
        migrations.RunPython(add_trading_defaults, migrations.RunPython.noop),
        migrations.RunPython(grant_trading_permissions, migrations.RunPython.noop),
    ]
