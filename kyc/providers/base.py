"""The contract between the KYC services and a verification provider.

An adapter is built around one configured :class:`~kyc.models.KycProvider`
(``self.config``; its settings in ``self.settings``, its decrypted secrets in
``self.secrets``). It talks to the outside system and translates; it never
writes a model. The services (``kyc.services.providers``) call the hooks
below, keep the client's applicant (``ProviderApplicant``), record each
webhook once (``ProviderEvent``) and apply the outcome through
``kyc.services.submission_provider_outcome``:

- ``applicant_for`` when a client first starts a check: the provider's id for
  this client, created there (or found again: one applicant per client);
- ``start`` when the trader presses "Verify with …" in the room: where to
  send them (a hosted page) or a token for an SDK;
- ``access_token`` when the mobile app asks for a token for the provider's
  mobile SDK;
- ``verify_webhook`` and ``parse_webhook`` when the provider calls
  ``/webhooks/kyc/<identifier>/``: check the signature over the raw body
  (raise :class:`WebhookRejected`: HTTP 401, nothing is recorded) and say
  what happened (a :class:`ProviderOutcome`, or ``None`` for an event we do
  not act on).

Errors are :class:`ProviderError`; ``permanent`` says whether trying again
can help (a refused configuration: no; a timeout: yes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backoffice.secrets import decrypt

# The outcomes ``submission_provider_outcome`` understands.
PENDING = "pending"
APPROVED = "approved"
REJECTED = "rejected"
RESUBMIT = "resubmit"
OUTCOMES = (PENDING, APPROVED, REJECTED, RESUBMIT)
# Decisions stand until the provider decides again: a late "pending" does not undo them.
DECISIONS = (APPROVED, REJECTED, RESUBMIT)


class ProviderError(Exception):
    """The provider refused or failed. ``permanent`` says whether retrying can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class WebhookRejected(Exception):
    """A webhook that must not be trusted (no or a wrong signature): answered
    with 401, nothing is recorded."""


class WebhookMalformed(Exception):
    """A signed webhook whose body cannot be read (not JSON, not an object):
    answered with 400, nothing is recorded."""


@dataclass(frozen=True)
class ProviderStart:
    """Where the trader goes next: ``redirect_url`` (the provider's hosted
    page) or ``access_token`` (for an SDK). ``applicant_id`` is the client's
    applicant at the provider ("" for the built-in manual review)."""

    applicant_id: str = ""
    redirect_url: str = ""
    access_token: str = ""


@dataclass(frozen=True)
class ProviderOutcome:
    """What a verified webhook says.

    ``event_key`` identifies the event (a redelivery has the same key and is
    applied once). When the provider dates its events, the adapter builds
    keys that sort by the provider's own clock after a common
    ``order_prefix`` (one per applicant and level), e.g.
    ``<applicant>|<level>|<13-digit epoch ms>|<type>``: that is how an event
    older than one already applied is recognised ("" when the key is not
    ordered). ``outcome`` is one of :data:`OUTCOMES`, or "" for an event that
    is acknowledged and not acted on; ``ignore_reason`` says why a signed
    event is not to be applied (e.g. it comes from the provider's sandbox).
    ``note`` may be shown to the client (never the provider's private
    comments, which stay in ``payload``)."""

    event_key: str
    event_type: str
    applicant_id: str = ""
    external_user_id: str = ""
    level_name: str = ""
    outcome: str = ""
    provider_status: str = ""
    note: str = ""
    occurred_at: datetime | None = None
    ignore_reason: str = ""
    order_prefix: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


class KycProviderBase:
    #: Shown in the admin when choosing an implementation.
    label = ""
    #: Whether it calls an outside system (the built-in manual review does not).
    external = True
    #: The names of the secrets this implementation reads from ``self.secrets``
    #: (the admin offers a write-only field for each).
    secret_names: tuple[str, ...] = ()
    #: The settings keys it needs (the admin refuses a configuration without them).
    required_settings: tuple[str, ...] = ()
    #: Settings it reads, with their defaults (documented in docs/KYC_PROVIDERS.md).
    optional_settings: dict[str, Any] = {}

    def __init__(self, config) -> None:
        self.config = config
        self.settings = {**self.optional_settings, **dict(config.settings or {})}
        self.secrets = decrypt(config.secrets)

    def external_user_id(self, user) -> str:
        """Our id for the client as the provider stores it: stable, and with
        no personal data in it."""
        prefix = str(self.settings.get("external_user_id_prefix") or "")
        return f"{prefix}{user.pk}"

    def applicant_for(self, *, user, requirement) -> str:
        """The client's applicant id at the provider, created there if needed.
        Must find an existing applicant again rather than create a second one."""
        raise NotImplementedError

    def start(self, *, user, requirement, applicant_id: str, return_url: str) -> ProviderStart:
        """Begin (or resume) the check of ``requirement`` (its
        ``provider_level``) for the client whose applicant is ``applicant_id``;
        ``return_url`` is where the provider may send the trader back to."""
        raise NotImplementedError

    def access_token(self, *, user, requirement, applicant_id: str) -> str:
        """A short-lived token for the provider's mobile SDK, valid for this
        client and ``requirement.provider_level`` only."""
        raise NotImplementedError

    def verify_webhook(self, body: bytes, headers) -> None:
        """Raise :class:`WebhookRejected` unless ``body`` (the raw bytes) is
        signed by the provider. ``headers`` is a case-insensitive mapping."""
        raise NotImplementedError

    def parse_webhook(self, body: bytes) -> ProviderOutcome | None:
        """What a verified webhook says; ``None`` for a body that names no
        event at all. Raises :class:`WebhookMalformed` for a body that is not
        the provider's format."""
        raise NotImplementedError
