"""The BTCPay Server adapter against the Greenfield API's wire format: invoices
created and fetched from a local server speaking its JSON, webhooks signed
``BTCPay-Sig: sha256=<HMAC-SHA256 of the raw body>``, and every hostile case."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from payments.models import Deposit, JournalTransaction, WebhookEvent
from payments.selectors import ledger_check
from payments.services.deposits import DepositError, deposit_start

from .helpers import deposit_for, fake_server, method_for, provider_with, wallet_balance

pytestmark = pytest.mark.django_db

STORE = "7Ht2kqFpStoreId"
API_KEY = "1b7f0c9a-greenfield"
WEBHOOK_SECRET = "btcpay-webhook-secret"


class Greenfield:
    """The part of BTCPay's Greenfield API the adapter uses."""

    def __init__(self) -> None:
        self.invoices: dict[str, dict] = {}

    def __call__(self, method, path, headers, body):
        if headers.get("Authorization") != f"token {API_KEY}":
            return 401, {"code": "unauthenticated", "message": "Authentication is required"}
        base = f"/api/v1/stores/{STORE}/invoices"
        if method == "POST" and path == base:
            request = json.loads(body)
            invoice_id = f"Inv{len(self.invoices) + 1:04d}"
            self.invoices[invoice_id] = {
                "id": invoice_id,
                "storeId": STORE,
                "amount": request["amount"],
                "currency": request["currency"],
                "metadata": request["metadata"],
                "checkout": request["checkout"],
                "status": "New",
                "checkoutLink": f"https://btcpay.example/i/{invoice_id}",
            }
            return 200, self.invoices[invoice_id]
        if method == "GET" and path.startswith(base + "/"):
            invoice = self.invoices.get(path.rsplit("/", 1)[1])
            if invoice is None:
                return 404, {"code": "invoice-not-found", "message": "The invoice was not found"}
            return 200, invoice
        return 404, {"code": "not-found", "message": "Not found"}


@pytest.fixture
def greenfield():
    api = Greenfield()
    with fake_server(api) as server:
        server.api = api
        yield server


