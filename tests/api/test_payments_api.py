"""The payments REST API: payment methods, deposits, withdrawals, conversions
and transfers through the same services as the room's pages.

Each endpoint's happy path; idempotency (a replay returns the first object
and moves money once; the same key with another request is 409); another
client's ids; no token; hostile bodies; every error as {"detail", "code"};
pinned query counts of the lists; the OpenAPI schema."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from backoffice import policies
from backoffice.policies import Decision
from payments import services
from payments.models import (
    Conversion,
    Deposit,
    JournalTransaction,
    LedgerAccount,
    PaymentMethod,
    Transfer,
    Withdrawal,
)
from payments.providers.base import ProviderError
from payments.providers.sandbox import SandboxProvider
from payments.selectors import ledger_check
from payments.services.rates import rate_set_manual
from tests.factories import TraderFactory, enable_totp, totp_code

pytestmark = pytest.mark.django_db

IBAN = "DE89 3704 0044 0532 0130 00"
BANK = {"iban": IBAN, "account_holder": "Alice Trader"}


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


def fund(wallet: LedgerAccount, amount: str) -> LedgerAccount:
    services.wallet_adjust(
        actor=None,
        wallet=wallet,
        amount=Decimal(amount),
        reason="test funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
    )
    wallet.refresh_from_db()
    return wallet


def balance(wallet: LedgerAccount) -> int:
    return LedgerAccount.objects.get(pk=wallet.pk).balance


def method(name: str) -> PaymentMethod:
    return PaymentMethod.objects.get(name=name)


@pytest.fixture
def usd(trader) -> LedgerAccount:
    return fund(services.wallet_open(user=trader, currency="USD"), "1000")


@pytest.fixture
def eur(trader) -> LedgerAccount:
    return fund(services.wallet_open(user=trader, currency="EUR"), "500")


@pytest.fixture
def rates(db):
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0823"))


def post(api, path: str, body: dict, key: str | None = None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(path, body, format="json", **headers)


def error(response, status: int, code: str) -> dict:
    """The response is the error ``status`` with ``code``, in the API's shape."""
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def later(seconds: float):
    moment = timezone.now() + timedelta(seconds=seconds)
    return mock.patch.object(timezone, "now", return_value=moment)


# --- Without a token ------------------------------------------------------------------


@pytest.mark.parametrize(
    "verb, path",
    [
        ("get", "/api/v1/payment-methods/?direction=deposit"),
        ("post", "/api/v1/deposits/quote/"),
        ("post", "/api/v1/deposits/"),
        ("get", "/api/v1/deposits/"),
        ("get", "/api/v1/deposits/DEP-23456789/"),
        ("post", "/api/v1/withdrawals/quote/"),
        ("post", "/api/v1/withdrawals/"),
        ("get", "/api/v1/withdrawals/"),
        ("get", "/api/v1/withdrawals/WD-23456789/"),
        ("post", "/api/v1/withdrawals/WD-23456789/cancel/"),
        ("post", "/api/v1/conversions/quotes/"),
        (
            "post",
            "/api/v1/conversions/quotes/6f1c7a8e-1f0b-4c55-9d8e-2a8b2f6f7a10/execute/",
        ),
        ("post", "/api/v1/transfers/"),
    ],
)
def test_requests_without_a_token_are_401(verb, path):
    response = getattr(APIClient(), verb)(path, {}, format="json")
    body = error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Token"
    assert set(body) == {"detail", "code"}


def test_a_bad_token_is_401():
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token nope")
    error(api.get("/api/v1/deposits/"), 401, "authentication_failed")


# --- Payment methods ------------------------------------------------------------------


def test_deposit_methods_for_a_currency(api, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):  # token, profile, methods, their currencies
        response = api.get("/api/v1/payment-methods/?direction=deposit&currency=usd")
    assert response.status_code == 200
    by_name = {m["name"]: m for m in response.json()}
    card = by_name["Card (sandbox)"]
    assert card == {
        "id": method("Card (sandbox)").pk,
        "name": "Card (sandbox)",
        "icon": "card",
        "currencies": card["currencies"],
        "provider_currency": None,
        "amount_currency": "USD",
        "fee_percent": "2.5",
        "fee_fixed": "0.30",
        "min_amount": "10.00",
        "max_amount": card["max_amount"],
        "destination_fields": [],
    }
    assert "USD" in card["currencies"]
    assert by_name["Bank wire"]["fee_percent"] == "0"
    assert by_name["Bank wire"]["min_amount"] == "50.00"
    # In display order, as on the deposit page.
    names = [m["name"] for m in response.json()]
    assert names.index("Bank wire") < names.index("Card (sandbox)")


