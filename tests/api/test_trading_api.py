"""The trading-accounts REST API: account types, opening (passwords once,
idempotent on the key, 409 on a key reused for another request), leverage,
password reset with and without 2FA, refresh; the deals (filters, keyset
pages) and the analytics; another client's ids; no token; pinned query
counts of the lists; the OpenAPI schema."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.hashers import check_password
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.api.common import key_digest
from accounts.models import AccountType, Deal, DemoPlatformAccount, TradingAccount
from backoffice import policies
from backoffice.models import Event
from tests.factories import TraderFactory, enable_totp, open_trading_account, totp_code

pytestmark = pytest.mark.django_db

ACCOUNTS = "/api/v1/trading-accounts/"
TYPES = "/api/v1/account-types/"
DEALS = "/api/v1/deals/"
ANALYTICS = "/api/v1/trading-analytics/"


# --- Helpers and fixtures ---------------------------------------------------------


def client_for(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


@pytest.fixture
def api(trader) -> APIClient:
    return client_for(trader)


@pytest.fixture
def other():
    return TraderFactory(email="bob@example.com")


def account_type(name: str) -> AccountType:
    return AccountType.objects.get(platform__identifier="demo", name=name)


def post(api, path: str, body: dict | None = None, key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(path, body or {}, format="json", **headers)


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def platform_row(account: TradingAccount) -> DemoPlatformAccount:
    return DemoPlatformAccount.objects.get(platform=account.platform, login=account.login)


def url(account: TradingAccount, action: str = "") -> str:
    return f"{ACCOUNTS}{account.pk}/{action}"


# --- Without a token ------------------------------------------------------------------


@pytest.mark.parametrize(
    "verb, path",
    [
        ("get", TYPES),
        ("get", ACCOUNTS),
        ("post", ACCOUNTS),
        ("get", f"{ACCOUNTS}1/"),
        ("post", f"{ACCOUNTS}1/leverage/"),
        ("post", f"{ACCOUNTS}1/password/"),
        ("post", f"{ACCOUNTS}1/refresh/"),
        ("get", DEALS),
        ("get", ANALYTICS),
    ],
)
def test_requests_without_a_token_are_401(verb, path):
    response = getattr(APIClient(), verb)(path, {}, format="json")
    body = error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert set(body) == {"detail", "code"}
    assert not TradingAccount.objects.exists()


# --- Account types --------------------------------------------------------------------


def test_account_types_offered_live_first(api, django_assert_max_num_queries):
    AccountType.objects.filter(name="Standard EUR").update(is_active=False)
    with django_assert_max_num_queries(2):  # token, types with their platform
        response = api.get(TYPES)
    assert response.status_code == 200
    types = response.json()
    names = [t["name"] for t in types]
    assert "Standard EUR" not in names
    assert names.index("Standard USD") < names.index("Demo USD")
    standard = types[names.index("Standard USD")]
    assert standard == {
        "id": account_type("Standard USD").pk,
        "name": "Standard USD",
        "demo": False,
        "platform": "demo",
        "platform_name": standard["platform_name"],
        "currency": "USD",
        "currency_digits": 2,
        "leverage_choices": [30, 50, 100, 200, 500],
        "default_leverage": 100,
        "min_first_transfer": "100",
        "demo_balance": None,
        "description": standard["description"],
    }
    assert types[names.index("Demo USD")]["demo_balance"] == "10000"


# --- Opening an account -----------------------------------------------------------------


def test_opening_a_demo_account_shows_the_passwords_once(api, trader):
    body = {"account_type": account_type("Demo USD").pk, "leverage": 200}
    response = post(api, ACCOUNTS, body, key="open-1")
    assert response.status_code == 201, response.content
    assert "no-store" in response["Cache-Control"]
    assert "Idempotent-Replayed" not in response
    data = response.json()
    account = TradingAccount.objects.get(user=trader)
    assert data["account"]["id"] == account.pk
    assert data["account"]["login"] == account.login
    assert data["account"]["leverage"] == 200 and data["account"]["demo"] is True
    assert data["account"]["balance"] == "10000.00"  # the demo money, read back
    assert data["account"]["state_updated_at"] is not None
    row = platform_row(account)
    assert check_password(data["password"], row.password_hash)
    assert data["investor_password"] and data["investor_password"] != data["password"]
    assert Event.objects.filter(name="trading_account.opened", client=trader).count() == 1
    # Kept nowhere: the cache holds the key's account id, never a password.
    assert data["password"] not in str(
        cache.get(f"api:trading-open:{trader.pk}:{key_digest('open-1')}")
    )


def test_a_replay_returns_the_same_account_without_passwords(api, trader):
    body = {"account_type": account_type("Demo USD").pk}
    first = post(api, ACCOUNTS, body, key="same-key")
    assert first.status_code == 201
    again = post(api, ACCOUNTS, body, key="same-key")
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["account"]["id"] == first.json()["account"]["id"]
    assert again.json()["password"] is None and again.json()["investor_password"] is None
    assert TradingAccount.objects.filter(user=trader).count() == 1
    assert DemoPlatformAccount.objects.count() == 1
    # Still the same account when the type is no longer offered.
    AccountType.objects.filter(name="Demo USD").update(is_active=False)
    assert post(api, ACCOUNTS, body, key="same-key")["Idempotent-Replayed"] == "true"
    # The request as sent: naming the default leverage is another request.
    error(
        post(api, ACCOUNTS, {**body, "leverage": 100}, key="same-key"), 409, "idempotency_conflict"
    )


@pytest.mark.parametrize(
    "change", [{"leverage": 500}, {"account_type": "Standard USD"}], ids=["leverage", "type"]
)
def test_the_same_key_for_another_account_is_409(api, trader, change):
    body = {"account_type": account_type("Demo USD").pk, "leverage": 100}
    assert post(api, ACCOUNTS, body, key="k").status_code == 201
    if "account_type" in change:
        change = {"account_type": account_type(change["account_type"]).pk}
    error(post(api, ACCOUNTS, {**body, **change}, key="k"), 409, "idempotency_conflict")
    assert TradingAccount.objects.filter(user=trader).count() == 1


def test_a_key_still_being_answered_is_409(api, trader):
    demo = account_type("Demo USD")
    cache.set(
        f"api:trading-open:{trader.pk}:{key_digest('busy')}",
        {"request": key_digest(demo.pk, ""), "account": "pending"},
    )
    error(
        post(api, ACCOUNTS, {"account_type": demo.pk}, key="busy"), 409, "idempotency_in_progress"
    )
    assert not TradingAccount.objects.exists()


def test_a_concurrent_request_with_the_same_key_opens_nothing(api, trader, monkeypatch):
    """The second request arrives while the first is at the platform: it is
    told to wait (409), and once the first is done, a retry is its replay."""
    from accounts.services import trading as services

    real_open = services.trading_account_open
    body = {"account_type": account_type("Demo USD").pk}
    seen = []

    def open_while_another_arrives(**kwargs):
        seen.append(post(api, ACCOUNTS, body, key="race"))
        return real_open(**kwargs)

    monkeypatch.setattr(services, "trading_account_open", open_while_another_arrives)
    first = post(api, ACCOUNTS, body, key="race")
    assert first.status_code == 201 and first.json()["password"]
    error(seen[0], 409, "idempotency_in_progress")
    retry = post(api, ACCOUNTS, body, key="race")
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json()["account"]["id"] == first.json()["account"]["id"]
    assert TradingAccount.objects.filter(user=trader).count() == 1


def test_keys_are_per_client(api, trader, other):
    body = {"account_type": account_type("Demo USD").pk}
    mine = post(api, ACCOUNTS, body, key="shared").json()["account"]["id"]
    theirs = post(client_for(other), ACCOUNTS, body, key="shared")
    assert theirs.status_code == 201 and "Idempotent-Replayed" not in theirs
    assert theirs.json()["account"]["id"] != mine
    assert TradingAccount.objects.get(pk=theirs.json()["account"]["id"]).user == other


def test_opening_needs_an_idempotency_key(api):
    body = {"account_type": account_type("Demo USD").pk}
    error(post(api, ACCOUNTS, body), 400, "idempotency_key_missing")
    error(post(api, ACCOUNTS, body, key="x" * 65), 400, "idempotency_key_invalid")
    assert not TradingAccount.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "account_type"),
        ({"account_type": "abc"}, "account_type"),
        ({"account_type": 999_999}, "account_type"),
        ({"account_type": "inactive"}, "account_type"),
        ({"account_type": "Demo USD", "leverage": 1000}, "leverage"),
        ({"account_type": "Demo USD", "leverage": "lots"}, "leverage"),
        ({"account_type": "Demo USD", "leverage": 0}, "leverage"),
    ],
)
def test_bad_opening_requests_name_the_field(api, body, field):
    AccountType.objects.filter(name="Standard EUR").update(is_active=False)
    names = {"inactive": "Standard EUR", "Demo USD": "Demo USD"}
    if body.get("account_type") in names:
        body = {**body, "account_type": account_type(names[body["account_type"]]).pk}
    response = error(post(api, ACCOUNTS, body, key="bad"), 400, "invalid")
    assert field in response["errors"]
    assert not TradingAccount.objects.exists()
    # Nothing opened: the key is free for the corrected request.
    assert (
        post(api, ACCOUNTS, {"account_type": account_type("Demo USD").pk}, key="bad").status_code
        == 201
    )


def test_a_live_account_refused_by_policy_says_what_unlocks_it(api, trader):
    def refuse(user, **context):
        return policies.Decision(
            False, "Verify your identity first.", unlock="Verify now", unlock_url="room:profile"
        )

    body = {"account_type": account_type("Standard USD").pk}
    policies.register("open_live_account", "test-api-refuse", refuse)
    try:
        response = post(api, ACCOUNTS, body, key="live")
    finally:
        policies.unregister("open_live_account", "test-api-refuse")
    data = error(response, 422, "not_allowed")
    assert data["detail"] == "Verify your identity first."
    assert data["unlock"] == "Verify now" and data["unlock_url"] == "/room/profile/"
    assert not TradingAccount.objects.exists()
    # Once allowed, the same key opens the account (the refusal opened nothing).
    retry = post(api, ACCOUNTS, body, key="live")
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry
    assert retry.json()["account"]["demo"] is False


def test_the_account_limit_is_422(api, trader, settings):
    settings.TRADING_ACCOUNTS_PER_CLIENT = 1
    open_trading_account(trader, type_name="Demo USD")
    body = {"account_type": account_type("Demo USD").pk}
    data = error(post(api, ACCOUNTS, body, key="limit"), 422, "refused")
    assert "at most 1 trading accounts" in data["detail"]
    assert TradingAccount.objects.filter(user=trader).count() == 1


def test_a_platform_that_does_not_answer_is_502_and_frees_the_key(api, trader, monkeypatch):
    from accounts.platforms.base import PlatformError
    from accounts.platforms.demo import DemoGateway

    def down(self, **kwargs):
        raise PlatformError("connection refused")

    monkeypatch.setattr(DemoGateway, "account_create", down)
    body = {"account_type": account_type("Demo USD").pk}
    error(post(api, ACCOUNTS, body, key="down"), 502, "platform_unavailable")
    monkeypatch.undo()
    assert post(api, ACCOUNTS, body, key="down").status_code == 201


# --- The accounts -----------------------------------------------------------------------


def test_the_list_shows_every_account_with_its_figures(
    api, trader, other, django_assert_max_num_queries
):
    live = open_trading_account(trader)
    demo = open_trading_account(trader, type_name="Demo USD")
    open_trading_account(other)
    TradingAccount.objects.filter(pk=live.pk).update(
        balance=123_456,
        equity=120_000,
        margin=5_000,
        free_margin=115_000,
        margin_level=Decimal("2400.00"),
    )
    with django_assert_max_num_queries(2):  # token, accounts with platform and type
        response = api.get(ACCOUNTS)
    assert response.status_code == 200
    by_id = {a["id"]: a for a in response.json()}
    assert set(by_id) == {live.pk, demo.pk}
    shown = by_id[live.pk]
    assert (shown["balance"], shown["equity"], shown["margin"], shown["free_margin"]) == (
        "1234.56",
        "1200.00",
        "50.00",
        "1150.00",
    )
    assert shown["margin_level"] == "2400"
    assert shown["operable"] is True and shown["status"] == "active"
    assert shown["leverage_choices"] == [30, 50, 100, 200, 500]
    assert shown["account_type_name"] == "Standard USD" and shown["currency"] == "USD"
    for _ in range(3):
        open_trading_account(trader, type_name="Demo USD")
    with django_assert_max_num_queries(2):  # not one more per account
        assert len(api.get(ACCOUNTS).json()) == 5


def test_one_account_and_another_clients_is_404(api, trader, other):
    mine = open_trading_account(trader)
    response = api.get(url(mine))
    assert response.status_code == 200 and response.json()["login"] == mine.login
    theirs = open_trading_account(other)
    before = platform_row(theirs).password_hash
    error(api.get(url(theirs)), 404, "not_found")
    error(api.get(f"{ACCOUNTS}999999/"), 404, "not_found")
    error(post(api, url(theirs, "leverage/"), {"leverage": 500}), 404, "not_found")
    error(post(api, url(theirs, "password/")), 404, "not_found")
    error(post(api, url(theirs, "refresh/")), 404, "not_found")
    theirs.refresh_from_db()
    assert theirs.leverage == 100 and platform_row(theirs).password_hash == before


def test_leverage_change_within_the_choices(api, trader):
    account = open_trading_account(trader)
    response = post(api, url(account, "leverage/"), {"leverage": 500})
    assert response.status_code == 200, response.content
    assert response.json()["leverage"] == 500
    account.refresh_from_db()
    assert account.leverage == 500 and platform_row(account).leverage == 500
    assert Event.objects.filter(name="trading_account.leverage_changed").count() == 1


@pytest.mark.parametrize("leverage", [1000, 0, "x", None])
def test_leverage_outside_the_choices_is_400(api, trader, leverage):
    account = open_trading_account(trader)
    body = error(post(api, url(account, "leverage/"), {"leverage": leverage}), 400, "invalid")
    assert "leverage" in body["errors"]
    account.refresh_from_db()
    assert account.leverage == 100


def test_archived_accounts_are_read_only(api, trader):
    account = open_trading_account(trader)
    TradingAccount.objects.filter(pk=account.pk).update(status=TradingAccount.ARCHIVED)
    before = platform_row(account).password_hash
    error(post(api, url(account, "leverage/"), {"leverage": 500}), 422, "read_only")
    error(post(api, url(account, "password/")), 422, "read_only")
    error(post(api, url(account, "refresh/")), 422, "read_only")
    assert api.get(url(account)).json()["operable"] is False
    account.refresh_from_db()
    assert account.leverage == 100 and platform_row(account).password_hash == before


def test_password_reset_without_two_factor(api, trader):
    account = open_trading_account(trader)
    before = platform_row(account).password_hash
    response = post(api, url(account, "password/"))
    assert response.status_code == 200, response.content
    assert "no-store" in response["Cache-Control"]
    password = response.json()["password"]
    row = platform_row(account)
    assert row.password_hash != before and check_password(password, row.password_hash)
    assert password not in api.get(url(account)).content.decode()


def test_password_reset_with_two_factor_needs_a_code(api, trader):
    device = enable_totp(trader)
    account = open_trading_account(trader)
    before = platform_row(account).password_hash
    path = url(account, "password/")
    error(post(api, path), 400, "otp_required")
    error(post(api, path, {"otp_code": ""}), 400, "otp_required")
    wrong = f"{(int(totp_code(device)) + 1) % 1_000_000:06d}"
    error(post(api, path, {"otp_code": wrong}), 403, "otp_invalid")
    assert platform_row(account).password_hash == before
    # The wrong code slowed further tries down: a right one now waits too.
    error(post(api, path, {"otp_code": totp_code(device)}), 429, "otp_throttled")
    device.throttle_reset()
    response = post(api, path, {"otp_code": totp_code(device)})
    assert response.status_code == 200, response.content
    assert check_password(response.json()["password"], platform_row(account).password_hash)


def test_refresh_reads_the_figures(api, trader):
    account = open_trading_account(trader, type_name="Demo USD")
    DemoPlatformAccount.objects.filter(login=account.login).update(balance=1_234_567, floating=-500)
    response = post(api, url(account, "refresh/"))
    assert response.status_code == 200, response.content
    assert (response.json()["balance"], response.json()["equity"]) == ("12345.67", "12340.67")


def test_refresh_when_the_platform_does_not_answer(api, trader):
    account = open_trading_account(trader)
    DemoPlatformAccount.objects.filter(login=account.login).delete()  # the platform lost it
    error(post(api, url(account, "refresh/")), 502, "platform_unavailable")


# --- Deals ------------------------------------------------------------------------------

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_tickets = itertools.count(5_000_000)


def add_deals(account: TradingAccount, specs: list[dict]) -> list[Deal]:
    deals = []
    for spec in specs:
        spec = dict(spec)
        close_time = spec.pop("close_time", T0)
        values = {
            "platform_id": account.platform_id,
            "ticket": next(_tickets),
            "account": account,
            "client_id": account.user_id,
            "symbol": "EURUSD",
            "side": Deal.BUY,
            "volume": Decimal("0.10"),
            "open_time": close_time - spec.pop("held", timedelta(hours=1)),
            "close_time": close_time,
            "open_price": Decimal("1.08000000"),
            "close_price": Decimal("1.08100000"),
            "profit": 1000,
            "commission": -70,
            "swap": 0,
        }
        values.update(spec)
        deals.append(Deal(**values))
    return Deal.objects.bulk_create(deals)


@pytest.fixture
def account(trader) -> TradingAccount:
    return open_trading_account(trader)


def test_deals_newest_first_with_money_as_strings(api, account, django_assert_max_num_queries):
    older, newer = add_deals(
        account,
        [
            {"close_time": T0},
            {
                "close_time": T0 + timedelta(hours=1),
                "symbol": "XAUUSD",
                "side": Deal.SELL,
                "volume": Decimal("0.015"),
                "open_price": Decimal("2150.5"),
                "close_price": Decimal("2140.25"),
                "profit": -1234,
                "commission": -5,
                "swap": -1,
            },
        ],
    )
    with django_assert_max_num_queries(4):  # token, accounts, deals, instrument digits
        response = api.get(DEALS)
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert [d["id"] for d in body["deals"]] == [newer.pk, older.pk]
    assert body["deals"][0] == {
        "id": newer.pk,
        "ticket": newer.ticket,
        "account": account.pk,
        "login": account.login,
        "currency": "USD",
        "symbol": "XAUUSD",
        "side": "sell",
        "volume": "0.015",
        "open_time": body["deals"][0]["open_time"],
        "close_time": "2025-03-10T13:00:00Z",
        "open_price": "2150.50",  # the instrument's 2 digits
        "close_price": "2140.25",
        "profit": "-12.34",
        "commission": "-0.05",
        "swap": "-0.01",
        "net": "-12.40",
    }
    assert body["deals"][1]["open_price"] == "1.08000"  # EURUSD: 5 digits


def test_deals_are_filtered_like_the_history_page(api, trader, account):
    second = open_trading_account(trader, type_name="Demo USD")
    a = add_deals(
        account,
        [
            {"symbol": "EURUSD", "side": Deal.BUY, "close_time": T0},
            {"symbol": "EURUSD", "side": Deal.SELL, "close_time": T0 + timedelta(days=1)},
            {"symbol": "XAUUSD", "side": Deal.BUY, "close_time": T0 + timedelta(days=2)},
        ],
    )
    b = add_deals(second, [{"symbol": "EURUSD", "side": Deal.BUY, "close_time": T0}])

    def ids(query: str) -> list[int]:
        response = api.get(f"{DEALS}?{query}")
        assert response.status_code == 200, response.content
        return sorted(d["id"] for d in response.json()["deals"])

    assert ids(f"account={second.pk}") == [b[0].pk]
    assert ids("symbol=EURUSD") == sorted([a[0].pk, a[1].pk, b[0].pk])
    assert ids("side=sell") == [a[1].pk]
    assert ids("date_from=2025-03-11&date_to=2025-03-11") == [a[1].pk]
    assert ids(f"account={account.pk}&symbol=EURUSD&side=buy&date_to=2025-03-10") == [a[0].pk]
    assert ids("symbol=GBPUSD") == []


def test_deals_come_in_keyset_pages(api, trader, account, django_assert_max_num_queries):
    second = open_trading_account(trader, type_name="Demo USD")
    specs = [{"close_time": T0 + timedelta(minutes=i // 3)} for i in range(25)]  # ties
    deals = add_deals(account, specs[::2]) + add_deals(second, specs[1::2])
    expected = [d.pk for d in sorted(deals, key=lambda d: (d.close_time, d.pk), reverse=True)]
    seen, cursor = [], ""
    for _ in range(10):
        with django_assert_max_num_queries(4):
            response = api.get(f"{DEALS}?limit=7" + (f"&before={cursor}" if cursor else ""))
        body = response.json()
        seen += [d["id"] for d in body["deals"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


@pytest.mark.parametrize(
    "query, field",
    [
        ("before=nonsense", "before"),
        ("side=long", "side"),
        ("symbol=%3Cscript%3E", "symbol"),
        ("date_from=yesterday", "date_from"),
        ("date_from=2025-03-02&date_to=2025-03-01", "date_to"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("account=abc", "account"),
    ],
)
def test_bad_deal_filters_are_400(api, account, query, field):
    body = error(api.get(f"{DEALS}?{query}"), 400, "invalid")
    assert field in body["errors"]


def test_another_clients_deals_never_show(api, trader, account, other):
    theirs = open_trading_account(other)
    add_deals(account, [{"symbol": "EURUSD"}])
    add_deals(theirs, [{"symbol": "GBPUSD", "profit": 987_654}])
    assert [d["symbol"] for d in api.get(DEALS).json()["deals"]] == ["EURUSD"]
    error(api.get(f"{DEALS}?account={theirs.pk}"), 404, "not_found")
    error(api.get(f"{DEALS}?account=999999"), 404, "not_found")
    # Without accounts, an empty page (and their account is still not found).
    assert client_for(TraderFactory()).get(DEALS).json() == {"deals": [], "next_cursor": None}


# --- Analytics --------------------------------------------------------------------------


def _noon(days_ago: int) -> datetime:
    day = timezone.localdate() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


# By hand (cents): EURUSD +93.00 (2 h), EURUSD −55.00 (30 min), XAUUSD +20.00 (1 day),
# GBPUSD 0 (10 min): 4 trades, 2 won, 1 lost, win rate 50 %, profit factor
# 113 / 55 = 2.05, net 58.00, average 14.50, holding 6 h 40 min, 1.80 lots.
HAND = [
    {"symbol": "EURUSD", "volume": Decimal("1.00"), "profit": 10_000, "commission": -700,
     "held": timedelta(hours=2), "close_time": _noon(3)},
    {"symbol": "EURUSD", "side": "sell", "volume": Decimal("0.50"), "profit": -5_000,
     "commission": -350, "swap": -150, "held": timedelta(minutes=30), "close_time": _noon(3)},
    {"symbol": "XAUUSD", "volume": Decimal("0.10"), "profit": 2_000, "commission": 0,
     "held": timedelta(days=1), "close_time": _noon(1)},
    {"symbol": "GBPUSD", "volume": Decimal("0.20"), "profit": 0, "commission": 0,
     "held": timedelta(minutes=10), "close_time": _noon(1)},
]  # fmt: skip


def test_analytics_of_an_account(api, trader, account, django_assert_max_num_queries):
    add_deals(account, HAND)
    add_deals(account, [{"close_time": _noon(200), "profit": 99_999}])  # before 90 days
    with django_assert_max_num_queries(4):  # token, accounts, by instrument, by day
        response = api.get(f"{ANALYTICS}?account={account.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"]["key"] == str(account.pk) and body["scope"]["accounts"] == [account.pk]
    assert body["period"] == "90d" and body["currency"] == "USD"
    assert body["date_from"] == (timezone.localdate() - timedelta(days=89)).isoformat()
    assert body["date_to"] is None
    assert body["summary"] == {
        "trades": 4,
        "wins": 2,
        "losses": 1,
        "win_rate": "50",
        "profit_factor": "2.05",
        "net": "58.00",
        "gross_profit": "113.00",
        "gross_loss": "-55.00",
        "average": "14.50",
        "best": "93.00",
        "worst": "-55.00",
        "average_holding_seconds": 6 * 3600 + 40 * 60,
        "volume": "1.8",
    }
    instruments = {r["symbol"]: r for r in body["by_instrument"]}
    assert [r["symbol"] for r in body["by_instrument"]][0] == "EURUSD"  # most volume
    assert instruments["EURUSD"]["net"] == "38.00" and instruments["EURUSD"]["win_rate"] == "50"
    assert instruments["XAUUSD"]["average_holding_seconds"] == 86400
    assert body["equity_curve"] == [
        {"day": _noon(3).date().isoformat(), "trades": 2, "net": "38.00", "cumulative": "38.00"},
        {"day": _noon(1).date().isoformat(), "trades": 2, "net": "20.00", "cumulative": "58.00"},
    ]
    everything = api.get(f"{ANALYTICS}?account={account.pk}&period=all").json()
    assert everything["summary"]["trades"] == 5 and everything["date_from"] is None


def test_analytics_scopes_and_custom_periods(api, trader, account):
    second = open_trading_account(trader, type_name="Demo USD")
    add_deals(account, HAND[:2])
    add_deals(second, HAND[2:])
    body = api.get(ANALYTICS).json()
    assert [s["key"] for s in body["scopes"]][0] == "all-USD"
    assert body["scope"]["key"] == "all-USD" and body["summary"]["trades"] == 4
    day = _noon(1).date().isoformat()
    custom = api.get(f"{ANALYTICS}?account=all-USD&date_from={day}&date_to={day}").json()
    assert custom["period"] == "custom" and custom["summary"]["trades"] == 2
    assert (custom["date_from"], custom["date_to"]) == (day, day)
    only = api.get(f"{ANALYTICS}?account={second.pk}&period=30d").json()
    assert only["summary"]["trades"] == 2 and only["summary"]["profit_factor"] is None


def test_analytics_of_another_clients_account_is_404(api, account, other):
    theirs = open_trading_account(other)
    add_deals(theirs, HAND)
    error(api.get(f"{ANALYTICS}?account={theirs.pk}"), 404, "not_found")
    error(api.get(f"{ANALYTICS}?account=all-EUR"), 400, "invalid")
    error(api.get(f"{ANALYTICS}?period=forever"), 400, "invalid")
    assert api.get(ANALYTICS).json()["summary"]["trades"] == 0


def test_analytics_without_accounts(api):
    body = api.get(ANALYTICS).json()
    assert body["scopes"] == [] and body["scope"] is None and body["summary"] is None
    assert body["by_instrument"] == [] and body["equity_curve"] == []


# --- The schema -------------------------------------------------------------------------


def test_the_schema_lists_the_trading_endpoints(api):
    response = api.get("/api/v1/schema/")
    assert response.status_code == 200
    for path in [
        "/api/v1/account-types/",
        "/api/v1/trading-accounts/",
        "/api/v1/trading-accounts/{account_id}/",
        "/api/v1/trading-accounts/{account_id}/leverage/",
        "/api/v1/trading-accounts/{account_id}/password/",
        "/api/v1/trading-accounts/{account_id}/refresh/",
        "/api/v1/trading-accounts/{account_id}/transfers/",
        "/api/v1/trading-accounts/{account_id}/transfers/preview/",
        "/api/v1/trading-transfers/{reference}/",
        "/api/v1/deals/",
        "/api/v1/trading-analytics/",
    ]:
        assert f"{path}:".encode() in response.content, path


def test_the_schema_generates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )
    text = (tmp_path / "schema.yml").read_text()
    assert "/api/v1/trading-analytics/" in text and "Idempotency-Key" in text
