"""The contract between the payments services and a PSP adapter.

An adapter is built around one configured :class:`~payments.models.PaymentProvider`
(``self.config``; its decrypted secrets in ``self.secrets``). It talks to the
outside system and translates; it never touches the ledger or a model's
status. The services call the hooks below and apply the results:

- ``deposit_start`` when a client confirms a deposit: returns where to send
  the client (a redirect) or what to show (instructions);
- ``webhook_verify`` and ``webhook_parse`` when the provider calls
  ``/webhooks/<identifier>/``: verify the signature (raise
  :class:`WebhookRejected` → HTTP 400, nothing changes) and say what happened;
- ``payout`` when Finance approved a withdrawal: pay it, or say it is to be
  paid by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from backoffice.secrets import decrypt


class ProviderError(Exception):
    """The provider refused or failed. ``permanent`` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class WebhookRejected(Exception):
    """A webhook that must not be trusted (bad signature, malformed body,
    address not allowed): answered with 400, nothing changes."""


@dataclass(frozen=True)
class DepositStart:
    """Where the client goes next: ``redirect_url`` (a hosted checkout), or
    ``instructions`` to show (bank details with the reference)."""

    redirect_url: str = ""
    instructions: str = ""
    provider_reference: str = ""


@dataclass(frozen=True)
class WebhookResult:
    """What a verified webhook says. ``status`` is one of ``"pending"``,
    ``"completed"``, ``"failed"`` or ``""`` (an event we do not act on).
    ``amount`` and ``currency`` are what the provider says was paid, checked
    against the deposit before crediting."""

    event_id: str
    event_type: str = ""
    deposit_reference: str = ""
    provider_reference: str = ""
    status: str = ""
    amount: Decimal | None = None
    currency: str = ""
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PayoutResult:
    """``paid``: the provider paid (``reference`` is its id); otherwise the
    payout is to be made by hand and recorded by Finance."""

    paid: bool
    reference: str = ""


class PaymentProviderBase:
    #: Shown in the admin when choosing an implementation.
    label = ""
    #: Whether ``payout`` pays by itself (otherwise Finance records the payout).
    automatic_payouts = False

    def __init__(self, config) -> None:
        self.config = config
        self.settings = dict(config.settings or {})
        self.secrets = decrypt(config.secrets)

    def deposit_start(self, deposit, *, return_url: str) -> DepositStart:
        raise NotImplementedError

    def webhook_verify(self, request) -> None:
        """Raise :class:`WebhookRejected` unless the request is authentic."""
        raise NotImplementedError

    def webhook_parse(self, request) -> list[WebhookResult]:
        """The events of a verified request (usually one)."""
        raise NotImplementedError

    def payout(self, withdrawal) -> PayoutResult:
        return PayoutResult(paid=False)
