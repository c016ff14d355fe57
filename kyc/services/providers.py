"""Checks by outside verification providers (``kyc.providers``): starting
one for a client, a token for the mobile SDK, and the provider's webhooks.

The adapters talk to the provider; this module keeps the client's applicant
(one per provider and client), records every webhook once, and hands each
verified outcome to :func:`kyc.services.submission_provider_outcome`, which
moves the submission and the level and publishes the ``kyc.*`` events.

Ordering. Providers deliver webhooks late, twice and out of order. A
redelivery has the same event key and is recorded once (the unique
``(provider, event_key)``). An event the provider dated before one already
applied for the same applicant and level is recorded and not applied, so an
old "pending" or an old rejection never undoes a later decision; and
``submission_provider_outcome`` itself ignores a "pending" after a final
decision. Webhooks of one applicant are applied one at a time (the
``ProviderApplicant`` row is locked), so two deliveries racing each other
are ordered too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from kyc import services as core

from .. import selectors
from ..exceptions import KycError
from ..models import KycProvider, ProviderApplicant, ProviderEvent, Requirement, Submission
from ..providers import provider_for
from ..providers.base import ProviderError, ProviderOutcome, ProviderStart, WebhookMalformed

logger = logging.getLogger(__name__)

APPLIED = "applied"
IGNORED = "ignored"
REPLAY = "replay"
STALE = "stale"


@dataclass(frozen=True)
class WebhookReceipt:
    """What became of a webhook: ``applied``, ``ignored`` (recorded, not
    acted on, with the reason), ``stale`` (older than an event already
    applied) or ``replay`` (received before)."""

    event_key: str
    result: str
    message: str = ""


@dataclass(frozen=True)
class ProviderAccess:
    """A token for the provider's mobile SDK."""

    token: str
    provider: str
    level_name: str


# --- starting a check ------------------------------------------------------------------


def provider_requirement_get_for_user(*, user, requirement_id: int) -> Requirement:
    """A provider check that applies to ``user`` (404 for any other id: a
    document or questionnaire, an inactive one, one kept for another
    country's residents)."""
    from django.http import Http404

    requirement = selectors.requirement_get_for_user(user=user, requirement_id=requirement_id)
    if requirement.kind != Requirement.PROVIDER or requirement.provider_id is None:
        raise Http404("No such provider check.")
    return requirement


def _startable(user, requirement: Requirement) -> KycProvider:
    """The requirement's provider, if the client may start this check now
    (:class:`KycError`, with a message for the client, otherwise)."""
    provider = requirement.provider
    if provider is None or not provider.enabled:
        raise KycError("This check is not available at the moment.")
    if selectors.country_blocked(selectors.client_country(user=user)):
        raise KycError("Verification is not available for residents of your country.")
    current = (
        Submission.objects.filter(user=user, requirement=requirement, is_current=True)
        .select_related("requirement")
        .first()
    )
    # A check under review may be resumed (the provider shows where it is);
    # an approved or finally rejected one may not be started again.
    if current is not None and selectors.effective_status(current) != Submission.PENDING:
        refusal = selectors.submission_allowed(current)
        if refusal:
            raise KycError(refusal)
    return provider


def _applicant_id(adapter, provider: KycProvider, *, user, requirement: Requirement) -> str:
    """The client's applicant at ``provider``: the one we know, or one the
    provider creates (or finds again) now. The outside call happens outside
    any transaction; two concurrent starts end with one row."""
    known = (
        ProviderApplicant.objects.filter(provider=provider, user=user)
        .values_list("applicant_id", flat=True)
        .first()
    )
    if known:
        return known
    applicant_id = adapter.applicant_for(user=user, requirement=requirement)
    if not applicant_id:
        return ""  # the built-in review keeps no applicant
    try:
        with transaction.atomic():
            row, _ = ProviderApplicant.objects.get_or_create(
                provider=provider, user=user, defaults={"applicant_id": applicant_id}
            )
    except IntegrityError:
        # Another client already holds this applicant id: never map it twice.
        raise ProviderError(
            "The provider returned an applicant that belongs to another client.", permanent=True
        ) from None
    return row.applicant_id


def provider_check_start(*, user, requirement: Requirement, return_url: str = "") -> ProviderStart:
    """Start (or resume) ``requirement``'s check for ``user``: the applicant
    is created or found again at the provider and kept; nothing else is
    recorded (the submission comes with the provider's first webhook).
    Raises :class:`KycError` when the client may not start it now and
    :class:`ProviderError` when the provider fails."""
    provider = _startable(user, requirement)
    adapter = provider_for(provider)
    applicant_id = _applicant_id(adapter, provider, user=user, requirement=requirement)
    return adapter.start(
        user=user, requirement=requirement, applicant_id=applicant_id, return_url=return_url
    )