@pytest.fixture
def provider(greenfield):
    return provider_with(
        "btcpay",
        "btcpay",
        settings={"url": greenfield.url, "store_id": STORE},
        secrets={"api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET},
    )


@pytest.fixture
def method(provider):
    return method_for(provider, ("USD", "BTC"), name="Bitcoin", fee_percent=1)


@pytest.fixture
def deposit(trader, method):
    deposit = deposit_for(trader, method, "250.00")
    deposit_start(deposit=deposit, return_url="https://broker.test/back/")
    deposit.refresh_from_db()
    return deposit  # fee 2.50, credit 247.50


def delivery(deposit, kind="InvoiceSettled", *, id="d1", original=None, store=STORE):
    return {
        "deliveryId": id,
        "webhookId": "Wh1",
        "originalDeliveryId": original or id,
        "isRedelivery": original is not None,
        "type": kind,
        "timestamp": 1_700_000_000,
        "storeId": store,
        "invoiceId": deposit.provider_reference,
        "metadata": {"orderId": deposit.reference},
    }


def send(client, body, *, secret=WEBHOOK_SECRET, header=None, ip="127.0.0.1"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    if header is None:
        header = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/btcpay/",
        data=raw,
        content_type="application/json",
        headers={"BTCPay-Sig": header},
        REMOTE_ADDR=ip,
    )


def untouched(deposit, status=Deposit.PENDING):
    deposit.refresh_from_db()
    assert deposit.status == status and deposit.journal_id is None
    assert wallet_balance(deposit) == 0


def test_start_creates_an_invoice_and_redirects_to_its_checkout(trader, method, greenfield):
    deposit = deposit_for(trader, method, "250.00")
    start = deposit_start(deposit=deposit, return_url="https://broker.test/back/")
    assert start.redirect_url == "https://btcpay.example/i/Inv0001"
    deposit.refresh_from_db()
    assert deposit.provider_reference == "Inv0001" and deposit.status == Deposit.PENDING
    (request,) = greenfield.requests
    assert request.method == "POST" and request.path == f"/api/v1/stores/{STORE}/invoices"
    assert request.headers["Authorization"] == f"token {API_KEY}"
    body = json.loads(request.body)
    assert body["amount"] == "250.00" and body["currency"] == "USD"
    assert body["metadata"]["orderId"] == deposit.reference
    assert body["checkout"]["redirectURL"] == "https://broker.test/back/"


def test_a_refused_invoice_fails_the_deposit(trader, method, provider):
    provider.secrets = ""
    provider.save()
    deposit = deposit_for(trader, method, "250.00")
    with pytest.raises(DepositError, match="no API key"):
        deposit_start(deposit=deposit, return_url="https://broker.test/back/")
    deposit.refresh_from_db()
    assert deposit.status == Deposit.FAILED


def test_an_unreachable_server_fails_the_start(trader, method, provider):
    provider.settings = {"url": "http://127.0.0.1:9", "store_id": STORE}
    provider.save()
    deposit = deposit_for(trader, method, "250.00")
    with pytest.raises(DepositError, match="cannot be reached"):
        deposit_start(deposit=deposit, return_url="https://broker.test/back/")


def test_settled_credits_from_the_fetched_invoice(client, deposit, greenfield):
    response = send(client, delivery(deposit))
    assert response.status_code == 200
    assert greenfield.requests[-1].method == "GET"
    assert greenfield.requests[-1].path.endswith(f"/invoices/{deposit.provider_reference}")
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 24750
    assert ledger_check().ok


@pytest.mark.parametrize("header", ["sha256=" + "0" * 64, "sha1=abc", "abc", ""])
def test_a_forged_signature_is_refused(client, deposit, header):
    assert send(client, delivery(deposit), header=header).status_code == 400
    untouched(deposit)
    assert not WebhookEvent.objects.exists()


def test_another_secret_is_refused(client, deposit):
    assert send(client, delivery(deposit), secret="guessed").status_code == 400
    untouched(deposit)


def test_a_replay_and_a_redelivery_credit_once(client, deposit):
    assert send(client, delivery(deposit, id="d1")).status_code == 200
    assert send(client, delivery(deposit, id="d1")).json()["received"][0]["result"] == "replay"
    # Redelivered from BTCPay's dashboard: a new delivery id, the original kept.
    redelivery = send(client, delivery(deposit, id="d9", original="d1"))
    assert redelivery.json()["received"][0]["result"] == "replay"
    assert wallet_balance(deposit) == 24750
    assert JournalTransaction.objects.filter(kind="deposit").count() == 1


def test_a_duplicate_event_credits_once(client, deposit):
    send(client, delivery(deposit, id="d1"))
    send(client, delivery(deposit, id="d2"))
    assert wallet_balance(deposit) == 24750


def test_processing_then_settled(client, deposit):
    send(client, delivery(deposit, "InvoiceReceivedPayment", id="d1"))
    send(client, delivery(deposit, "InvoiceProcessing", id="d2"))
    untouched(deposit)
    send(client, delivery(deposit, "InvoiceSettled", id="d3"))
    assert wallet_balance(deposit) == 24750


def test_expired_after_settled_changes_nothing(client, deposit):
    send(client, delivery(deposit, id="d1"))
    send(client, delivery(deposit, "InvoiceExpired", id="d2"))
    send(client, delivery(deposit, "InvoiceProcessing", id="d3"))
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 24750


def test_an_expired_invoice_paid_late_is_credited(client, deposit):
    send(client, delivery(deposit, "InvoiceExpired", id="d1"))
    untouched(deposit, Deposit.FAILED)
    send(client, delivery(deposit, "InvoiceSettled", id="d2"))
    deposit.refresh_from_db()
    assert deposit.status == Deposit.COMPLETED and wallet_balance(deposit) == 24750


def test_invalid_fails_the_deposit(client, deposit):
    send(client, delivery(deposit, "InvoiceInvalid"))
    untouched(deposit, Deposit.FAILED)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("amount", "249.99", "Paid another amount: 249.99 USD"),
        ("currency", "EUR", "Paid in another currency: 250.00 EUR"),
        ("amount", "lots", "did not say how much"),
    ],
)
def test_an_invoice_that_differs_is_flagged(client, deposit, greenfield, field, value, reason):
    greenfield.api.invoices[deposit.provider_reference][field] = value
    response = send(client, delivery(deposit))
    assert response.json()["received"][0]["result"] == "flagged"
    deposit.refresh_from_db()
    assert deposit.status == Deposit.FLAGGED and reason in deposit.flag_reason
    assert wallet_balance(deposit) == 0


def test_an_invoice_of_no_deposit_of_ours_is_ignored(client, deposit, greenfield):
    greenfield.api.invoices[deposit.provider_reference]["metadata"] = {"orderId": "SHOP-42"}
    response = send(client, delivery(deposit))
    assert response.status_code == 200
    assert response.json()["received"][0]["result"] == "ignored"
    untouched(deposit)


def test_another_stores_event_is_ignored_without_asking(client, deposit, greenfield):
    calls = len(greenfield.requests)
    assert send(client, delivery(deposit, store="OtherStore")).status_code == 200
    assert len(greenfield.requests) == calls
    untouched(deposit)


def test_an_unknown_invoice_is_refused_and_nothing_written(client, deposit):
    body = delivery(deposit)
    body["invoiceId"] = "NoSuchInvoice"
    assert send(client, body).status_code == 400
    untouched(deposit)
    assert not WebhookEvent.objects.exists()


def test_when_btcpay_cannot_be_asked_it_is_told_to_retry(client, deposit, provider):
    provider.settings = {"url": "http://127.0.0.1:9", "store_id": STORE}
    provider.save()
    assert send(client, delivery(deposit)).status_code == 503
    untouched(deposit)
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'{"type": "InvoiceSettled"}', b'{"deliveryId": "d1", "type": "InvoiceSettled"}'],
)
def test_a_malformed_body_is_refused(client, deposit, raw):
    assert send(client, raw).status_code == 400
    untouched(deposit)
    assert not WebhookEvent.objects.exists()


def test_an_address_outside_the_allow_list_is_refused(client, deposit, provider):
    provider.webhook_ip_allowlist = "192.0.2.0/24"
    provider.save()
    assert send(client, delivery(deposit), ip="127.0.0.1").status_code == 400
    untouched(deposit)
    assert send(client, delivery(deposit), ip="192.0.2.7").status_code == 200
    assert wallet_balance(deposit) == 24750
