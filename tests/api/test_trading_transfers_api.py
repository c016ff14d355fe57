"""Money between wallets and trading accounts through the REST API: a
transfer accepted (202) and completed through the demo platform, polled by
its reference; the preview; idempotency (a replay returns the first
transfer, another request with the same key is 409); refusals as 422 in
words (funds, the policy with what unlocks it, the first transfer's
minimum, the free margin); another client's accounts, wallets and
transfers; a platform that refuses; pinned query counts."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.test import TestCase
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import DemoPlatformAccount, Platform, TradingAccount
from accounts.platforms import GATEWAYS
from backoffice import policies
from payments import services
from payments.models import LedgerAccount, TradingTransfer
from payments.selectors import ledger_check
from payments.services.rates import rate_set_manual
from tests.factories import TraderFactory, open_trading_account
from tests.payments.test_trading_transfers import ScriptedGateway, fund

pytestmark = pytest.mark.django_db


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


@pytest.fixture
def usd(trader) -> LedgerAccount:
    return fund(services.wallet_open(user=trader, currency="USD"), 500_000)


@pytest.fixture
def account(trader) -> TradingAccount:
    return open_trading_account(trader)


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(
        GATEWAYS._paths, "scripted", "tests.payments.test_trading_transfers.ScriptedGateway"
    )
    monkeypatch.setitem(GATEWAYS._loaded, "scripted", ScriptedGateway)
    ScriptedGateway.script, ScriptedGateway.calls, ScriptedGateway.lookups = [], [], []
    Platform.objects.filter(identifier="demo").update(kind="scripted")
    return ScriptedGateway


def transfers_url(account: TradingAccount) -> str:
    return f"/api/v1/trading-accounts/{account.pk}/transfers/"


def preview_url(account: TradingAccount) -> str:
    return f"/api/v1/trading-accounts/{account.pk}/transfers/preview/"


def detail_url(reference: str) -> str:
    return f"/api/v1/trading-transfers/{reference}/"


def send(api, account, wallet, amount="250.00", *, direction="in", key=None):
    """POST a transfer; the platform is called after commit, as in production
    (the worker's task runs once the request's transaction is over)."""
    body = {"direction": direction, "wallet": wallet.pk, "amount": amount}
    headers = {"HTTP_IDEMPOTENCY_KEY": key if key is not None else str(uuid.uuid4())}
    with TestCase.captureOnCommitCallbacks(execute=True):
        return api.post(transfers_url(account), body, format="json", **headers)


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def balance(wallet) -> int:
    wallet.refresh_from_db()
    return wallet.balance


def platform_balance(account: TradingAccount) -> int:
    return DemoPlatformAccount.objects.get(login=account.login).balance


# --- Without a token ------------------------------------------------------------------


@pytest.mark.parametrize(
    "verb, path",
    [
        ("get", "/api/v1/trading-accounts/1/transfers/"),
        ("post", "/api/v1/trading-accounts/1/transfers/"),
        ("post", "/api/v1/trading-accounts/1/transfers/preview/"),
        ("get", "/api/v1/trading-transfers/TT-ABCDEFGHJK/"),
    ],
)
def test_requests_without_a_token_are_401(verb, path):
    response = getattr(APIClient(), verb)(path, {}, format="json")
    error(response, 401, "not_authenticated")
    assert not TradingTransfer.objects.exists()


# --- The happy paths ------------------------------------------------------------------


def test_a_transfer_in_is_accepted_then_completed_through_the_platform(api, account, usd):
    response = send(api, account, usd, "250.00", key="in-1")
    assert response.status_code == 202, response.content
    body = response.json()
    transfer = TradingTransfer.objects.get()
    assert body["reference"] == transfer.reference
    assert body["status"] == "pending"  # answered before the worker's turn
    assert body["direction"] == "in" and body["account"] == account.pk
    assert body["login"] == account.login and body["wallet"] == usd.pk
    assert (body["wallet_currency"], body["wallet_amount"]) == ("USD", "250.00")
    assert (body["account_currency"], body["account_amount"]) == ("USD", "250.00")
    assert body["rate"] is None and body["fee"] == "0" and body["completed_at"] is None
    assert balance(usd) == 475_000  # debited at once
    # The worker ran after commit: the platform has it, and polling says so.
    polled = api.get(detail_url(body["reference"]))
    assert polled.status_code == 200
    assert polled.json()["status"] == "completed" and polled.json()["completed_at"]
    assert platform_balance(account) == 25_000
    assert ledger_check().ok


def test_a_transfer_out_credits_the_wallet_after_the_platform(api, account, usd):
    send(api, account, usd, "250.00")
    response = send(api, account, usd, "100.00", direction="out")
    assert response.status_code == 202, response.content
    assert response.json()["direction"] == "out"
    assert api.get(detail_url(response.json()["reference"])).json()["status"] == "completed"
    assert balance(usd) == 485_000 and platform_balance(account) == 15_000
    assert ledger_check().ok


def test_a_transfer_across_currencies_shows_its_rate_and_fee(api, trader, account):
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0800"))
    eur = fund(services.wallet_open(user=trader, currency="EUR"), 100_000)
    preview = api.post(
        preview_url(account), {"direction": "in", "wallet": eur.pk, "amount": "200"}, format="json"
    )
    assert preview.status_code == 200, preview.content
    figures = preview.json()
    assert figures["wallet_amount"] == "200.00" and figures["account_amount"] == "214.92"
    assert Decimal(figures["rate"]) == Decimal("1.0746")
    assert figures["mid_rate"] == "1.08" and figures["markup_percent"] == "0.5"
    assert figures["fee_currency"] == "EUR" and figures["first_transfer_minimum"] == "100"
    assert not TradingTransfer.objects.exists()  # a preview moves nothing
    body = send(api, account, eur, "200").json()
    assert body["account_amount"] == "214.92" and body["wallet_amount"] == "200.00"
    assert Decimal(body["rate"]) == Decimal("1.0746")
    assert platform_balance(account) == 21_492


def test_preview_in_the_same_currency(api, account, usd, django_assert_max_num_queries):
    body = {"direction": "in", "wallet": usd.pk, "amount": "150.5"}
    with django_assert_max_num_queries(5):  # token, account, wallet, currency, minimum
        response = api.post(preview_url(account), body, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "direction": "in",
        "wallet": usd.pk,
        "wallet_currency": "USD",
        "wallet_amount": "150.50",
        "wallet_balance": "5000.00",
        "account_currency": "USD",
        "account_amount": "150.50",
        "free_margin": "0.00",
        "rate": None,
        "mid_rate": None,
        "markup_percent": None,
        "fee": "0",
        "fee_currency": "USD",
        "first_transfer_minimum": "100",
    }


def test_preview_refusals_are_422_in_words(api, trader, account, usd):
    gbp = fund(services.wallet_open(user=trader, currency="GBP"), 100_000)
    body = {"direction": "in", "wallet": gbp.pk, "amount": "10"}
    data = error(api.post(preview_url(account), body, format="json"), 422, "rate_unavailable")
    assert "GBP" in data["detail"]
    body = {"direction": "in", "wallet": usd.pk, "amount": "1.001"}
    data = error(api.post(preview_url(account), body, format="json"), 422, "refused")
    assert "at most 2 decimal places" in data["detail"]  # as the payments API says it


def test_the_accounts_transfers_newest_first(api, account, usd, django_assert_max_num_queries):
    first = send(api, account, usd, "150.00").json()["reference"]
    second = send(api, account, usd, "10.00").json()["reference"]
    with django_assert_max_num_queries(3):  # token, account, transfers with wallets
        response = api.get(transfers_url(account))
    assert [t["reference"] for t in response.json()] == [second, first]
    for _ in range(3):
        send(api, account, usd, "1.00")
    with django_assert_max_num_queries(3):  # not one more per transfer
        assert len(api.get(f"{transfers_url(account)}?limit=4").json()) == 4


# --- Idempotency --------------------------------------------------------------------------


def test_a_replay_returns_the_same_transfer_and_moves_once(api, account, usd):
    first = send(api, account, usd, "150.00", key="k-1")
    again = send(api, account, usd, "150.00", key="k-1")
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert again.json()["reference"] == first.json()["reference"]
    assert again.json()["status"] == "completed"
    assert TradingTransfer.objects.count() == 1
    assert balance(usd) == 485_000 and platform_balance(account) == 15_000


@pytest.mark.parametrize(
    "change", [{"amount": "151.00"}, {"direction": "out"}], ids=["amount", "direction"]
)
def test_the_same_key_for_another_transfer_is_409(api, account, usd, change):
    send(api, account, usd, "150.00", key="k-2")
    args = {"amount": "150.00", "direction": "in", **change}
    response = send(api, account, usd, args["amount"], direction=args["direction"], key="k-2")
    error(response, 409, "idempotency_conflict")
    assert TradingTransfer.objects.count() == 1 and balance(usd) == 485_000


def test_the_same_key_for_another_account_is_409(api, trader, account, usd):
    send(api, account, usd, "150.00", key="k-3")
    second = open_trading_account(trader)
    error(send(api, second, usd, "150.00", key="k-3"), 409, "idempotency_conflict")
    assert TradingTransfer.objects.count() == 1


def test_keys_are_per_client(api, account, usd, other):
    other_account = open_trading_account(other)
    other_usd = fund(services.wallet_open(user=other, currency="USD"), 100_000)
    send(api, account, usd, "150.00", key="same")
    response = send(client_for(other), other_account, other_usd, "150.00", key="same")
    assert response.status_code == 202 and "Idempotent-Replayed" not in response
    assert TradingTransfer.objects.count() == 2


def test_a_transfer_needs_an_idempotency_key(api, account, usd):
    error(send(api, account, usd, key=""), 400, "idempotency_key_missing")
    error(send(api, account, usd, key="k" * 65), 400, "idempotency_key_invalid")
    assert not TradingTransfer.objects.exists()


# --- Refusals: nothing moves ----------------------------------------------------------


def test_insufficient_funds_is_422(api, account, usd):
    data = error(send(api, account, usd, "6000.00"), 422, "insufficient_funds")
    assert "Nothing was transferred" in data["detail"]
    assert not TradingTransfer.objects.exists() and balance(usd) == 500_000


def test_the_first_transfer_below_the_minimum_is_422(api, account, usd):
    data = error(send(api, account, usd, "50.00"), 422, "refused")
    assert "at least 100" in data["detail"]
    assert not TradingTransfer.objects.exists()


def test_more_than_the_free_margin_is_422(api, account, usd):
    send(api, account, usd, "200.00")
    data = error(send(api, account, usd, "500.00", direction="out"), 422, "refused")
    assert "free margin" in data["detail"]
    assert TradingTransfer.objects.count() == 1


def test_a_policy_refusal_says_what_unlocks_it(api, account, usd):
    def refuse(user, **context):
        return policies.Decision(
            False,
            "Verify your identity to fund a live account.",
            unlock="Verify now",
            unlock_url="room:profile",
        )

    policies.register(policies.TRANSFER, "test-api-refuse", refuse)
    try:
        response = send(api, account, usd, "250.00")
    finally:
        policies.unregister(policies.TRANSFER, "test-api-refuse")
    data = error(response, 422, "not_allowed")
    assert data["detail"] == "Verify your identity to fund a live account."
    assert data["unlock"] == "Verify now" and data["unlock_url"] == "/room/profile/"
    assert not TradingTransfer.objects.exists() and balance(usd) == 500_000


@pytest.mark.parametrize(
    "body, field",
    [
        ({"direction": "sideways"}, "direction"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "abc"}, "amount"),
        ({"amount": "1.001"}, "amount"),  # the service: at most 2 decimals
        ({"wallet": None}, "wallet"),
    ],
)
def test_bad_bodies_are_refused_and_nothing_moves(api, account, usd, body, field):
    data = {"direction": "in", "wallet": usd.pk, "amount": "150.00", **body}
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = api.post(
            transfers_url(account), data, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
        )
    assert response.status_code in (400, 422), response.content
    if response.status_code == 400:
        assert field in response.json()["errors"]
    assert not TradingTransfer.objects.exists() and balance(usd) == 500_000


def test_a_platform_refusal_fails_the_transfer_and_gives_the_money_back(
    api, account, usd, scripted
):
    scripted.script = ["refuse"]
    reference = send(api, account, usd, "250.00").json()["reference"]
    polled = api.get(detail_url(reference)).json()
    assert polled["status"] == "failed" and "disabled" in polled["error"]
    assert balance(usd) == 500_000 and platform_balance(account) == 0
    assert ledger_check().ok


# --- Another client's ids, demo accounts --------------------------------------------------


def test_another_clients_account_wallet_and_transfer(api, trader, account, usd, other):
    theirs = open_trading_account(other)
    their_usd = fund(services.wallet_open(user=other, currency="USD"), 100_000)
    error(send(api, theirs, usd), 404, "not_found")
    error(api.get(transfers_url(theirs)), 404, "not_found")
    body = {"direction": "in", "wallet": usd.pk, "amount": "150"}
    error(api.post(preview_url(theirs), body, format="json"), 404, "not_found")
    # Their wallet in my request: named as the field at fault, nothing moves.
    data = error(send(api, account, their_usd, "150.00"), 400, "invalid")
    assert "wallet" in data["errors"]
    their_reference = send(client_for(other), theirs, their_usd, "150.00").json()["reference"]
    error(api.get(detail_url(their_reference)), 404, "not_found")
    error(api.get(detail_url("TT-NOPE")), 404, "not_found")
    assert balance(usd) == 500_000 and balance(their_usd) == 85_000
    assert TradingTransfer.objects.filter(user=trader).count() == 0


def test_a_demo_account_takes_no_transfers(api, trader, usd):
    demo = open_trading_account(trader, type_name="Demo USD")
    error(send(api, demo, usd), 404, "not_found")
    assert not TradingTransfer.objects.exists()


def test_an_archived_account_takes_none_but_lists_its_transfers(api, account, usd):
    reference = send(api, account, usd, "150.00").json()["reference"]
    TradingAccount.objects.filter(pk=account.pk).update(status=TradingAccount.ARCHIVED)
    data = error(send(api, account, usd, "10.00"), 422, "refused")
    assert "archived" in data["detail"]
    assert [t["reference"] for t in api.get(transfers_url(account)).json()] == [reference]
