"""Crypto payments through a BTCPay Server store, with its Greenfield API.

- ``deposit_start`` creates an invoice: ``POST {url}/api/v1/stores/{storeId}/invoices``
  with ``Authorization: token <api key>`` and ``{"amount", "currency",
  "metadata": {"orderId": <our reference>}, "checkout": {"redirectURL": …}}``;
  the client goes to the invoice's ``checkoutLink``; its ``id`` is the
  provider reference.
- Webhooks carry ``BTCPay-Sig: sha256=<hex HMAC-SHA256 of the raw body with
  the webhook's secret>``. The body names the event (``type``), the
  ``invoiceId`` and the delivery (``deliveryId``; a redelivery from BTCPay's
  dashboard has a new one and keeps ``originalDeliveryId``, which is what we
  record, so that a redelivery is recognised as a replay). As BTCPay
  integrations do, the invoice is then fetched (``GET …/invoices/{id}``) to
  learn its amount, currency and ``metadata.orderId``: the webhook body is
  not the place to read money from.
- Events: ``InvoiceSettled`` → completed; ``InvoiceProcessing`` and
  ``InvoiceReceivedPayment`` → pending (payment seen, not yet confirmed);
  ``InvoiceExpired`` and ``InvoiceInvalid`` → failed. BTCPay settles an
  expired invoice that was paid late (``InvoiceSettled`` after
  ``InvoiceExpired``), which the deposit services honour: the money arrived.

Settings: ``url`` (the server, e.g. ``https://btcpay.example.com``),
``store_id``. Secrets: ``api_key`` (permissions ``btcpay.store.cancreateinvoice``
and ``btcpay.store.canviewinvoices``), ``webhook_secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

import requests

from backoffice.money import from_minor

from .base import (
    DepositStart,
    PaymentProviderBase,
    PayoutResult,
    ProviderError,
    WebhookRejected,
    WebhookResult,
)

SIGNATURE_HEADER = "BTCPay-Sig"
TIMEOUT = 15
STATUS_OF_TYPE = {
    "InvoiceSettled": "completed",
    "InvoiceProcessing": "pending",
    "InvoiceReceivedPayment": "pending",
    "InvoiceExpired": "failed",
    "InvoiceInvalid": "failed",
}


class BTCPayProvider(PaymentProviderBase):
    label = "BTCPay Server (crypto, Greenfield API)"
    automatic_payouts = False
    secret_names = ("api_key", "webhook_secret")
    required_settings = ("url", "store_id")

    # --- the Greenfield API -------------------------------------------------

    def _invoices_url(self, invoice_id: str = "") -> str:
        url = str(self.settings.get("url") or "").rstrip("/")
        store = str(self.settings.get("store_id") or "")
        if not url or not store:
            raise ProviderError("BTCPay is not configured: set url and store_id.", permanent=True)
        base = f"{url}/api/v1/stores/{quote(store, safe='')}/invoices"
        return f"{base}/{quote(invoice_id, safe='')}" if invoice_id else base

    def _call(self, method: str, url: str, **kwargs) -> dict:
        api_key = self.secrets.get("api_key", "")
        if not api_key:
            raise ProviderError("BTCPay is not configured: no API key.", permanent=True)
        headers = {"Authorization": f"token {api_key}", "Accept": "application/json"}
        try:
            response = requests.request(method, url, headers=headers, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise ProviderError("BTCPay Server cannot be reached.") from exc
        if response.status_code >= 400:
            message = _error_message(response)
            raise ProviderError(
                f"BTCPay Server refused: {message}", permanent=400 <= response.status_code < 500
            )
        try:
            data = response.json()
        except ValueError:
            raise ProviderError("BTCPay Server answered something that is not JSON.") from None
        if not isinstance(data, dict):
            raise ProviderError("BTCPay Server answered something that is not an object.")
        return data

    def deposit_start(self, deposit, *, return_url: str) -> DepositStart:
        body = {
            "amount": str(from_minor(deposit.amount, deposit.currency.exponent)),
            "currency": deposit.currency_id,
            "metadata": {"orderId": deposit.reference, "buyerEmail": deposit.user.email},
            "checkout": {"redirectURL": return_url, "redirectAutomatically": True},
        }
        invoice = self._call("POST", self._invoices_url(), json=body)
        link, invoice_id = invoice.get("checkoutLink"), invoice.get("id")
        if not isinstance(link, str) or not link or not isinstance(invoice_id, str):
            raise ProviderError("BTCPay Server returned no checkout link.")
        return DepositStart(redirect_url=link, provider_reference=invoice_id)

    # --- webhooks ---------------------------------------------------------------

    def webhook_verify(self, request) -> None:
        secret = self.secrets.get("webhook_secret", "")
        if not secret:
            raise WebhookRejected("No BTCPay webhook secret is configured.")
        header = request.headers.get(SIGNATURE_HEADER, "")
        scheme, _, signature = header.partition("=")
        if scheme != "sha256" or not signature:
            raise WebhookRejected(f"No valid {SIGNATURE_HEADER} header.")
        expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.strip().lower()):
            raise WebhookRejected("The signature does not match.")

    def webhook_parse(self, request) -> list[WebhookResult]:
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected("The body is not JSON.") from None
        if not isinstance(body, dict):
            raise WebhookRejected("The body is not a BTCPay event.")
        delivery = body.get("originalDeliveryId") or body.get("deliveryId")
        event_type = body.get("type")
        if not isinstance(delivery, str) or not delivery or not isinstance(event_type, str):
            raise WebhookRejected("The event has no delivery id or type.")
        status = STATUS_OF_TYPE.get(event_type, "")
        invoice_id = body.get("invoiceId")
        ignored = WebhookResult(event_id=delivery[:200], event_type=event_type, payload=body)
        if not status:
            return [ignored]
        if not isinstance(invoice_id, str) or not invoice_id:
            raise WebhookRejected("The event has no invoice id.")
        if body.get("storeId") and body["storeId"] != self.settings.get("store_id"):
            return [ignored]  # another store's webhook, signed with the same secret
        invoice = self._call("GET", self._invoices_url(invoice_id))
        metadata = invoice.get("metadata") if isinstance(invoice.get("metadata"), dict) else {}
        try:
            amount = Decimal(str(invoice.get("amount")))
        except InvalidOperation:
            amount = None
        if amount is not None and not amount.is_finite():
            amount = None
        return [
            WebhookResult(
                event_id=delivery[:200],
                event_type=event_type,
                deposit_reference=str(metadata.get("orderId") or ""),
                provider_reference=invoice_id,
                status=status,
                amount=amount,
                currency=str(invoice.get("currency") or "").upper(),
                payload=body,
            )
        ]

    def payout(self, withdrawal) -> PayoutResult:
        return PayoutResult(paid=False)  # crypto payouts are sent and recorded by Finance


def _error_message(response: requests.Response) -> str:
    """Greenfield errors are ``{"code", "message"}`` or a list of
    ``{"path", "message"}`` (validation)."""
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"])[:200]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return "; ".join(str(item.get("message", "")) for item in data[:3])[:200]
    return f"HTTP {response.status_code}"
