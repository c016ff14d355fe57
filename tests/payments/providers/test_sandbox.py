"""The sandbox PSP: its hosted checkout, the webhook it sends (signed as
documented in payments.providers.sandbox), and every hostile webhook: forged
or stale signature, wrong secret, replay, duplicate, out of order, amount or
currency mismatch, unknown deposit, malformed body, address not allowed."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from unittest import mock

import pytest
from django.core import signing

from backoffice.models import Event
from backoffice.secrets import encrypt
from payments.models import (
    Deposit,
    JournalTransaction,
    PaymentMethod,
    PaymentProvider,
    WebhookEvent,
)
from payments.providers import psp_for
from payments.providers.base import WebhookRejected
from payments.providers.sandbox import (
    SIGNATURE_HEADER,
    checkout_session,
    sign,
    verify_signature,
    webhook_secret_for,
)
from payments.selectors import ledger_check
from tests.factories import TraderFactory

from .helpers import started, wallet_balance

pytestmark = pytest.mark.django_db


@pytest.fixture
def sandbox() -> PaymentProvider:
    return PaymentProvider.objects.get(identifier="sandbox")


@pytest.fixture
def card() -> PaymentMethod:
    return PaymentMethod.objects.get(name="Card (sandbox)")  # 2.5 % + 0.30, min 10


@pytest.fixture
def deposit(trader, card) -> Deposit:
    return started(trader, card, "100.00")  # fee 2.80, credit 97.20


def event_for(deposit: Deposit, kind="payment.succeeded", *, amount=None, currency=None, id=None):
    return {
        "id": id or f"evt_{time.time_ns()}",
        "type": kind,
        "created": int(time.time()),
        "data": {
            "reference": deposit.reference,
            "amount": amount if amount is not None else str(Decimal(deposit.amount) / 100),
            "currency": currency or deposit.currency_id,
        },
    }


def send(client, body, *, secret=None, timestamp=None, header=None, ip="127.0.0.1", to="sandbox"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if header is None:
        provider = PaymentProvider.objects.get(identifier=to)
        header = sign(raw, secret or webhook_secret_for(provider), timestamp)
    return client.post(
        f"/webhooks/{to}/",
        data=raw,
        content_type="application/json",
        headers={SIGNATURE_HEADER: header},
        REMOTE_ADDR=ip,
    )


def nothing_written(deposit: Deposit, status=Deposit.PENDING) -> None:
    deposit.refresh_from_db()
    assert deposit.status == status
    assert deposit.journal_id is None
    assert wallet_balance(deposit) == 0
    assert not WebhookEvent.objects.exists()


# --- the adapter ----------------------------------------------------------------------


def test_start_sends_the_client_to_the_hosted_checkout(deposit):
    assert deposit.status == Deposit.PENDING
    assert deposit.provider_reference == f"sbx_{deposit.reference}"
    start = psp_for(deposit.provider).deposit_start(deposit, return_url="http://x/back/")
    assert start.redirect_url.startswith("/sandbox-psp/checkout/")
    token = start.redirect_url.split("/")[-2]
    assert checkout_session(token) == {
        "p": "sandbox",
        "ref": deposit.reference,
        "amt": "100.00",
        "cur": "USD",
        "ret": "http://x/back/",
    }


def test_the_secret_is_derived_with_zero_set_up_and_configurable(sandbox, settings):
    derived = webhook_secret_for(sandbox)
    assert len(derived) == 64 and derived == webhook_secret_for(sandbox)
    settings.SECRET_KEY = "another-secret-key-" * 3
    assert webhook_secret_for(sandbox) != derived
    sandbox.secrets = encrypt({"webhook_secret": "configured"})
    assert webhook_secret_for(sandbox) == "configured"


def test_signature_scheme_is_hmac_sha256_over_timestamp_dot_body():
    import hashlib
    import hmac

    body = b'{"id":"evt_1"}'
    header = sign(body, "s3cret", 1_700_000_000)
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    verify_signature(body, header, "s3cret", now=1_700_000_000 + 299)
    with pytest.raises(WebhookRejected):
        verify_signature(body, header, "s3cret", now=1_700_000_000 + 301)
    with pytest.raises(WebhookRejected):
        verify_signature(body + b" ", header, "s3cret", now=1_700_000_000)


def test_payout_is_automatic(sandbox):
    result = psp_for(sandbox).payout(withdrawal=None)
    assert result.paid and result.reference.startswith("sbx_po_")


# --- the hosted checkout ----------------------------------------------------------------


def checkout_url(deposit: Deposit) -> str:
    return psp_for(deposit.provider).deposit_start(deposit, return_url="http://testserver/back/")


def test_checkout_shows_amount_merchant_and_both_buttons(client, deposit):
    page = client.get(checkout_url(deposit).redirect_url)
    text = page.content.decode()
    assert page.status_code == 200
    assert "100.00 USD" in text and deposit.reference in text
    assert 'value="pay"' in text and 'value="decline"' in text
    assert "Test mode" in text


def test_a_tampered_checkout_token_is_refused(client, deposit):
    url = checkout_url(deposit).redirect_url
    token = url.split("/")[-2]
    forged = signing.dumps(
        {"p": "sandbox", "ref": deposit.reference, "amt": "1.00", "cur": "USD", "ret": "/"},
        salt="another salt",
    )
    for bad in (token[:-2] + "xx", forged):
        response = client.get(f"/sandbox-psp/checkout/{bad}/")
        assert response.status_code == 400
        assert "not valid" in response.content.decode()
    response = client.post(url, {"action": "steal"})
    assert response.status_code == 400


def test_pay_sends_a_signed_webhook_after_commit_then_returns_the_client(
    client, deposit, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "http://psp-callback.test"
    start = checkout_url(deposit)
    with mock.patch("payments.providers.sandbox.requests.post") as post:
        post.return_value.status_code = 200
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.post(start.redirect_url, {"action": "pay"})
        assert response.status_code == 302 and response["Location"] == "http://testserver/back/"
        post.assert_not_called()  # nothing is sent before the commit
        for callback in callbacks:
            callback()
    (url,), kwargs = post.call_args
    assert url == "http://psp-callback.test/webhooks/sandbox/"
    body = kwargs["data"]
    verify_signature(
        body, kwargs["headers"][SIGNATURE_HEADER], webhook_secret_for(deposit.provider)
    )
    sent = json.loads(body)
    assert sent["type"] == "payment.succeeded" and sent["id"].startswith("evt_")
    assert sent["data"] == {"reference": deposit.reference, "amount": "100.00", "currency": "USD"}
    # Delivered to our endpoint exactly as sent, it credits the deposit.
    response = client.post(
        "/webhooks/sandbox/",
        data=body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: kwargs["headers"][SIGNATURE_HEADER]},
    )
    assert response.status_code == 200
    assert wallet_balance(deposit) == 9720


def test_decline_sends_a_failure(client, deposit, django_capture_on_commit_callbacks):
    with mock.patch("payments.providers.sandbox.requests.post") as post:
        post.return_value.status_code = 200
        with django_capture_on_commit_callbacks(execute=True):
            client.post(checkout_url(deposit).redirect_url, {"action": "decline"})
    sent = json.loads(post.call_args.kwargs["data"])
    assert sent["type"] == "payment.failed"


def test_an_unreachable_webhook_endpoint_leaves_the_deposit_pending(
    client, deposit, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "http://127.0.0.1:9"  # nothing listens there
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(checkout_url(deposit).redirect_url, {"action": "pay"})
    assert response.status_code == 302
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING


# --- webhooks: the good path and every hostile one ----------------------------------------


def test_a_paid_webhook_credits_the_wallet_through_the_ledger(client, deposit):
    response = send(client, event_for(deposit))
    assert response.status_code == 200
    assert response.json()["received"][0]["result"] == "applied"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and deposit.completed_at
    assert wallet_balance(deposit) == 9720
    lines = {
        (e.account.code or "wallet", e.currency_id): e.amount
        for e in deposit.journal.entries.select_related("account")
    }
    assert lines == {("psp:sandbox", "USD"): -10000, ("fees", "USD"): 280, ("wallet", "USD"): 9720}
    assert deposit.journal.idempotency_key == f"deposit:{deposit.pk}"
    event = Event.objects.get(name="deposit.completed")
    assert event.client == deposit.user and event.payload["credit_amount"] == "97.20"
    assert ledger_check().ok


@pytest.mark.parametrize(
    "header",
    [
        "t={now},v1=" + "0" * 64,  # forged
        "t={now}",  # no signature
        "v1=abc",  # no timestamp
        "garbage",
        "",
    ],
)
def test_a_forged_or_missing_signature_is_refused_and_nothing_written(client, deposit, header):
    response = send(client, event_for(deposit), header=header.format(now=int(time.time())))
    assert response.status_code == 400
    nothing_written(deposit)


def test_a_signature_with_another_secret_is_refused(client, deposit):
    response = send(client, event_for(deposit), secret="not-the-secret")
    assert response.status_code == 400
    nothing_written(deposit)


def test_a_configured_secret_replaces_the_derived_one(client, deposit, sandbox):
    derived = webhook_secret_for(sandbox)
    sandbox.secrets = encrypt({"webhook_secret": "whsec_configured"})
    sandbox.save()
    assert send(client, event_for(deposit), secret=derived).status_code == 400
    assert send(client, event_for(deposit), secret="whsec_configured").status_code == 200


def test_a_stale_or_future_timestamp_is_refused(client, deposit):
    for skew in (-301, 301):
        response = send(client, event_for(deposit), timestamp=int(time.time()) + skew)
        assert response.status_code == 400
    nothing_written(deposit)


def test_a_replayed_event_credits_once(client, deposit):
    body = event_for(deposit, id="evt_same")
    assert send(client, body).status_code == 200
    again = send(client, body)
    assert again.status_code == 200
    assert again.json()["received"][0]["result"] == "replay"
    assert wallet_balance(deposit) == 9720
    assert WebhookEvent.objects.count() == 1
    assert JournalTransaction.objects.filter(kind="deposit").count() == 1
    assert Event.objects.filter(name="deposit.completed").count() == 1


def test_a_duplicate_event_about_the_same_payment_credits_once(client, deposit):
    assert send(client, event_for(deposit, id="evt_1")).status_code == 200
    response = send(client, event_for(deposit, id="evt_2"))
    assert response.status_code == 200
    assert response.json()["received"][0]["result"] == "ignored"
    assert wallet_balance(deposit) == 9720
    assert list(WebhookEvent.objects.order_by("id").values_list("result", flat=True)) == [
        "applied",
        "ignored",
    ]


def test_a_failure_after_the_completion_changes_nothing(client, deposit):
    send(client, event_for(deposit))
    response = send(client, event_for(deposit, "payment.failed"))
    assert response.status_code == 200
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 9720
    assert not Event.objects.filter(name="deposit.failed").exists()


def test_a_completion_after_a_failure_wins_and_credits_once(client, deposit):
    send(client, event_for(deposit, "payment.failed"))
    deposit.refresh_from_db()
    assert deposit.status == Deposit.FAILED and wallet_balance(deposit) == 0
    send(client, event_for(deposit))
    send(client, event_for(deposit))
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 9720


@pytest.mark.parametrize(
    ("amount", "currency", "reason"),
    [
        ("99.99", "USD", "Paid another amount: 99.99 USD, expected 100.00 USD."),
        ("1000.00", "USD", "Paid another amount"),
        ("100.001", "USD", "Paid another amount"),
        ("100.00", "EUR", "Paid in another currency: 100.00 EUR, expected 100.00 USD."),
    ],
)
def test_a_mismatch_is_flagged_for_finance_and_not_credited(
    client, deposit, amount, currency, reason
):
    response = send(client, event_for(deposit, amount=amount, currency=currency))
    assert response.status_code == 200
    assert response.json()["received"][0]["result"] == "flagged"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.FLAGGED and reason in deposit.flag_reason
    assert deposit.journal_id is None and wallet_balance(deposit) == 0
    # A correct confirmation afterwards does not slip past the flag.
    send(client, event_for(deposit))
    deposit.refresh_from_db()
    assert deposit.status == Deposit.FLAGGED and wallet_balance(deposit) == 0
    assert Event.objects.filter(name="deposit.flagged").count() == 1


def test_an_unknown_reference_is_recorded_as_ignored_and_changes_nothing(client, deposit):
    body = event_for(deposit)
    body["data"]["reference"] = "DEP-ZZZZZZZZ"
    response = send(client, body)
    assert response.status_code == 200
    assert response.json()["received"][0]["result"] == "ignored"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING and wallet_balance(deposit) == 0
    assert WebhookEvent.objects.get().message == "No deposit with this reference for this provider."


def test_another_providers_deposit_cannot_be_confirmed_here(client):
    wire = PaymentMethod.objects.get(name="Bank wire")
    deposit = started(TraderFactory(), wire, "100.00")
    response = send(client, event_for(deposit))
    assert response.status_code == 200
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING and wallet_balance(deposit) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        b'{"id": "evt_1", "type": "payment.succeeded"}',
        b'{"id": "", "type": "payment.succeeded", "data": {}}',
        b'{"id": "evt_1", "type": "payment.succeeded", "data": {"reference": "DEP-X"}}',
        b'{"id": "evt_1", "type": "payment.succeeded", '
        b'"data": {"reference": "DEP-X", "currency": "USD", "amount": "ten"}}',
        b'{"id": "evt_1", "type": "payment.succeeded", '
        b'"data": {"reference": "DEP-X", "currency": "USD", "amount": 10.5}}',
        b'{"id": "evt_1", "type": "payment.succeeded", '
        b'"data": {"reference": "DEP-X", "currency": "USD", "amount": "NaN"}}',
    ],
)
def test_a_malformed_body_is_refused_even_when_signed(client, deposit, raw):
    assert send(client, raw).status_code == 400
    nothing_written(deposit)


def test_an_address_outside_the_allow_list_is_refused(client, deposit, sandbox):
    sandbox.webhook_ip_allowlist = "10.0.0.0/8\n2001:db8::/32"
    sandbox.save()
    for ip in ("127.0.0.1", "192.168.1.10", "2001:db9::1"):
        assert send(client, event_for(deposit), ip=ip).status_code == 400
    nothing_written(deposit)
    assert send(client, event_for(deposit), ip="10.20.30.40").status_code == 200
    assert wallet_balance(deposit) == 9720


def test_a_forwarded_for_header_does_not_pass_the_allow_list(client, deposit, sandbox):
    sandbox.webhook_ip_allowlist = "10.0.0.1"
    sandbox.save()
    raw = json.dumps(event_for(deposit)).encode()
    response = client.post(
        "/webhooks/sandbox/",
        data=raw,
        content_type="application/json",
        headers={
            SIGNATURE_HEADER: sign(raw, webhook_secret_for(sandbox)),
            "X-Forwarded-For": "10.0.0.1",
        },
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 400
    nothing_written(deposit)


def test_an_unhandled_event_type_is_recorded_and_ignored(client, deposit):
    response = send(client, event_for(deposit, "payment.refunded"))
    assert response.status_code == 200
    assert WebhookEvent.objects.get().result == "ignored"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING
