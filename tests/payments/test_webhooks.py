"""The webhook endpoint itself, and the sandbox deposit end to end over real
HTTP: the client confirms a deposit, pays on the sandbox's hosted checkout,
the sandbox sends its signed webhook to a live server at SITE_URL, and the
wallet is credited once. (Each adapter's hostile webhooks are in
tests/payments/providers/.)"""

from __future__ import annotations

import json
import re

import pytest
import requests

from payments.models import Deposit, JournalTransaction, PaymentMethod, WebhookEvent
from payments.selectors import ledger_check
from tests.factories import TraderFactory

from .providers.helpers import started, wallet_balance


@pytest.mark.django_db
def test_an_unknown_provider_is_404(client):
    assert (
        client.post("/webhooks/nobody/", data=b"{}", content_type="application/json").status_code
        == 404
    )


@pytest.mark.django_db
def test_only_post_is_accepted(client):
    assert client.get("/webhooks/sandbox/").status_code == 405


@pytest.mark.django_db
def test_bank_wires_have_no_webhooks(client, trader):
    deposit = started(trader, PaymentMethod.objects.get(name="Bank wire"), "100.00")
    response = client.post("/webhooks/bank-wire/", data=b"{}", content_type="application/json")
    assert response.status_code == 400
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING and not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_the_endpoint_needs_no_csrf_token():
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/webhooks/sandbox/", data=b"{}", content_type="application/json")
    assert response.status_code == 400  # refused for its signature, not for CSRF


# --- end to end over HTTP ---------------------------------------------------------------


def preview_token(page: str) -> str:
    return re.search(r'name="previewed" value="([^"]+)"', page).group(1)


def deposit_through_the_room(client, method: PaymentMethod, amount: str) -> str:
    """Confirm a deposit as a client does (review, then confirm); return where
    the room sends them."""
    data = {"currency": "USD", "method": method.pk, "amount": amount}
    review = client.post("/room/wallets/deposit/", data)
    assert review.status_code == 200
    confirm = client.post(
        "/room/wallets/deposit/", {**data, "previewed": preview_token(review.content.decode())}
    )
    assert confirm.status_code == 302
    return confirm["Location"]


@pytest.mark.django_db(transaction=True)
def test_sandbox_deposit_end_to_end_over_http(client, live_server, settings):
    settings.SITE_URL = live_server.url
    trader = TraderFactory()
    client.force_login(trader)
    card = PaymentMethod.objects.get(name="Card (sandbox)")

    checkout = deposit_through_the_room(client, card, "100.00")
    assert checkout.startswith("/sandbox-psp/checkout/")
    deposit = Deposit.objects.get(user=trader)
    assert deposit.status == Deposit.PENDING
    page = client.get(checkout)
    assert "100.00 USD" in page.content.decode()

    # Pay: the sandbox sends its webhook over HTTP to the live server
    # (Celery eager, after commit), then sends the client back to us.
    paid = client.post(checkout, {"action": "pay"})
    assert paid.status_code == 302
    assert paid["Location"].endswith(f"/room/wallets/deposit/{deposit.reference}/")

    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED
    assert wallet_balance(deposit) == 9720  # 100.00 − (2.5 % + 0.30)
    event = WebhookEvent.objects.get()
    assert (event.result, event.event_type, event.deposit_id) == (
        "applied",
        "payment.succeeded",
        deposit.pk,
    )

    # Pressing Pay again (back button) sends another event: still one credit.
    client.post(checkout, {"action": "pay"})
    assert WebhookEvent.objects.count() == 2
    assert JournalTransaction.objects.filter(kind="deposit").count() == 1
    assert wallet_balance(deposit) == 9720
    assert ledger_check().ok

    status = client.get(paid["Location"].replace("http://testserver", ""))
    assert "Your wallet is credited" in status.content.decode()


@pytest.mark.django_db(transaction=True)
def test_sandbox_decline_end_to_end_over_http(client, live_server, settings):
    settings.SITE_URL = live_server.url
    trader = TraderFactory()
    client.force_login(trader)
    checkout = deposit_through_the_room(
        client, PaymentMethod.objects.get(name="Card (sandbox)"), "50.00"
    )
    client.post(checkout, {"action": "decline"})
    deposit = Deposit.objects.get(user=trader)
    assert deposit.status == Deposit.FAILED and wallet_balance(deposit) == 0
    assert ledger_check().ok


@pytest.mark.django_db(transaction=True)
def test_a_forged_webhook_over_http_is_refused(live_server, trader):
    deposit = started(trader, PaymentMethod.objects.get(name="Card (sandbox)"), "100.00")
    body = json.dumps(
        {
            "id": "evt_x",
            "type": "payment.succeeded",
            "data": {"reference": deposit.reference, "amount": "100.00", "currency": "USD"},
        }
    )
    response = requests.post(
        f"{live_server.url}/webhooks/sandbox/",
        data=body,
        headers={"Content-Type": "application/json", "Sandbox-Signature": "t=1,v1=00"},
        timeout=10,
    )
    assert response.status_code == 400
    deposit.refresh_from_db()
    assert deposit.status == Deposit.PENDING and wallet_balance(deposit) == 0
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_deliveries_credit_once(live_server, trader):
    """Ten deliveries at once over HTTP: five of one event, five duplicates
    under other ids. The (provider, event id) constraint and the deposit's
    row lock let exactly one credit through."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from tests.conftest import require_or_skip

    require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")

    from payments.models import PaymentProvider
    from payments.providers.sandbox import SIGNATURE_HEADER, sign, webhook_secret_for

    deposit = started(trader, PaymentMethod.objects.get(name="Card (sandbox)"), "100.00")
    secret = webhook_secret_for(PaymentProvider.objects.get(identifier="sandbox"))
    data = {"reference": deposit.reference, "amount": "100.00", "currency": "USD"}
    bodies = [
        json.dumps({"id": event_id, "type": "payment.succeeded", "data": data}).encode()
        for event_id in ["evt_same"] * 5 + [f"evt_dup_{i}" for i in range(5)]
    ]

    def deliver(body: bytes) -> int:
        return requests.post(
            f"{live_server.url}/webhooks/sandbox/",
            data=body,
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(deliver, bodies))
    assert statuses == [200] * 10
    assert WebhookEvent.objects.count() == 6
    assert JournalTransaction.objects.filter(kind="deposit").count() == 1
    assert wallet_balance(deposit) == 9720
    assert ledger_check().ok
