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

import ipaddress
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
    #: The names of the secrets this implementation reads from ``self.secrets``
    #: (the admin offers a write-only field for each).
    secret_names: tuple[str, ...] = ()
    #: The settings keys it needs (the admin refuses a configuration without them).
    required_settings: tuple[str, ...] = ()

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

    def deposit_instructions(self, deposit) -> list[tuple[str, str]]:
        """What to show the client while the deposit waits for them to pay by
        hand (label, value), e.g. bank details and the reference; ``[]`` for
        providers that take the client to a checkout instead."""
        return []


def webhook_networks(allowlist: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The networks of a provider's ``webhook_ip_allowlist`` (one address or
    CIDR network per line; ``#`` starts a comment). Raises ``ValueError``
    naming the first line that is neither."""
    networks = []
    for number, raw in enumerate(allowlist.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            networks.append(ipaddress.ip_network(line, strict=False))
        except ValueError:
            raise ValueError(
                f"Line {number}: {line!r} is not an IP address or network (CIDR)."
            ) from None
    return networks


def webhook_address_allowed(allowlist: str, remote_addr: str | None) -> bool:
    """Whether a webhook from ``remote_addr`` passes the allow-list (blank
    allows any address). Only the connection's address counts, never a
    forwarded-for header, which the sender writes itself."""
    try:
        networks = webhook_networks(allowlist)
    except ValueError:
        return False  # a broken list allows nobody rather than everybody
    if not networks:
        return True
    try:
        address = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in networks)
