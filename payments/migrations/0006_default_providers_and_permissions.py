"""The built-in providers that work offline (manual bank wire, the sandbox
PSP, manual rates; the ECB and crypto rate feeds present but off), default
payment methods and markup, and what each staff role may do with deposits,
withdrawals, rates and methods."""

from decimal import Decimal

from django.db import migrations

FIAT = ["USD", "EUR", "GBP", "JPY", "CHF"]
CRYPTO = ["BTC", "ETH", "USDT"]

ROLE_PERMISSIONS = {
    "Finance": [
        "payments.view_deposit",
        "payments.confirm_deposit",
        "payments.view_withdrawal",
        "payments.approve_withdrawal",
        "payments.pay_withdrawal",
        "payments.view_webhookevent",
        "payments.view_conversion",
        "payments.view_transfer",
        "payments.view_paymentprovider",
        "payments.add_paymentprovider",
        "payments.change_paymentprovider",
        "payments.view_paymentmethod",
        "payments.add_paymentmethod",
        "payments.change_paymentmethod",
        "payments.view_ratesource",
        "payments.change_ratesource",
        "payments.view_rate",
        "payments.add_rate",
        "payments.change_rate",
        "payments.view_markup",
        "payments.add_markup",
        "payments.change_markup",
        "payments.delete_markup",
    ],
    "Compliance": [
        "payments.view_deposit",
        "payments.view_withdrawal",
        "payments.view_webhookevent",
        "payments.view_conversion",
        "payments.view_transfer",
    ],
    "Support": [
        "payments.view_deposit",
        "payments.view_withdrawal",
        "payments.view_conversion",
        "payments.view_transfer",
    ],
}


def add_defaults(apps, schema_editor):
    PaymentProvider = apps.get_model("payments", "PaymentProvider")
    PaymentMethod = apps.get_model("payments", "PaymentMethod")
    RateSource = apps.get_model("payments", "RateSource")
    Markup = apps.get_model("payments", "Markup")
    Currency = apps.get_model("payments", "Currency")

    wire, _ = PaymentProvider.objects.get_or_create(
        identifier="bank-wire",
        defaults={
            "kind": "manual",
            "name": "Bank wire",
            "settings": {
                "beneficiary": "Example Broker Ltd",
                "iban": "GB33BUKB20201555555555",
                "bic": "BUKBGB22",
                "bank": "Example Bank plc, London",
            },
        },
    )
    sandbox, _ = PaymentProvider.objects.get_or_create(
        identifier="sandbox", defaults={"kind": "sandbox", "name": "Sandbox PSP"}
    )
    methods = [
        (wire, "Bank wire", "bank", FIAT, 10, Decimal("0"), Decimal("0"), Decimal("50")),
        (sandbox, "Card (sandbox)", "card", FIAT, 20, Decimal("2.5"), Decimal("0.30"), Decimal("10")),
        (sandbox, "Crypto (sandbox)", "crypto", CRYPTO, 30, Decimal("1"), Decimal("0"), Decimal("0")),
    ]
    for provider, name, icon, codes, order, pct, fixed, minimum in methods:
        method, created = PaymentMethod.objects.get_or_create(
            provider=provider,
            name=name,
            defaults={
                "icon": icon,
                "display_order": order,
                "fee_percent": pct,
                "fee_fixed": fixed,
                "min_amount": minimum,
            },
        )
        if created:
            method.currencies.set(Currency.objects.filter(code__in=codes))

    for identifier, kind, name, priority, max_age, enabled, settings in [
        ("manual", "manual", "Manual rates", 10, 7 * 24 * 3600, True, {}),
        (
            "ecb",
            "ecb",
            "ECB daily reference rates",
            20,
            4 * 24 * 3600,  # published on working days only
            False,
            {"url": "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"},
        ),
        (
            "crypto",
            "crypto",
            "Crypto price feed",
            30,
            15 * 60,
            False,
            {"url": "https://api.coingecko.com/api/v3/simple/price"},
        ),
    ]:
        RateSource.objects.get_or_create(
            identifier=identifier,
            defaults={
                "kind": kind,
                "name": name,
                "priority": priority,
                "max_age_seconds": max_age,
                "enabled": enabled,
                "settings": settings,
            },
        )
    Markup.objects.get_or_create(
        base=None, quote=None, defaults={"markup_percent": Decimal("0.5")}
    )


def grant_payment_permissions(apps, schema_editor):
    from accounts.roles import grant

    grant(apps, ROLE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0005_payment_methods_deposits_withdrawals_conversions"),
        ("accounts", "0004_sales_without_event_list"),
    ]

    operations = [
        migrations.RunPython(add_defaults, migrations.RunPython.noop),
        migrations.RunPython(grant_payment_permissions, migrations.RunPython.noop),
    ]
