"""Card payments through Stripe Checkout, with the official ``stripe`` library.

- ``deposit_start`` creates a Checkout Session (mode ``payment``, one line
  item of the deposit's amount in the currency's minor unit,
  ``client_reference_id`` = our deposit reference) and sends the client to
  its ``url``; the session id is the provider reference.
- Webhooks are verified with ``stripe.Webhook.construct_event`` (the
  ``Stripe-Signature`` header: HMAC-SHA256 of ``"<t>.<body>"`` with the
  endpoint's ``whsec_`` secret, five minutes' tolerance). Events acted on:
  ``checkout.session.completed`` (completed when ``payment_status`` is
  ``paid``, pending when an asynchronous method is still under way),
  ``checkout.session.async_payment_succeeded`` (completed),
  ``checkout.session.async_payment_failed`` and ``checkout.session.expired``
  (failed). Others are recorded and ignored.

Secrets: ``api_key`` (a secret or restricted key with Checkout write access)
and ``webhook_secret`` (the endpoint's signing secret). Settings:
``api_base`` (optional: another address for Stripe's API, for a test
double), ``product_name`` (optional: the line item's name, e.g. "Deposit").
"""

from __future__ import annotations

from decimal import Decimal

import stripe

from .base import (
    DepositStart,
    PaymentProviderBase,
    PayoutResult,
    ProviderError,
    WebhookRejected,
    WebhookResult,
)

SIGNATURE_HEADER = "Stripe-Signature"

# Stripe's own minor units (https://docs.stripe.com/currencies): amounts in
# these currencies have no decimals, or three; every other has two.
ZERO_DECIMAL = {
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
    "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
}  # fmt: skip
THREE_DECIMAL = {"BHD", "JOD", "KWD", "OMR", "TND"}

COMPLETED = "checkout.session.completed"
ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
ASYNC_FAILED = "checkout.session.async_payment_failed"
EXPIRED = "checkout.session.expired"


def stripe_exponent(currency: str) -> int:
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


class StripeProvider(PaymentProviderBase):
    label = "Stripe Checkout (cards)"
    automatic_payouts = False
    secret_names = ("api_key", "webhook_secret")

    def _client(self) -> stripe.StripeClient:
        api_key = self.secrets.get("api_key", "")
        if not api_key:
            raise ProviderError("Stripe is not configured: no API key.", permanent=True)
        bases = {}
        if self.settings.get("api_base"):
            bases["api"] = str(self.settings["api_base"]).rstrip("/")
        return stripe.StripeClient(api_key, base_addresses=bases, max_network_retries=1)

    def deposit_start(self, deposit, *, return_url: str) -> DepositStart:
        currency = deposit.currency_id
        if deposit.currency.exponent != stripe_exponent(currency):
            # Our minor unit and Stripe's must agree, or amounts would be off
            # by a power of ten.
            raise ProviderError(f"Stripe cannot take payments in {currency}.", permanent=True)
        params = {
            "mode": "payment",
            "client_reference_id": deposit.reference,
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency.lower(),
                        "unit_amount": deposit.amount,
                        "product_data": {
                            "name": self.settings.get("product_name")
                            or f"Deposit {deposit.reference}"
                        },
                    },
                }
            ],
            "metadata": {"deposit_reference": deposit.reference},
            "success_url": return_url,
            "cancel_url": return_url,
        }
        if deposit.user.email:
            params["customer_email"] = deposit.user.email
        try:
            session = self._client().v1.checkout.sessions.create(
                params=params, options={"idempotency_key": f"deposit-start:{deposit.reference}"}
            )
        except stripe.StripeError as exc:
            permanent = isinstance(
                exc,
                stripe.InvalidRequestError | stripe.AuthenticationError | stripe.PermissionError,
            )
            message = exc.user_message or "Stripe refused the payment session."
            raise ProviderError(message, permanent=permanent) from exc
        url, session_id = getattr(session, "url", None), getattr(session, "id", None)
        if not url or not session_id:
            raise ProviderError("Stripe returned no checkout address.")
        return DepositStart(redirect_url=url, provider_reference=session_id)

    def _event(self, request) -> stripe.Event:
        secret = self.secrets.get("webhook_secret", "")
        if not secret:
            raise WebhookRejected("No Stripe webhook secret is configured.")
        try:
            return stripe.Webhook.construct_event(
                request.body, request.headers.get(SIGNATURE_HEADER), secret
            )
        except stripe.SignatureVerificationError as exc:
            raise WebhookRejected(f"Stripe signature: {exc.user_message or exc}") from None
        except (ValueError, TypeError, AttributeError, KeyError):
            # Signed, but not an event (not JSON, not an object).
            raise WebhookRejected("The body is not a Stripe event.") from None

    def webhook_verify(self, request) -> None:
        self._event(request)

    def webhook_parse(self, request) -> list[WebhookResult]:
        payload = self._event(request).to_dict(for_json=True)
        event_id, event_type = payload.get("id"), payload.get("type")
        session = (payload.get("data") or {}).get("object") if isinstance(payload, dict) else None
        if not isinstance(event_id, str) or not isinstance(event_type, str) or not event_id:
            raise WebhookRejected("The event has no id or type.")
        if not event_type.startswith("checkout.session.") or not isinstance(session, dict):
            return [WebhookResult(event_id=event_id, event_type=event_type, payload=payload)]
        currency = str(session.get("currency") or "").upper()
        amount_total = session.get("amount_total")
        amount = None
        if isinstance(amount_total, int) and not isinstance(amount_total, bool) and currency:
            amount = Decimal(amount_total).scaleb(-stripe_exponent(currency))
        return [
            WebhookResult(
                event_id=event_id[:200],
                event_type=event_type[:100],
                deposit_reference=str(session.get("client_reference_id") or ""),
                provider_reference=str(session.get("id") or ""),
                status=self._status(event_type, session),
                amount=amount,
                currency=currency,
                payload=payload,
            )
        ]

    @staticmethod
    def _status(event_type: str, session) -> str:
        if event_type == COMPLETED:
            payment_status = session.get("payment_status")
            if payment_status == "paid":
                return "completed"
            if payment_status == "unpaid":
                return "pending"  # an asynchronous method (bank debit): wait for the result
            return ""
        if event_type == ASYNC_SUCCEEDED:
            return "completed"
        if event_type in (ASYNC_FAILED, EXPIRED):
            return "failed"
        return ""

    def payout(self, withdrawal) -> PayoutResult:
        return PayoutResult(paid=False)  # card payouts are made by hand
