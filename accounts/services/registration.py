"""Writes of the registration constructor: what a sign-up records beside the
user (profile fields, answers, flow, campaign, consents), and consents given
later to new versions of legal documents."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from backoffice import policies
from backoffice.events import publish
from backoffice.services import room_version_bump

from ..models import ClientProfile, Consent, RegistrationField, User
from ..registration import consents_pending, current_versions

PROFILE_USER_FIELDS = ("first_name", "last_name")
PROFILE_FIELDS = tuple(
    name for name, _ in RegistrationField.PROFILE_FIELDS if name not in PROFILE_USER_FIELDS
)


class RegistrationError(Exception):
    """A sign-up cannot be recorded; ``field`` names the form field the message
    belongs to (``None``: the form as a whole)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RegistrationData:
    """What the sign-up form gathered, cleaned, for :func:`registration_record`.

    ``profile`` holds profile fields by name (names go on the user),
    ``answers`` the custom questions' answers, already JSON-ready
    (:func:`accounts.dynamic_fields.answer_to_json`), and ``consents`` the
    version id accepted for each document id: the versions the visitor saw.
    """

    flow_id: int | None
    campaign: str = ""
    profile: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    consents: dict[int, int] = field(default_factory=dict)

    @property
    def country(self) -> str:
        return str(self.profile.get("country") or "")


def _consents_check(registration: RegistrationData) -> list[int]:
    """The accepted version ids, after checking they are exactly the versions
    in effect of the flow's documents. Re-read here, in the transaction that
    creates the user, since a version may have been published after the form
    was checked."""
    current = {v.document_id: v for v in current_versions(flow_id=registration.flow_id)}
    for document_id, version in current.items():
        if registration.consents.get(document_id) != version.pk:
            raise RegistrationError(
                f"A new version of the {version.document.title} is in effect. "
                "Please read it and accept it.",
                field=f"consent_{version.document.slug}",
            )
    if set(registration.consents) - set(current):
        raise RegistrationError("The form asked for documents this sign-up does not need.")
    return [version.pk for version in current.values()]


@transaction.atomic
def registration_record(
    *, user: User, profile: ClientProfile, registration: RegistrationData, ip: str = ""
) -> ClientProfile:
    """Record what a new client gave at sign-up: profile fields, answers to
    the flow's custom questions, the flow and campaign, and one consent per
    document version accepted (with the IP address).

    Runs in the transaction that creates the user (the sign-up form's save):
    a refusal here (a blocked country, a version no longer in effect) raises
    :class:`RegistrationError` and leaves nothing behind, not even the user.
    The policy is asked again, since the form's check may be stale.
    """
    decision = policies.check(None, policies.REGISTER, country=registration.country)
    if not decision:
        raise RegistrationError(decision.reason, field="country")
    version_ids = _consents_check(registration)
    names = [
        f
        for f in PROFILE_USER_FIELDS
        if registration.profile.get(f) and getattr(user, f) != registration.profile[f]
    ]
    if names:  # allauth usually set them already, from the same form
        for name in names:
            setattr(user, name, registration.profile[name])
        user.save(update_fields=names)
    for name in PROFILE_FIELDS:
        value = registration.profile.get(name)
        if value not in (None, ""):  # an optional field left blank keeps the default
            setattr(profile, name, value)
    profile.registration_flow_id = registration.flow_id
    profile.campaign = registration.campaign
    profile.registration_data = dict(registration.answers)
    profile.save()
    accepted_at = timezone.now()
    Consent.objects.bulk_create(
        Consent(
            user=user,
            version_id=version_id,
            accepted_at=accepted_at,
            ip=ip or None,
            flow_id=registration.flow_id,
        )
        for version_id in version_ids
    )
    return profile


@transaction.atomic
def consents_accept(*, user: User, version_ids: Iterable[int], ip: str = "") -> list[Consent]:
    """Record that a client accepted new versions of documents they accepted
    before (the room's banner). Every version must be one still waiting for
    them (:func:`accounts.registration.consents_pending`); anything else is
    refused with nothing recorded."""
    wanted = set(version_ids)
    if not wanted:
        raise RegistrationError("Tick the documents you accept.")
    pending = {v.pk: v for v in consents_pending(user=user)}
    if not wanted <= set(pending):
        raise RegistrationError(
            "These are not the documents waiting for you. Reload the page and try again."
        )
    profile = ClientProfile.objects.filter(user=user).only("registration_flow_id").first()
    accepted_at = timezone.now()
    # A second click that raced the first records nothing twice.
    consents = Consent.objects.bulk_create(
        (
            Consent(
                user=user,
                version=pending[version_id],
                accepted_at=accepted_at,
                ip=ip or None,
                flow_id=profile.registration_flow_id if profile else None,
            )
            for version_id in sorted(wanted)
        ),
        ignore_conflicts=True,
    )
    publish(
        "client.consents_accepted",
        user,
        {"versions": [f"{pending[i].document.slug}:{pending[i].version}" for i in sorted(wanted)]},
        actor=user,
    )
    room_version_bump(user.pk)
    return consents
