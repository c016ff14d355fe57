"""The sandbox PSP: a payment service provider of our own that works offline
and behaves like an outside one, so that the whole deposit flow (redirect,
hosted checkout, signed webhook over HTTP, crediting) runs with no account
anywhere.

- ``deposit_start`` sends the client to the sandbox's hosted checkout page
  (``/sandbox-psp/checkout/<token>/``, :mod:`payments.views.sandbox_psp`). The
  token is signed and carries what a PSP would hold for a payment session:
  the reference, amount, currency and where to send the client back. The
  checkout never reads our deposits.
- Pressing Pay or Decline there makes the sandbox send a webhook, from a
  Celery task after commit, with ``requests.post`` to
  ``SITE_URL/webhooks/<provider identifier>/``, exactly as an outside PSP
  would: a JSON body ::

      {"id": "evt_…", "type": "payment.succeeded" | "payment.failed",
       "created": 1700000000,
       "data": {"reference": "DEP-…", "amount": "10.00", "currency": "USD"}}

  signed in the header ``Sandbox-Signature: t=<unix time>,v1=<hex>``, the
  hex HMAC-SHA256 of ``"<t>.<raw body>"`` with the webhook secret. Requests
  more than five minutes from now are refused (a captured request cannot be
  replayed later; a replay within the window is recognised by its event id).
- The webhook secret is the provider's ``webhook_secret`` secret; with none
  set, one is derived from ``SECRET_KEY`` and the provider's identifier, so
  the sandbox works with zero set-up.
- ``payout`` pays at once (``PayoutResult(paid=True)``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets as pysecrets
import time
from decimal import Decimal, InvalidOperation

import requests
from celery import shared_task
from django.conf import settings
from django.core import signing
from django.urls import reverse

from backoffice.money import from_minor

from .base import (
    DepositStart,
    PaymentProviderBase,
    PayoutResult,
    WebhookRejected,
    WebhookResult,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Sandbox-Signature"
TOLERANCE_SECONDS = 5 * 60
CHECKOUT_SALT = "payments.sandbox-psp.checkout"
CHECKOUT_MAX_AGE = 24 * 3600
SUCCEEDED = "payment.succeeded"
FAILED = "payment.failed"
STATUS_OF_TYPE = {SUCCEEDED: "completed", FAILED: "failed"}
SEND_TIMEOUT = 10


def webhook_secret_for(config) -> str:
    """The provider's webhook secret, or one derived from ``SECRET_KEY`` when
    none is set (zero set-up; still unknown to anyone without the key)."""
    from backoffice.secrets import decrypt

    secret = decrypt(config.secrets).get("webhook_secret", "")
    if secret:
        return secret
    return hmac.new(
        settings.SECRET_KEY.encode(),
        f"sandbox-psp-webhook:{config.identifier}".encode(),
        hashlib.sha256,
    ).hexdigest()


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Sandbox-Signature`` header value for ``body``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(body: bytes, header: str, secret: str, *, now: float | None = None) -> None:
    """Raise :class:`WebhookRejected` unless ``header`` signs ``body`` with
    ``secret`` within the tolerance."""
    if not header:
        raise WebhookRejected(f"No {SIGNATURE_HEADER} header.")
    timestamp = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise WebhookRejected("The signature's timestamp is not a number.") from None
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookRejected(f"The {SIGNATURE_HEADER} header is malformed.")
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise WebhookRejected("The signature's timestamp is outside the tolerance.")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookRejected("The signature does not match.")


def checkout_token(*, identifier: str, reference: str, amount: str, currency: str, return_url: str):
    return signing.dumps(
        {"p": identifier, "ref": reference, "amt": amount, "cur": currency, "ret": return_url},
        salt=CHECKOUT_SALT,
        compress=True,
    )


def checkout_session(token: str) -> dict:
    """The payment session a checkout token carries; ``signing.BadSignature``
    (or ``SignatureExpired``) when it was tampered with or is too old."""
    data = signing.loads(token, salt=CHECKOUT_SALT, max_age=CHECKOUT_MAX_AGE)
    if not isinstance(data, dict) or not {"p", "ref", "amt", "cur", "ret"} <= data.keys():
        raise signing.BadSignature("Incomplete checkout session.")
    return data


def webhook_event(*, succeeded: bool, reference: str, amount: str, currency: str) -> dict:
    return {
        "id": f"evt_{pysecrets.token_hex(12)}",
        "type": SUCCEEDED if succeeded else FAILED,
        "created": int(time.time()),
        "data": {"reference": reference, "amount": amount, "currency": currency},
    }


class SandboxProvider(PaymentProviderBase):
    label = "Sandbox PSP (built-in, offline)"
    automatic_payouts = True
    secret_names = ("webhook_secret",)

    @property
    def webhook_secret(self) -> str:
        return webhook_secret_for(self.config)

    def deposit_start(self, deposit, *, return_url: str) -> DepositStart:
        token = checkout_token(
            identifier=self.config.identifier,
            reference=deposit.reference,
            amount=str(from_minor(deposit.amount, deposit.currency.exponent)),
            currency=deposit.currency_id,
            return_url=return_url,
        )
        return DepositStart(
            redirect_url=reverse("sandbox_psp_checkout", args=[token]),
            provider_reference=f"sbx_{deposit.reference}",
        )

    def webhook_verify(self, request) -> None:
        verify_signature(
            request.body, request.headers.get(SIGNATURE_HEADER, ""), self.webhook_secret
        )

    def webhook_parse(self, request) -> list[WebhookResult]:
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookRejected("The body is not JSON.") from None
        if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise WebhookRejected("The body is not a sandbox event.")
        event_id, event_type, data = body.get("id"), body.get("type"), body["data"]
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
            raise WebhookRejected("The event has no id or type.")
        reference, currency = data.get("reference"), data.get("currency")
        if not isinstance(reference, str) or not isinstance(currency, str):
            raise WebhookRejected("The event has no reference or currency.")
        try:
            amount = Decimal(str(data.get("amount")))
        except InvalidOperation:
            raise WebhookRejected("The event's amount is not a decimal number.") from None
        if not amount.is_finite() or isinstance(data.get("amount"), float):
            raise WebhookRejected("The event's amount must be a decimal string.")
        return [
            WebhookResult(
                event_id=event_id[:200],
                event_type=event_type[:100],
                deposit_reference=reference,
                provider_reference=f"sbx_{reference}",
                status=STATUS_OF_TYPE.get(event_type, ""),
                amount=amount,
                currency=currency.upper(),
                payload=body,
            )
        ]

    def payout(self, withdrawal) -> PayoutResult:
        return PayoutResult(paid=True, reference=f"sbx_po_{pysecrets.token_hex(10)}")


@shared_task(name="payments.tasks.sandbox_send_webhook", bind=True, max_retries=5)
def sandbox_send_webhook(self, provider_id: int, event: dict) -> int | None:
    """The sandbox PSP calls our webhook over HTTP, as an outside PSP would.

    Retried with a growing delay when our end does not answer 2xx (a real
    PSP retries for days); in eager mode (development) a failure is logged
    and the client's deposit simply stays pending.
    """
    from ..models import PaymentProvider

    provider = PaymentProvider.objects.filter(pk=provider_id).first()
    if provider is None:
        return None
    body = json.dumps(event, separators=(",", ":")).encode()
    url = settings.SITE_URL + reverse("payments_webhook", args=[provider.identifier])
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, webhook_secret_for(provider)),
        "User-Agent": "SandboxPSP/1.0",
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=SEND_TIMEOUT)
        response.raise_for_status()
    except requests.RequestException as exc:
        if self.request.is_eager:
            logger.warning("sandbox PSP: webhook %s to %s failed: %s", event["id"], url, exc)
            return None
        raise self.retry(exc=exc, countdown=min(3600, 30 * 2**self.request.retries)) from exc
    return response.status_code