def test_methods_follow_country_and_switches(api, trader):
    restricted = method("Card (sandbox)")
    restricted.countries = ["DE"]
    restricted.save()
    PaymentMethod.objects.filter(name="Bank wire").update(enabled=False)
    names = {m["name"] for m in api.get("/api/v1/payment-methods/?direction=deposit").json()}
    assert "Card (sandbox)" not in names and "Bank wire" not in names  # trader lives in GB
    trader.profile.country = "DE"
    trader.profile.save()
    names = {m["name"] for m in api.get("/api/v1/payment-methods/?direction=deposit").json()}
    assert "Card (sandbox)" in names


def test_withdrawal_methods_say_what_destination_they_need(api, django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        methods = api.get("/api/v1/payment-methods/?direction=withdrawal&currency=USD").json()
    by_name = {m["name"]: m for m in methods}
    assert by_name["Bank wire"]["destination_fields"] == ["iban", "account_holder"]
    assert by_name["Card (sandbox)"]["destination_fields"] == ["card_last4"]
    assert api.get("/api/v1/payment-methods/?direction=withdrawal&currency=XYZ").json() == []


@pytest.mark.parametrize("query", ["", "?direction=sideways", "?direction=deposit&currency=$$"])
def test_methods_need_a_direction(api, query):
    body = error(api.get(f"/api/v1/payment-methods/{query}"), 400, "invalid")
    assert "errors" in body


# --- Deposits -------------------------------------------------------------------------


def test_deposit_quote_shows_the_fee_and_writes_nothing(api, usd):
    card = method("Card (sandbox)")
    body = {"wallet": usd.pk, "method": card.pk, "amount": "100.00"}
    response = post(api, "/api/v1/deposits/quote/", body)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "method": card.pk,
        "currency": "USD",
        "amount": "100.00",
        "fee": "2.80",
        "wallet_currency": "USD",
        "credit_amount": "97.20",
        "rate": None,
    }
    assert not Deposit.objects.exists()


def test_deposit_quote_with_a_converted_credit(api, trader, rates):
    eur_wallet = services.wallet_open(user=trader, currency="EUR")
    card = method("Card (sandbox)")
    card.provider_currency_id = "USD"
    card.currencies.add("EUR")
    card.save()
    body = {"wallet": eur_wallet.pk, "method": card.pk, "amount": "100"}
    quote = post(api, "/api/v1/deposits/quote/", body).json()
    assert (quote["currency"], quote["wallet_currency"], quote["fee"]) == ("USD", "EUR", "2.80")
    assert Decimal(quote["rate"]) == Decimal(1) / Decimal("1.0823")
    assert quote["credit_amount"] == "89.80"  # 97.20 / 1.0823 = 89.8087..., rounded down


def test_deposit_by_card_sends_the_client_to_the_checkout(api, usd):
    card = method("Card (sandbox)")
    response = post(api, "/api/v1/deposits/", {"wallet": usd.pk, "method": card.pk, "amount": "50"})
    assert response.status_code == 201, response.content
    body = response.json()
    deposit = Deposit.objects.get()
    assert body["reference"] == deposit.reference and body["reference"].startswith("DEP-")
    assert (body["status"], body["amount"], body["fee"], body["credit_amount"]) == (
        "pending",
        "50.00",
        "1.55",
        "48.45",
    )
    assert "/sandbox-psp/checkout/" in body["redirect_url"]
    assert body["payment_details"] == []
    assert balance(usd) == 100_000  # nothing is credited before the payment


