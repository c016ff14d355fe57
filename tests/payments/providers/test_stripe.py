"""The Stripe adapter against Stripe's wire format: Checkout Sessions created
through the official library against a local server speaking Stripe's JSON,
and webhooks signed with Stripe's documented scheme (``Stripe-Signature:
t=<ts>,v1=<HMAC-SHA256 of "<ts>.<body>">``, computed here by hand and by the
library's own helper), with every hostile case."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qs

import pytest
import stripe

from payments.models import Deposit, JournalTransaction, PaymentProvider, WebhookEvent
from payments.selectors import ledger_check
from payments.services.deposits import DepositError, deposit_start
from tests.factories import TraderFactory

from .helpers import deposit_for, fake_server, method_for, provider_with, wallet_balance

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "whsec_test_5f3c2a"
API_KEY = "sk_test_51Hx"


def session_json(reference: str, *, id="cs_test_a1", amount=10000, currency="usd", status="unpaid"):
    return {
        "id": id,
        "object": "checkout.session",
        "amount_total": amount,
        "currency": currency,
        "client_reference_id": reference,
        "livemode": False,
        "mode": "payment",
        "payment_status": status,
        "status": "open" if status == "unpaid" else "complete",
        "url": f"https://checkout.stripe.com/c/pay/{id}",
        "metadata": {"deposit_reference": reference},
    }


def stripe_api(method, path, headers, body):
    if method == "POST" and path == "/v1/checkout/sessions":
        params = parse_qs(body.decode())
        reference = params["client_reference_id"][0]
        return 200, session_json(reference, id=f"cs_test_{reference}")
    return 404, {"error": {"type": "invalid_request_error", "message": "Unrecognized request URL"}}


@pytest.fixture
def provider(db):
    return provider_with(
        "stripe", "stripe", secrets={"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET}
    )


@pytest.fixture
def method(provider):
    return method_for(provider, ("USD", "EUR", "JPY"), name="Card", fee_percent=2, fee_fixed=0)


@pytest.fixture
def deposit(trader, method, provider):
    with fake_server(stripe_api) as api:
        provider.settings = {"api_base": api.url}
        provider.save()
        deposit = deposit_for(trader, method, "100.00")
        deposit_start(deposit=deposit, return_url="https://broker.test/room/wallets/deposit/x/")
    deposit.refresh_from_db()
    return deposit  # fee 2.00, credit 98.00


def event_json(deposit, kind="checkout.session.completed", *, id=None, **session):
    session.setdefault("status", "paid")
    session.setdefault("id", f"cs_test_{deposit.reference}")
    return {
        "id": id or f"evt_{time.time_ns()}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "livemode": False,
        "type": kind,
        "data": {"object": session_json(deposit.reference, **session)},
    }


def stripe_signature(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Stripe's documented scheme, computed by hand."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def send(client, body, *, secret=WEBHOOK_SECRET, header=None, ip="127.0.0.1", timestamp=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if header is None:
        header = stripe_signature(raw, secret, timestamp)
    return client.post(
        "/webhooks/stripe/",
        data=raw,
        content_type="application/json",
        headers={"Stripe-Signature": header},
        REMOTE_ADDR=ip,
    )


def untouched(deposit, status=Deposit.PENDING):
    deposit.refresh_from_db()
    assert deposit.status == status and deposit.journal_id is None
    assert wallet_balance(deposit) == 0


# --- Checkout Session ------------------------------------------------------------------


def test_start_creates_a_checkout_session_with_the_official_library(trader, method, provider):
    with fake_server(stripe_api) as api:
        provider.settings = {"api_base": api.url, "product_name": "Broker deposit"}
        provider.save()
        deposit = deposit_for(trader, method, "100.00")
        start = deposit_start(deposit=deposit, return_url="https://broker.test/back/")
    session_id = f"cs_test_{deposit.reference}"
    assert start.redirect_url == f"https://checkout.stripe.com/c/pay/{session_id}"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING and deposit.provider_reference == session_id
    (request,) = api.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["Idempotency-Key"] == f"deposit-start:{deposit.reference}"
    params = parse_qs(request.body.decode())
    assert params["mode"] == ["payment"]
    assert params["client_reference_id"] == [deposit.reference]
    assert params["line_items[0][price_data][unit_amount]"] == ["10000"]  # minor units
    assert params["line_items[0][price_data][currency]"] == ["usd"]
    assert params["line_items[0][price_data][product_data][name]"] == ["Broker deposit"]
    assert params["line_items[0][quantity]"] == ["1"]
    assert params["success_url"] == params["cancel_url"] == ["https://broker.test/back/"]
    assert params["customer_email"] == [trader.email]


def test_a_zero_decimal_currency_is_sent_in_whole_units(trader, method, provider):
    with fake_server(stripe_api) as api:
        provider.settings = {"api_base": api.url}
        provider.save()
        deposit = deposit_for(trader, method, "5000", currency="JPY")
        deposit_start(deposit=deposit, return_url="https://broker.test/back/")
    params = parse_qs(api.requests[0].body.decode())
    assert params["line_items[0][price_data][unit_amount]"] == ["5000"]
    assert params["line_items[0][price_data][currency]"] == ["jpy"]


def test_a_refusal_by_stripe_fails_the_deposit_with_a_clear_message(trader, method, provider):
    def refuse(method_, path, headers, body):
        return 400, {
            "error": {
                "type": "invalid_request_error",
                "message": "Amount must be at least $0.50 usd",
            }
        }

    with fake_server(refuse) as api:
        provider.settings = {"api_base": api.url}
        provider.save()
        deposit = deposit_for(trader, method, "100.00")
        with pytest.raises(DepositError, match="could not start the payment"):
            deposit_start(deposit=deposit, return_url="https://broker.test/back/")
    deposit.refresh_from_db()
    assert deposit.status == Deposit.FAILED


def test_without_an_api_key_the_deposit_fails_before_any_call(trader, method, provider):
    provider.secrets = ""
    provider.save()
    deposit = deposit_for(trader, method, "100.00")
    with pytest.raises(DepositError, match="no API key"):
        deposit_start(deposit=deposit, return_url="https://broker.test/back/")


# --- webhooks ---------------------------------------------------------------------------


def test_the_library_helper_signs_as_documented():
    payload = '{"id": "evt_1"}'
    header = stripe.WebhookSignature.generate_signature_header(payload, WEBHOOK_SECRET, 1700)
    assert header == stripe_signature(payload.encode(), WEBHOOK_SECRET, 1700)


def test_a_paid_session_credits_once(client, deposit):
    response = send(client, event_json(deposit))
    assert response.status_code == 200
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 9800
    lines = sorted(
        (e.account.code or "wallet", e.amount)
        for e in deposit.journal.entries.select_related("account")
    )
    assert lines == [("fees", 200), ("psp:stripe", -10000), ("wallet", 9800)]
    assert ledger_check().ok


def test_signed_by_the_library_helper_is_accepted(client, deposit):
    raw = json.dumps(event_json(deposit))
    header = stripe.WebhookSignature.generate_signature_header(raw, WEBHOOK_SECRET)
    assert send(client, raw.encode(), header=header).status_code == 200
    assert wallet_balance(deposit) == 9800


@pytest.mark.parametrize(
    "header", ["t={now},v1=" + "a" * 64, "t={now}", "v1=deadbeef", "nonsense", ""]
)
def test_a_forged_signature_is_refused(client, deposit, header):
    response = send(client, event_json(deposit), header=header.format(now=int(time.time())))
    assert response.status_code == 400
    untouched(deposit)
    assert not WebhookEvent.objects.exists()


def test_another_secret_or_an_old_timestamp_is_refused(client, deposit):
    assert send(client, event_json(deposit), secret="whsec_wrong").status_code == 400
    old = int(time.time()) - 301
    assert send(client, event_json(deposit), timestamp=old).status_code == 400
    untouched(deposit)
    assert not WebhookEvent.objects.exists()


def test_no_configured_webhook_secret_refuses_everything(client, deposit, provider):
    provider.secrets = ""
    provider.save()
    assert send(client, event_json(deposit)).status_code == 400
    untouched(deposit)


def test_a_replayed_event_credits_once(client, deposit):
    body = event_json(deposit, id="evt_replayed")
    assert send(client, body).status_code == 200
    response = send(client, body)
    assert response.json()["received"][0]["result"] == "replay"
    assert wallet_balance(deposit) == 9800
    assert JournalTransaction.objects.filter(kind="deposit").count() == 1


def test_completed_and_async_succeeded_for_one_payment_credit_once(client, deposit):
    send(client, event_json(deposit))
    send(client, event_json(deposit, "checkout.session.async_payment_succeeded"))
    assert wallet_balance(deposit) == 9800
    assert WebhookEvent.objects.filter(result="applied").count() == 1


def test_an_asynchronous_payment_is_pending_until_it_succeeds(client, deposit):
    send(client, event_json(deposit, status="unpaid"))
    untouched(deposit)
    send(client, event_json(deposit, "checkout.session.async_payment_succeeded"))
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 9800


def test_expired_after_completed_changes_nothing(client, deposit):
    send(client, event_json(deposit))
    send(client, event_json(deposit, "checkout.session.expired", status="unpaid"))
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 9800


def test_expired_or_async_failed_fail_the_deposit(client, deposit, trader, method, provider):
    send(client, event_json(deposit, "checkout.session.expired", status="unpaid"))
    untouched(deposit, Deposit.FAILED)
    with fake_server(stripe_api) as api:
        provider.settings = {"api_base": api.url}
        provider.save()
        other = deposit_for(trader, method, "100.00")
        deposit_start(deposit=other, return_url="https://broker.test/back/")
    send(client, event_json(other, "checkout.session.async_payment_failed", status="unpaid"))
    untouched(other, Deposit.FAILED)


@pytest.mark.parametrize(
    ("amount", "currency", "reason"),
    [
        (9999, "usd", "Paid another amount: 99.99 USD"),
        (10000, "eur", "Paid in another currency: 100.00 EUR"),
        (10000, "jpy", "Paid in another currency: 10000 JPY"),
    ],
)
def test_a_mismatch_is_flagged_and_not_credited(client, deposit, amount, currency, reason):
    response = send(client, event_json(deposit, amount=amount, currency=currency))
    assert response.json()["received"][0]["result"] == "flagged"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.FLAGGED and reason in deposit.flag_reason
    assert wallet_balance(deposit) == 0


def test_an_unknown_reference_is_ignored(client, deposit):
    body = event_json(deposit)
    body["data"]["object"]["client_reference_id"] = "DEP-UNKN0WN2"
    response = send(client, body)
    assert response.status_code == 200
    assert response.json()["received"][0]["result"] == "ignored"
    untouched(deposit)


def test_events_we_do_not_act_on_are_recorded_and_ignored(client, deposit):
    body = {
        "id": "evt_charge",
        "object": "event",
        "type": "charge.refunded",
        "data": {"object": {}},
    }
    assert send(client, body).status_code == 200
    assert WebhookEvent.objects.get().result == "ignored"
    untouched(deposit)


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"object": "event"}', b'"text"'])
def test_a_malformed_body_is_refused_even_when_signed(client, deposit, raw):
    assert send(client, raw).status_code == 400
    untouched(deposit)
    assert not WebhookEvent.objects.exists()


def test_an_address_outside_the_allow_list_is_refused(client, deposit, provider):
    provider.webhook_ip_allowlist = "3.18.12.63\n3.130.192.231/32"
    provider.save()
    assert send(client, event_json(deposit), ip="127.0.0.1").status_code == 400
    untouched(deposit)
    assert send(client, event_json(deposit), ip="3.130.192.231").status_code == 200
    assert wallet_balance(deposit) == 9800


def test_a_deposit_of_another_trader_is_credited_to_that_trader_only(client, deposit, method):
    other = TraderFactory()
    send(client, event_json(deposit))
    assert not other.ledger_accounts.filter(balance__gt=0).exists()
    assert PaymentProvider.objects.get(identifier="stripe").deposits.count() == 1
