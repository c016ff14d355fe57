"""Platforms, account types, instruments and trading accounts in the admin:
write-only encrypted secrets, validated settings and leverages, the audit
log, each role's rights, the Sales restriction, read-only accounts, the
export, and bounded query counts."""

from __future__ import annotations

import csv
import io
import sys
import types

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType

from accounts.models import AccountType, Instrument, Platform
from accounts.platforms import GATEWAYS
from accounts.platforms.demo import DemoGateway
from accounts.roles import ADMINISTRATOR, COMPLIANCE, FINANCE, SALES, SUPPORT
from backoffice.models import Event
from backoffice.secrets import decrypt
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory, open_trading_account

pytestmark = pytest.mark.django_db

SECRET = "s3cret-Value-42"


class FakeGateway(DemoGateway):
    """A platform that needs a URL setting and a password secret."""

    label = "Fake MT (tests)"
    secret_names = ("manager_password",)
    required_settings = ("url",)


@pytest.fixture
def fake_kind(monkeypatch):
    monkeypatch.setitem(GATEWAYS._paths, "fake", f"{__name__}.FakeGateway")
    yield "fake"
    GATEWAYS._loaded.pop("fake", None)


@pytest.fixture
def admin_http():
    return signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))


def platform_form(**overrides) -> dict:
    data = {
        "identifier": "fake-mt",
        "name": "Fake MT",
        "kind": "fake",
        "enabled": "on",
        "settings": '{"url": "https://mt.example.com", "server_name": "Fake-Live"}',
        "secret_manager_password": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


# --- Platforms ---------------------------------------------------------------------------


def test_platform_secrets_are_encrypted_and_never_shown_back(admin_http, fake_kind):
    page = admin_http.get("/admin/accounts/platform/add/").content.decode()
    assert "Fake MT (tests) (fake)" in page
    assert "Demo platform (built-in, in this database) (demo)" in page
    response = admin_http.post(
        "/admin/accounts/platform/add/", platform_form(secret_manager_password=SECRET)
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    platform = Platform.objects.get(identifier="fake-mt")
    assert SECRET not in platform.secrets
    assert decrypt(platform.secrets) == {"manager_password": SECRET}
    event = Event.objects.get(name="platform.secrets_changed")
    assert event.payload == {"platform": "fake-mt", "set": ["manager_password"], "cleared": []}

    change = f"/admin/accounts/platform/{platform.pk}/change/"
    page = admin_http.get(change).content.decode()
    assert SECRET not in page
    assert "Currently set; leave blank to keep it" in page
    assert ">manager_password<" in page or "manager_password" in page  # which are set
    for entry in LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(Platform)):
        assert SECRET not in str(entry.changes) and "secrets" not in (entry.changes_dict or {})

    # Blank keeps the stored secret; the box removes it.
    admin_http.post(change, platform_form(name="Fake MT 2"))
    platform.refresh_from_db()
    assert platform.name == "Fake MT 2" and decrypt(platform.secrets) == {
        "manager_password": SECRET
    }
    admin_http.post(change, platform_form(clear_secrets=["manager_password"]))
    platform.refresh_from_db()
    assert decrypt(platform.secrets) == {}


def test_platform_settings_need_the_gateways_required_keys(admin_http, fake_kind):
    for settings, error in (
        ("{}", "fake needs these settings: url."),
        ('{"url": "  "}', "fake needs these settings: url."),
        ("[1, 2]", "Settings are a JSON object"),
        ("not json", "Enter a valid JSON."),
    ):
        response = admin_http.post(
            "/admin/accounts/platform/add/", platform_form(settings=settings)
        )
        assert response.status_code == 200
        assert error in response.content.decode()
    response = admin_http.post("/admin/accounts/platform/add/", platform_form(kind="nope"))
    assert "Select a valid choice" in response.content.decode()
    assert not Platform.objects.filter(identifier="fake-mt").exists()


def test_platform_identifier_and_kind_are_fixed_and_sync_fields_read_only(admin_http):
    demo = Platform.objects.get(identifier="demo")
    Platform.objects.filter(pk=demo.pk).update(last_error="timeout", deals_cursor="42")
    page = admin_http.get(f"/admin/accounts/platform/{demo.pk}/change/").content.decode()
    assert 'name="identifier"' not in page and 'name="kind"' not in page
    assert 'name="deals_cursor"' not in page and 'name="last_error"' not in page
    assert "timeout" in page
    response = admin_http.post(
        f"/admin/accounts/platform/{demo.pk}/change/",
        {
            "name": "Demo",
            "enabled": "on",
            "settings": "{}",
            "identifier": "hacked",
            "kind": "mt5",
            "deals_cursor": "0",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    demo.refresh_from_db()
    assert (demo.identifier, demo.kind, demo.deals_cursor, demo.name) == (
        "demo",
        "demo",
        "42",
        "Demo",
    )
    entry = LogEntry.objects.get(content_type=ContentType.objects.get_for_model(Platform))
    assert entry.changes_dict == {"name": ["Demo platform (built-in)", "Demo"]}
    assert admin_http.get(f"/admin/accounts/platform/{demo.pk}/delete/").status_code == 403


def test_sync_deals_now_calls_the_sync_service(admin_http, monkeypatch):
    calls = []

    def deals_sync_platform(*, platform):
        calls.append(platform.identifier)
        return "12 deals"

    module = types.ModuleType("accounts.services.deals")
    module.deals_sync_platform = deals_sync_platform
    monkeypatch.setitem(sys.modules, "accounts.services.deals", module)
    demo = Platform.objects.get(identifier="demo")
    response = admin_http.post(
        "/admin/accounts/platform/",
        {"action": "sync_deals_now", "_selected_action": [demo.pk]},
        follow=True,
    )
    assert calls == ["demo"]
    assert "Demo platform (built-in): deals synced: 12 deals." in response.content.decode()


def test_sync_deals_failure_is_a_message(admin_http, monkeypatch):
    def deals_sync_platform(*, platform):
        raise RuntimeError("platform unreachable")

    module = types.ModuleType("accounts.services.deals")
    module.deals_sync_platform = deals_sync_platform
    monkeypatch.setitem(sys.modules, "accounts.services.deals", module)
    demo = Platform.objects.get(identifier="demo")
    response = admin_http.post(
        "/admin/accounts/platform/",
        {"action": "sync_deals_now", "_selected_action": [demo.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "sync failed: platform unreachable" in response.content.decode()


# --- Account types and instruments ---------------------------------------------------------


def type_form(account_type: AccountType, **overrides) -> dict:
    data = {
        "name": account_type.name,
        "platform": account_type.platform_id,
        "is_active": "on",
        "display_order": account_type.display_order,
        "platform_group": account_type.platform_group,
        "currency": account_type.currency,
        "currency_digits": account_type.currency_digits,
        "leverage_choices": "30, 50, 100",
        "default_leverage": account_type.default_leverage,
        "min_first_transfer": str(account_type.min_first_transfer),
        "demo_balance": str(account_type.demo_balance),
        "description": "",
        "_save": "Save",
    }
    if account_type.is_demo:
        data["is_demo"] = "on"
    data.update(overrides)
    return data


def test_leverage_choices_are_edited_as_a_comma_list(admin_http):
    standard = AccountType.objects.get(name="Standard EUR")
    url = f"/admin/accounts/accounttype/{standard.pk}/change/"
    page = admin_http.get(url).content.decode()
    assert 'value="30, 50, 100, 200, 500"' in page
    response = admin_http.post(url, type_form(standard, leverage_choices="500; 1:100, 200, 100"))
    assert response.status_code == 302
    standard.refresh_from_db()
    assert standard.leverage_choices == [100, 200, 500]
    entry = LogEntry.objects.get(content_type=ContentType.objects.get_for_model(AccountType))
    assert "leverage_choices" in entry.changes_dict


@pytest.mark.parametrize(
    "overrides, error",
    [
        ({"leverage_choices": "0, 100"}, "is not a leverage"),
        ({"leverage_choices": "abc"}, "is not a leverage"),
        ({"leverage_choices": "-50"}, "is not a leverage"),
        ({"leverage_choices": " , "}, "Give at least one leverage."),
        ({"leverage_choices": "50, 200", "default_leverage": "100"}, "The default must be one"),
        ({"currency": "U$"}, "currency code"),
    ],
)
def test_bad_account_type_values_are_refused(admin_http, overrides, error):
    standard = AccountType.objects.get(name="Standard EUR")
    url = f"/admin/accounts/accounttype/{standard.pk}/change/"
    response = admin_http.post(url, type_form(standard, **overrides))
    assert response.status_code == 200
    assert error in response.content.decode()
    standard.refresh_from_db()
    assert standard.leverage_choices == [30, 50, 100, 200, 500] and standard.currency == "EUR"


def test_a_used_account_type_keeps_what_its_accounts_copied(admin_http, trader):
    open_trading_account(trader, type_name="Standard USD")
    used = AccountType.objects.get(name="Standard USD")
    url = f"/admin/accounts/accounttype/{used.pk}/change/"
    page = admin_http.get(url).content.decode()
    assert 'name="currency"' not in page and 'name="is_demo"' not in page
    response = admin_http.post(url, type_form(used, currency="EUR", is_demo="on"))
    assert response.status_code == 302
    used.refresh_from_db()
    assert used.currency == "USD" and not used.is_demo


def test_instruments_filter_by_group_search_and_audit(admin_http):
    page = admin_http.get("/admin/accounts/instrument/?group__exact=metals").content.decode()
    assert "XAUUSD" in page and "EURUSD" not in page
    page = admin_http.get("/admin/accounts/instrument/?q=gold").content.decode()
    assert "XAUUSD" in page and "XAGUSD" not in page
    gold = Instrument.objects.get(symbol="XAUUSD")
    admin_http.post(
        f"/admin/accounts/instrument/{gold.pk}/change/",
        {
            "symbol": "XAUUSD",
            "description": "Gold spot",
            "group": "metals",
            "contract_size": "100",
            "digits": "2",
            "profit_currency": "USD",
            "spread_markup": "0",
            "is_active": "on",
            "_save": "Save",
        },
    )
    entry = LogEntry.objects.get(content_type=ContentType.objects.get_for_model(Instrument))
    assert entry.changes_dict["description"] == ["Gold vs US dollar", "Gold spot"]


# --- Trading accounts --------------------------------------------------------------------


def test_trading_accounts_are_read_only(admin_http, trader):
    account = open_trading_account(trader, type_name="Demo USD")
    page = admin_http.get("/admin/accounts/tradingaccount/").content.decode()
    assert account.login in page and trader.email in page and "10,000.00 USD" in page
    assert admin_http.get("/admin/accounts/tradingaccount/add/").status_code == 403
    url = f"/admin/accounts/tradingaccount/{account.pk}/change/"
    page = admin_http.get(url).content.decode()
    assert 'name="_save"' not in page and 'name="leverage"' not in page
    assert "1:100" in page
    admin_http.post(url, {"leverage": "500", "status": "archived"})
    account.refresh_from_db()
    assert account.leverage == 100 and account.status == "active"
    assert admin_http.get(f"/admin/accounts/tradingaccount/{account.pk}/delete/").status_code == 403
    page = admin_http.get(f"/admin/accounts/tradingaccount/?q={account.login}").content.decode()
    assert account.login in page
    page = admin_http.get(f"/admin/accounts/tradingaccount/?q={trader.email}").content.decode()
    assert account.login in page


def test_sales_sees_only_the_accounts_of_their_clients():
    sales = StaffFactory(roles=[SALES])
    mine = open_trading_account(TraderFactory(profile__manager=sales))
    theirs = open_trading_account(TraderFactory())
    http = signed_in_with_code(sales)
    page = http.get("/admin/accounts/tradingaccount/").content.decode()
    assert mine.login in page and theirs.login not in page
    assert http.get(f"/admin/accounts/tradingaccount/{mine.pk}/change/").status_code == 200
    assert http.get(f"/admin/accounts/tradingaccount/{theirs.pk}/change/").status_code == 302
    page = http.get(f"/admin/accounts/tradingaccount/?q={theirs.login}").content.decode()
    assert 'class="field-login"' not in page
    # Sales may not export, nor see platforms.
    assert http.get("/admin/accounts/tradingaccount/export/").status_code == 403
    assert http.get("/admin/accounts/platform/").status_code == 403


def test_finance_exports_accounts_in_major_units():
    trader = TraderFactory(email="exported@example.com")
    account = open_trading_account(trader, type_name="Demo USD", leverage=200)
    open_trading_account(TraderFactory())
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    url = "/admin/accounts/tradingaccount/export/"
    form = http.get(url).context["form"]
    data = {"format": "0", "resource": "0"}
    skip = {"format", "resource", "export_items"}
    data.update({name: "on" for name in form.fields if name not in skip})
    response = http.post(f"{url}?is_demo__exact=1", data)
    assert response.status_code == 200, response.content[:500]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    (row,) = rows
    assert row["login"] == account.login and row["client"] == "exported@example.com"
    assert (row["balance"], row["equity"], row["leverage"]) == ("10000.00", "10000.00", "200")
    assert row["platform"] == "demo" and row["account_type"] == "Demo USD"


@pytest.mark.parametrize(
    "role, allowed, forbidden",
    [
        (
            FINANCE,
            ["platform", "accounttype", "instrument", "tradingaccount"],
            ["platform/add", "accounttype/add", "instrument/add"],
        ),
        (
            SUPPORT,
            ["accounttype", "instrument", "tradingaccount"],
            ["platform", "accounttype/add", "tradingaccount/export"],
        ),
        (COMPLIANCE, ["tradingaccount"], ["platform", "instrument", "tradingaccount/export"]),
        (SALES, ["tradingaccount", "accounttype"], ["platform", "instrument", "accounttype/add"]),
    ],
)
def test_each_role_sees_what_its_job_needs(role, allowed, forbidden):
    http = signed_in_with_code(StaffFactory(roles=[role]))
    for path in allowed:
        assert http.get(f"/admin/accounts/{path}/").status_code == 200, path
    for path in forbidden:
        assert http.get(f"/admin/accounts/{path}/").status_code == 403, path


def test_only_who_may_change_platforms_may_sync_deals():
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    page = http.get("/admin/accounts/platform/").content.decode()
    assert "sync_deals_now" not in page


def test_admin_query_counts_do_not_grow_with_accounts(admin_http, django_assert_max_num_queries):
    owners = [TraderFactory() for _ in range(3)]
    for owner in owners:
        open_trading_account(owner)
    admin_http.get("/admin/accounts/tradingaccount/")
    # Session and user, 2FA device, permissions (2), roles, the filters'
    # platforms, currencies and types, the count, the brand, the page.
    with django_assert_max_num_queries(11):
        assert admin_http.get("/admin/accounts/tradingaccount/").status_code == 200
    for owner in owners:
        for _ in range(4):
            open_trading_account(owner, type_name="Demo USD")
    with django_assert_max_num_queries(11):
        page = admin_http.get("/admin/accounts/tradingaccount/").content.decode()
    assert page.count('class="field-login"') == 15
    for url in (
        "/admin/accounts/platform/",
        "/admin/accounts/accounttype/",
        "/admin/accounts/instrument/",
    ):
        with django_assert_max_num_queries(10):
            assert admin_http.get(url).status_code == 200