def test_deposit_by_wire_gives_the_bank_details(api, usd):
    wire = method("Bank wire")
    response = post(api, "/api/v1/deposits/", {"wallet": usd.pk, "method": wire.pk, "amount": "75"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["redirect_url"] is None
    assert body["reference"] in body["instructions"]
    details = {row["label"]: row["value"] for row in body["payment_details"]}
    assert details["Payment reference"] == body["reference"]
    assert details["IBAN"] == "GB33BUKB20201555555555"


def test_a_provider_that_refuses_to_start_is_502(api, usd):
    card = method("Card (sandbox)")
    refusal = ProviderError("the PSP is down")
    with mock.patch.object(SandboxProvider, "deposit_start", side_effect=refusal):
        response = post(
            api, "/api/v1/deposits/", {"wallet": usd.pk, "method": card.pk, "amount": "50"}
        )
    body = error(response, 502, "provider_error")
    assert "Nothing was charged" in body["detail"]
    assert Deposit.objects.get(reference=body["reference"]).status == Deposit.FAILED


def test_deposits_list_and_detail(api, trader, usd, django_assert_max_num_queries):
    card, wire = method("Card (sandbox)"), method("Bank wire")
    for via, amount in [(card, "20"), (wire, "60"), (card, "30")]:
        post(api, "/api/v1/deposits/", {"wallet": usd.pk, "method": via.pk, "amount": amount})
    with django_assert_max_num_queries(2):  # the token, the deposits
        listed = api.get("/api/v1/deposits/")
    assert [d["amount"] for d in listed.json()] == ["30.00", "60.00", "20.00"]
    assert [d["method_name"] for d in listed.json()][:2] == ["Card (sandbox)", "Bank wire"]
    assert len(api.get("/api/v1/deposits/?limit=1").json()) == 1
    error(api.get("/api/v1/deposits/?limit=0"), 400, "invalid")
    error(api.get("/api/v1/deposits/?limit=101"), 400, "invalid")

    reference = listed.json()[1]["reference"]
    with django_assert_max_num_queries(2):
        detail = api.get(f"/api/v1/deposits/{reference.lower()}/")
    assert detail.status_code == 200
    assert detail.json()["reference"] == reference
    assert {"label": "Payment reference", "value": reference} in detail.json()["payment_details"]


def test_another_traders_deposit_is_404(api, other):
    theirs = client_for(other)
    wallet = services.wallet_open(user=other, currency="USD")
    card = method("Card (sandbox)")
    created = post(
        theirs, "/api/v1/deposits/", {"wallet": wallet.pk, "method": card.pk, "amount": "20"}
    )
    reference = created.json()["reference"]
    error(api.get(f"/api/v1/deposits/{reference}/"), 404, "not_found")
    assert api.get("/api/v1/deposits/").json() == []


def test_a_deposit_into_another_traders_wallet_is_refused(api, other):
    theirs = services.wallet_open(user=other, currency="USD")
    card = method("Card (sandbox)")
    for path in ("/api/v1/deposits/quote/", "/api/v1/deposits/"):
        response = post(api, path, {"wallet": theirs.pk, "method": card.pk, "amount": "20"})
        body = error(response, 400, "invalid")
        assert body["errors"] == {"wallet": ["Choose one of your wallets."]}
    assert not Deposit.objects.exists()


def test_a_method_not_offered_to_the_client_is_refused(api, usd):
    card = method("Card (sandbox)")
    card.countries = ["DE"]
    card.save()
    body = {"wallet": usd.pk, "method": card.pk, "amount": "20"}
    assert "method" in error(post(api, "/api/v1/deposits/", body), 400, "invalid")["errors"]
    assert not Deposit.objects.exists()


@pytest.mark.parametrize(
    "amount, status, code, words",
    [
        ("-10", 400, "invalid", "greater than zero"),
        ("0", 400, "invalid", "greater than zero"),
        ("ten", 400, "invalid", "decimal string"),
        (True, 400, "invalid", "decimal string"),
        ("NaN", 400, "invalid", "decimal string"),
        ("1e400", 400, "invalid", ""),
        ("10.001", 422, "refused", "at most 2 decimal places"),
        (0.1 + 0.2, 422, "refused", "at most 2 decimal places"),  # 0.30000000000000004
        ("5", 422, "refused", "minimum deposit"),
    ],
)
def test_bad_amounts_are_refused_and_nothing_is_written(api, usd, amount, status, code, words):
    card = method("Card (sandbox)")
    response = post(
        api, "/api/v1/deposits/", {"wallet": usd.pk, "method": card.pk, "amount": amount}
    )
    body = error(response, status, code)
    assert words in body["detail"]
    assert not Deposit.objects.exists()


def test_json_numbers_are_read_as_the_decimal_written(api, usd):
    card = method("Card (sandbox)")
    body = {"wallet": usd.pk, "method": card.pk, "amount": 100.1}
    quote = post(api, "/api/v1/deposits/quote/", body).json()
    assert quote["amount"] == "100.10" and quote["fee"] == "2.80"  # 2.5025 + 0.30, half up
    body["amount"] = 25
    assert post(api, "/api/v1/deposits/quote/", body).json()["amount"] == "25.00"


def test_missing_fields_are_named(api):
    body = error(post(api, "/api/v1/deposits/", {}), 400, "invalid")
    assert set(body["errors"]) == {"wallet", "method", "amount"}
    assert body["detail"].startswith("wallet: ")
    error(
        api.post("/api/v1/deposits/", "{nope", content_type="application/json"), 400, "parse_error"
    )


def test_a_policy_refusal_says_what_unlocks_it(api, usd):
    def refuse(user, **context):
        return Decision(False, "Verify your identity to deposit.", unlock="Verify your identity")

    policies.register(policies.DEPOSIT, "test-api", refuse)
    try:
        card = method("Card (sandbox)")
        response = post(
            api, "/api/v1/deposits/", {"wallet": usd.pk, "method": card.pk, "amount": "20"}
        )
    finally:
        policies.unregister(policies.DEPOSIT, "test-api")
    body = error(response, 422, "not_allowed")
    assert body["unlock"] == "Verify your identity"
    assert not Deposit.objects.exists()


# --- Withdrawals ----------------------------------------------------------------------


def withdrawal_body(wallet, via=None, amount="100", **extra) -> dict:
    via = via or method("Bank wire")
    return {"wallet": wallet.pk, "method": via.pk, "amount": amount, "destination": BANK, **extra}


def test_withdrawal_quote(api, usd):
    card = method("Card (sandbox)")
    body = {"wallet": usd.pk, "method": card.pk, "amount": "100"}
    response = post(api, "/api/v1/withdrawals/quote/", body)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "wallet": usd.pk,
        "currency": "USD",
        "method": card.pk,
        "amount": "100.00",
        "fee": "2.80",
        "total": "102.80",
        "balance": "1000.00",
        "balance_after": "897.20",
    }
    assert not Withdrawal.objects.exists() and balance(usd) == 100_000


def test_a_withdrawal_reserves_once_per_key(api, usd):
    response = post(api, "/api/v1/withdrawals/", withdrawal_body(usd), key="w-1")
    assert response.status_code == 201, response.content
    first = response.json()
    assert first["reference"].startswith("WD-")
    assert (first["status"], first["amount"], first["fee"], first["total"]) == (
        "pending",
        "100.00",
        "0.00",
        "100.00",
    )
    assert first["destination"] == {"iban": IBAN.replace(" ", ""), "account_holder": "Alice Trader"}
    assert "Idempotent-Replayed" not in response
    assert balance(usd) == 90_000

    again = post(api, "/api/v1/withdrawals/", withdrawal_body(usd), key="w-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == first
    assert Withdrawal.objects.count() == 1 and balance(usd) == 90_000
    assert ledger_check().ok


@pytest.mark.parametrize(
    "change",
    [
        {"amount": "101"},
        {"destination": {**BANK, "account_holder": "Mallory"}},
        {"method": "card"},
    ],
)
def test_the_same_key_for_another_withdrawal_is_409(api, usd, change):
    post(api, "/api/v1/withdrawals/", withdrawal_body(usd), key="w-1")
    body = withdrawal_body(usd, **change)
    if change.get("method") == "card":
        body["method"] = method("Card (sandbox)").pk
    error(post(api, "/api/v1/withdrawals/", body, key="w-1"), 409, "idempotency_conflict")
    assert Withdrawal.objects.count() == 1 and balance(usd) == 90_000
    assert ledger_check().ok


def test_keys_are_per_client(api, usd, other):
    post(api, "/api/v1/withdrawals/", withdrawal_body(usd), key="shared")
    their_wallet = fund(services.wallet_open(user=other, currency="USD"), "300")
    response = post(
        client_for(other), "/api/v1/withdrawals/", withdrawal_body(their_wallet), key="shared"
    )
    assert response.status_code == 201 and "Idempotent-Replayed" not in response
    assert Withdrawal.objects.count() == 2


def test_a_withdrawal_needs_an_idempotency_key(api, usd):
    error(post(api, "/api/v1/withdrawals/", withdrawal_body(usd)), 400, "idempotency_key_missing")
    error(
        post(api, "/api/v1/withdrawals/", withdrawal_body(usd), key="k" * 65),
        400,
        "idempotency_key_invalid",
    )
    assert not Withdrawal.objects.exists()


def test_a_withdrawal_beyond_the_balance_is_422(api, usd):
    body = error(
        post(api, "/api/v1/withdrawals/", withdrawal_body(usd, amount="1000.01"), key="w"),
        422,
        "insufficient_funds",
    )
    assert "Insufficient funds" in body["detail"] and "Nothing was reserved" in body["detail"]
    assert balance(usd) == 100_000 and not Withdrawal.objects.exists()


def test_a_withdrawal_with_2fa_on_needs_the_code(api, trader, usd):
    device = enable_totp(trader)
    error(post(api, "/api/v1/withdrawals/", withdrawal_body(usd), key="a"), 400, "otp_required")
    wrong = withdrawal_body(usd, otp_code="000000")
    error(post(api, "/api/v1/withdrawals/", wrong, key="b"), 403, "otp_invalid")
    assert not Withdrawal.objects.exists() and balance(usd) == 100_000
    device.refresh_from_db()
    device.throttle_reset()
    right = withdrawal_body(usd, otp_code=totp_code(device))
    assert post(api, "/api/v1/withdrawals/", right, key="c").status_code == 201
    # A replay of the same request needs no fresh code.
    replay = post(api, "/api/v1/withdrawals/", withdrawal_body(usd), key="c")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert balance(usd) == 90_000


def test_a_bad_destination_names_the_field(api, usd):
    body = withdrawal_body(usd, destination={"iban": "DE00 1234", "account_holder": "Alice"})
    response = error(post(api, "/api/v1/withdrawals/", body, key="w"), 400, "invalid")
    assert list(response["errors"]["destination"]) == ["iban"]
    assert not Withdrawal.objects.exists() and balance(usd) == 100_000


def test_withdrawals_list_detail_and_cancel(api, usd, django_assert_max_num_queries):
    for n in range(3):
        post(api, "/api/v1/withdrawals/", withdrawal_body(usd, amount=f"{60 + n}"), key=f"w{n}")
    with django_assert_max_num_queries(2):  # the token, the withdrawals
        listed = api.get("/api/v1/withdrawals/")
    assert [w["amount"] for w in listed.json()] == ["62.00", "61.00", "60.00"]
    reference = listed.json()[0]["reference"]
    assert api.get(f"/api/v1/withdrawals/{reference}/").json() == listed.json()[0]
    assert balance(usd) == 100_000 - 18_300

    cancelled = api.post(f"/api/v1/withdrawals/{reference}/cancel/")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    assert balance(usd) == 100_000 - 12_100
    body = error(api.post(f"/api/v1/withdrawals/{reference}/cancel/"), 422, "refused")
    assert "can no longer be cancelled" in body["detail"]
    assert balance(usd) == 100_000 - 12_100
    assert ledger_check().ok


def test_another_traders_withdrawal_is_404_and_stays(api, other):
    wallet = fund(services.wallet_open(user=other, currency="USD"), "300")
    made = post(client_for(other), "/api/v1/withdrawals/", withdrawal_body(wallet), key="x")
    reference = made.json()["reference"]
    error(api.get(f"/api/v1/withdrawals/{reference}/"), 404, "not_found")
    error(api.post(f"/api/v1/withdrawals/{reference}/cancel/"), 404, "not_found")
    assert Withdrawal.objects.get(reference=reference).status == Withdrawal.PENDING
    assert balance(wallet) == 20_000
    # Their wallet in a body: refused, nothing reserved.
    response = post(api, "/api/v1/withdrawals/", withdrawal_body(wallet), key="y")
    assert error(response, 400, "invalid")["errors"] == {"wallet": ["Choose one of your wallets."]}
    assert balance(wallet) == 20_000 and Withdrawal.objects.count() == 1


# --- Conversions ----------------------------------------------------------------------


def quote(api, source, target, amount="100") -> dict:
    body = {"from_wallet": source.pk, "to_wallet": target.pk, "sell_amount": amount}
    response = post(api, "/api/v1/conversions/quotes/", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_quote_and_execute_a_conversion(api, eur, usd, rates):
    q = quote(api, eur, usd, "100")
    assert q["status"] == "quoted" and q["expires_in"] == 30
    assert (q["from_currency"], q["to_currency"]) == ("EUR", "USD")
    assert (q["sell_amount"], q["fee"], q["buy_amount"]) == ("100.00", "0.00", "107.68")
    assert (q["mid_rate"], q["rate"], q["markup_percent"]) == ("1.0823", "1.0768885", "0.5")
    assert balance(eur) == 50_000  # a quote moves nothing

    path = f"/api/v1/conversions/quotes/{q['public_id']}/execute/"
    done = api.post(path)
    assert done.status_code == 200, done.content
    assert done.json()["status"] == "executed" and done.json()["buy_amount"] == "107.68"
    assert (balance(eur), balance(usd)) == (40_000, 110_768)
    again = api.post(path)
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert (balance(eur), balance(usd)) == (40_000, 110_768)
    assert JournalTransaction.objects.filter(kind="conversion").count() == 1
    assert ledger_check().ok


def test_an_expired_quote_is_422(api, eur, usd, rates):
    q = quote(api, eur, usd)
    with later(31):
        response = api.post(f"/api/v1/conversions/quotes/{q['public_id']}/execute/")
    body = error(response, 422, "quote_expired")
    assert body["detail"] == "The quote expired; ask for a new one."
    assert balance(eur) == 50_000


def test_another_traders_quote_and_wallets(api, eur, usd, other, rates):
    their_eur = fund(services.wallet_open(user=other, currency="EUR"), "100")
    their_usd = services.wallet_open(user=other, currency="USD")
    theirs = quote(client_for(other), their_eur, their_usd, "10")
    error(api.post(f"/api/v1/conversions/quotes/{theirs['public_id']}/execute/"), 404, "not_found")
    error(api.post("/api/v1/conversions/quotes/not-a-uuid/execute/"), 404, "not_found")
    assert Conversion.objects.get(public_id=theirs["public_id"]).status == Conversion.QUOTED
    body = {"from_wallet": their_eur.pk, "to_wallet": usd.pk, "sell_amount": "10"}
    response = error(post(api, "/api/v1/conversions/quotes/", body), 400, "invalid")
    assert response["errors"] == {"from_wallet": ["Choose one of your wallets."]}
    assert balance(their_eur) == 10_000


def test_quote_refusals_are_422_in_words(api, eur, usd, trader):
    body = error(
        post(
            api,
            "/api/v1/conversions/quotes/",
            {"from_wallet": eur.pk, "to_wallet": usd.pk, "sell_amount": "10"},
        ),
        422,
        "rate_unavailable",
    )
    assert "No exchange rate between EUR and USD" in body["detail"]
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0823"))
    too_much = {"from_wallet": eur.pk, "to_wallet": usd.pk, "sell_amount": "500.01"}
    error(post(api, "/api/v1/conversions/quotes/", too_much), 422, "insufficient_funds")
    assert not Conversion.objects.exists()


# --- Transfers ------------------------------------------------------------------------


def test_a_transfer_between_own_wallets_through_a_quote(api, eur, usd, rates):
    q = quote(api, eur, usd, "100")
    body = {
        "from_wallet": eur.pk,
        "to_wallet": usd.pk,
        "amount": "100",
        "quote_id": q["public_id"],
        "reference": "Margin",
    }
    response = post(api, "/api/v1/transfers/", body, key="t-1")
    assert response.status_code == 201, response.content
    done = response.json()
    assert (done["amount"], done["credited"], done["conversion"]) == (
        "100.00",
        "107.68",
        q["public_id"],
    )
    assert (done["to_wallet"], done["to_email"], done["reference"]) == (usd.pk, None, "Margin")
    again = post(api, "/api/v1/transfers/", body, key="t-1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert again.json() == done
    assert (balance(eur), balance(usd)) == (40_000, 110_768)
    error(
        post(api, "/api/v1/transfers/", {**body, "amount": "99"}, key="t-1"),
        409,
        "idempotency_conflict",
    )
    assert Transfer.objects.count() == 1 and ledger_check().ok


def test_a_transfer_across_currencies_needs_a_fresh_quote_of_ones_own(api, eur, usd, other, rates):
    body = {"from_wallet": eur.pk, "to_wallet": usd.pk, "amount": "100"}
    assert (
        "get a quote first"
        in error(post(api, "/api/v1/transfers/", body, key="a"), 422, "refused")["detail"]
    )
    q = quote(api, eur, usd, "100")
    with later(31):
        response = post(api, "/api/v1/transfers/", {**body, "quote_id": q["public_id"]}, key="b")
    error(response, 422, "quote_expired")
    their_eur = fund(services.wallet_open(user=other, currency="EUR"), "100")
    theirs = quote(client_for(other), their_eur, services.wallet_open(user=other, currency="USD"))
    error(
        post(api, "/api/v1/transfers/", {**body, "quote_id": theirs["public_id"]}, key="c"),
        404,
        "not_found",
    )
    assert not Transfer.objects.exists() and balance(eur) == 50_000


def test_a_transfer_to_another_client(api, usd, other, settings):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    body = {
        "from_wallet": usd.pk,
        "to_email": "Bob@Example.com",
        "currency": "usd",
        "amount": "25.50",
    }
    response = post(api, "/api/v1/transfers/", body, key="t-1")
    assert response.status_code == 201, response.content
    done = response.json()
    assert (done["to_wallet"], done["to_email"], done["credited"]) == (
        None,
        "bob@example.com",
        "25.50",
    )
    bob_usd = LedgerAccount.objects.get(owner=other, currency="USD")
    assert (balance(usd), balance(bob_usd)) == (97_450, 2_550)

    again = post(api, "/api/v1/transfers/", body, key="t-1")
    assert again.status_code == 201 and again.json()["id"] == done["id"]
    for changed in ({"amount": "26"}, {"to_email": "carol@example.com"}):
        response = post(api, "/api/v1/transfers/", {**body, **changed}, key="t-1")
        error(response, 409, "idempotency_conflict")
    assert (balance(usd), balance(bob_usd)) == (97_450, 2_550)
    assert Transfer.objects.count() == 1 and ledger_check().ok


def test_transfers_to_other_clients_are_off_by_default(api, usd, other):
    body = {"from_wallet": usd.pk, "to_email": other.email, "currency": "USD", "amount": "10"}
    response = error(post(api, "/api/v1/transfers/", body, key="t"), 422, "refused")
    assert response["detail"] == "Transfers to other clients are not available."
    assert not LedgerAccount.objects.filter(owner=other).exists()


@pytest.mark.parametrize(
    "change, field",
    [
        ({"to_wallet": "own-eur"}, "non_field_errors"),  # both a wallet and an address
        ({"to_email": None}, "non_field_errors"),  # neither
        ({"currency": "EUR"}, "currency"),
        ({"currency": None}, "currency"),
        ({"amount": "-1"}, "amount"),
        ({"quote_id": "nope"}, "quote_id"),
    ],
)
def test_bad_transfer_bodies_are_400(api, usd, eur, other, settings, change, field):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    body = {"from_wallet": usd.pk, "to_email": other.email, "currency": "USD", "amount": "10"}
    for name, value in change.items():
        if value is None:
            body.pop(name)
        else:
            body[name] = eur.pk if value == "own-eur" else value
    response = error(post(api, "/api/v1/transfers/", body, key="t"), 400, "invalid")
    assert field in response["errors"]
    assert balance(usd) == 100_000 and not Transfer.objects.exists()


def test_a_transfer_needs_an_idempotency_key(api, eur, usd):
    body = {"from_wallet": eur.pk, "to_wallet": usd.pk, "amount": "1"}
    error(post(api, "/api/v1/transfers/", body), 400, "idempotency_key_missing")


# --- The schema -----------------------------------------------------------------------


def test_the_schema_lists_the_payment_endpoints(api):
    response = api.get("/api/v1/schema/")
    assert response.status_code == 200
    for path in [
        "/api/v1/payment-methods/",
        "/api/v1/deposits/quote/",
        "/api/v1/deposits/{reference}/",
        "/api/v1/withdrawals/{reference}/cancel/",
        "/api/v1/conversions/quotes/{public_id}/execute/",
        "/api/v1/transfers/",
    ]:
        assert f"{path}:".encode() in response.content


def test_the_schema_generates_without_warnings(tmp_path):
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")
    )
    assert "Idempotency-Key" in (tmp_path / "schema.yml").read_text()