def provider_access_token(*, user, requirement: Requirement) -> ProviderAccess:
    """A token for the provider's mobile SDK for this check, with the
    applicant kept as for :func:`provider_check_start`."""
    provider = _startable(user, requirement)
    adapter = provider_for(provider)
    applicant_id = _applicant_id(adapter, provider, user=user, requirement=requirement)
    token = adapter.access_token(user=user, requirement=requirement, applicant_id=applicant_id)
    return ProviderAccess(
        token=token, provider=provider.identifier, level_name=requirement.provider_level
    )


# --- webhooks ---------------------------------------------------------------------------


def provider_webhook_receive(*, provider: KycProvider, body: bytes, headers) -> WebhookReceipt:
    """A provider's call to ``/webhooks/kyc/<identifier>/``: verify the
    signature over the raw body (``WebhookRejected``: nothing is recorded),
    read it (``WebhookMalformed``: nothing is recorded), record the event
    once and apply it. A failure while applying rolls everything back, the
    event included, so that the provider's retry applies it later."""
    adapter = provider_for(provider)
    adapter.verify_webhook(body, headers)
    outcome = adapter.parse_webhook(body)
    if outcome is None:
        raise WebhookMalformed("The body names no event.")
    return _apply(provider, adapter, outcome)


def _later_applied(provider: KycProvider, outcome: ProviderOutcome, *, exclude: int) -> bool:
    """Whether an event the provider dated after this one (same applicant and
    level) was applied already. Keys are compared here, by code point, not
    by the database, whose collation may order punctuation its own way."""
    keys = (
        ProviderEvent.objects.filter(
            provider=provider,
            event_key__startswith=outcome.order_prefix,
            processed_at__isnull=False,
            error="",
        )
        .exclude(pk=exclude)
        .values_list("event_key", flat=True)
    )
    return any(key > outcome.event_key for key in keys)


def _record(event: ProviderEvent, message: str = "") -> None:
    event.processed_at = timezone.now()
    event.error = message
    event.save(update_fields=["processed_at", "error"])


@transaction.atomic
def _apply(provider: KycProvider, adapter, outcome: ProviderOutcome) -> WebhookReceipt:
    key = outcome.event_key
    try:
        with transaction.atomic():
            event = ProviderEvent.objects.create(
                provider=provider, event_key=key, payload=outcome.payload
            )
    except IntegrityError:
        return WebhookReceipt(key, REPLAY, "Already received.")

    def ignored(message: str, result: str = IGNORED) -> WebhookReceipt:
        _record(event, message)
        return WebhookReceipt(key, result, message)

    if outcome.ignore_reason or not outcome.outcome:
        return ignored(outcome.ignore_reason or f"{outcome.event_type} is not acted on.")
    applicant = (
        ProviderApplicant.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(provider=provider, applicant_id=outcome.applicant_id)
        .first()
    )
    if applicant is None:
        return ignored("No client has this applicant id.")
    expected = adapter.external_user_id(applicant.user)
    if outcome.external_user_id and outcome.external_user_id != expected:
        logger.warning(
            "KYC webhook %s: applicant %s is ours for %s but names %s",
            provider.identifier,
            outcome.applicant_id,
            expected,
            outcome.external_user_id,
        )
        return ignored("The external user id does not match this applicant's client.")
    requirements = list(
        Requirement.objects.filter(
            provider=provider,
            provider_level=outcome.level_name,
            kind=Requirement.PROVIDER,
            is_active=True,
        ).select_related("level")
    )
    if not requirements:
        return ignored(f"No active requirement uses the level {outcome.level_name!r}.")
    if outcome.order_prefix and _later_applied(provider, outcome, exclude=event.pk):
        return ignored("A later event of this applicant was applied already.", STALE)
    try:
        with transaction.atomic():
            for requirement in requirements:
                core.submission_provider_outcome(
                    user=applicant.user,
                    requirement=requirement,
                    provider=provider,
                    reference=outcome.applicant_id,
                    outcome=outcome.outcome,
                    provider_status=outcome.provider_status,
                    note=outcome.note,
                )
    except KycError as exc:
        # Refused by the rules (not a passing failure): kept, not retried.
        return ignored(f"Not applied: {exc}")
    _record(event)
    return WebhookReceipt(key, APPLIED, f"{outcome.event_type}: {outcome.outcome}.")
