"""Reads of the registration constructor: which sign-up flow applies to a
visitor, the legal documents in effect, and what a client still has to accept.

The writes are in :mod:`accounts.services.registration`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from .models import Consent, LegalDocument, LegalDocumentVersion, RegistrationFlow, User

# Campaign and promo codes: what a link or a partner hands out. Kept in
# lower case; anything else in a ?campaign= is ignored.
CAMPAIGN_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,49}")
# The session key of the campaign a visitor arrived with.
SESSION_CAMPAIGN = "signup_campaign"
# Other apps' campaign codes (a partner's referral link code) that choose a
# flow: each resolver takes a normalised code and returns the id of the flow
# it picked, or None. Consulted only when no active flow lists the code;
# filled in by those apps' ``AppConfig.ready()``, so accounts imports none.
CAMPAIGN_FLOW_RESOLVERS: list[Callable[[str], int | None]] = []


def campaign_normalise(code: str | None) -> str:
    """``code`` in lower case without surrounding spaces, or ``""`` when it is
    not a well-formed code (which callers treat as "no campaign")."""
    code = (code or "").strip().lower()
    return code if CAMPAIGN_PATTERN.fullmatch(code) else ""


def _flow_country_codes(flow: RegistrationFlow) -> set[str]:
    return {country.code for country in flow.countries}


def flow_for(*, country: str = "", campaign: str = "") -> RegistrationFlow | None:
    """The sign-up flow for a visitor from ``country`` (ISO code, may be
    blank) who came with ``campaign`` (may be blank).

    In this order: the active flow whose campaign codes include the campaign
    (and whose countries include the country, when it lists countries); else,
    when no flow lists the code, the flow a :data:`CAMPAIGN_FLOW_RESOLVERS`
    entry picks for it (a partner's link); else the active flow without
    campaign codes that lists the country; else the default flow. Among
    flows that match equally, the lowest priority number wins (then the
    oldest). ``None`` only when no default flow exists.
    One query (plus the resolvers' own for a code no flow lists): flows are
    few and are matched here rather than in SQL, since their countries and
    codes are lists in text columns.
    """
    country = (country or "").upper()
    campaign = campaign_normalise(campaign)
    flows = list(
        RegistrationFlow.objects.filter(Q(is_active=True) | Q(is_default=True))
        .only("id", "name", "is_active", "is_default", "countries", "campaigns", "priority")
        .order_by("priority", "id")
    )
    active = [f for f in flows if f.is_active]
    if campaign:
        for flow in active:
            codes = _flow_country_codes(flow)
            if campaign in flow.campaign_codes and (not codes or country in codes):
                return flow
        if not any(campaign in flow.campaign_codes for flow in active):
            resolved = _flow_from_resolvers(campaign, active, country)
            if resolved is not None:
                return resolved
    if country:
        for flow in active:
            if not flow.campaign_codes and country in _flow_country_codes(flow):
                return flow
    return next((f for f in flows if f.is_default), None)


def _flow_from_resolvers(
    campaign: str, active: list[RegistrationFlow], country: str
) -> RegistrationFlow | None:
    """The active flow a registered resolver picks for ``campaign`` (with the
    same country rule as a flow's own campaign codes)."""
    by_id = {flow.pk: flow for flow in active}
    for resolver in CAMPAIGN_FLOW_RESOLVERS:
        flow = by_id.get(resolver(campaign))
        if flow is not None:
            codes = _flow_country_codes(flow)
            if not codes or country in codes:
                return flow
    return None


def flow_get_for_preview(*, user: User, flow_id: str | int) -> RegistrationFlow:
    """A flow for a staff member to preview (any flow, active or not), or 404:
    only staff who may see flows, with their second factor verified."""
    verified = getattr(user, "is_verified", lambda: False)()
    if not (user.is_staff and verified and user.has_perm("accounts.view_registrationflow")):
        raise Http404("No such flow")
    try:
        return RegistrationFlow.objects.get(pk=int(flow_id))
    except (TypeError, ValueError, RegistrationFlow.DoesNotExist):
        raise Http404("No such flow") from None


def current_versions(*, flow_id: int | None) -> list[LegalDocumentVersion]:
    """The version in effect now of each document of the flow, by document
    title (with the document loaded). A document with no version in effect
    yet is left out: there is nothing to accept."""
    if flow_id is None:
        return []
    versions = (
        LegalDocumentVersion.objects.filter(
            document__flows=flow_id, effective_at__lte=timezone.now()
        )
        .select_related("document")
        .order_by("document__title", "document_id", "-effective_at", "-id")
    )
    current: dict[int, LegalDocumentVersion] = {}
    for version in versions:
        current.setdefault(version.document_id, version)
    return list(current.values())


@dataclass(frozen=True)
class LegalPage:
    document: LegalDocument
    version: LegalDocumentVersion
    current: LegalDocumentVersion | None
    versions: list[LegalDocumentVersion]

    @property
    def is_current(self) -> bool:
        return self.current is not None and self.version.pk == self.current.pk

    @property
    def is_future(self) -> bool:
        return self.version.effective_at > timezone.now()


def legal_page(*, slug: str, version: str | None = None) -> LegalPage:
    """A legal document for its public page: the version asked for (the one
    in effect when ``version`` is None), the one in effect, and every
    version for the list of earlier ones. 404 when there is no such document
    or version, or nothing is in effect yet."""
    try:
        document = LegalDocument.objects.get(slug=slug)
    except LegalDocument.DoesNotExist:
        raise Http404("No such document") from None
    versions = list(document.versions.order_by("-effective_at", "-id"))
    now = timezone.now()
    current = next((v for v in versions if v.effective_at <= now), None)
    if version is None:
        shown = current
    else:
        shown = next((v for v in versions if v.version == version), None)
    if shown is None:
        raise Http404("No such version")
    return LegalPage(document=document, version=shown, current=current, versions=versions)


def consents_pending(*, user: User) -> QuerySet[LegalDocumentVersion]:
    """The versions in effect of the documents the client accepted before,
    that they have not accepted yet: new versions published since. One query.

    Documents the client never accepted (say, one added to flows later) are
    not asked for here; sign-up asks for every document of its flow.
    """
    now = timezone.now()
    newer_in_effect = LegalDocumentVersion.objects.filter(
        document=OuterRef("document"), effective_at__lte=now
    ).filter(
        Q(effective_at__gt=OuterRef("effective_at"))
        | Q(effective_at=OuterRef("effective_at"), id__gt=OuterRef("id"))
    )
    return (
        LegalDocumentVersion.objects.filter(effective_at__lte=now)
        .filter(Exists(Consent.objects.filter(user=user, version__document=OuterRef("document"))))
        .exclude(Exists(Consent.objects.filter(user=user, version=OuterRef("pk"))))
        .exclude(Exists(newer_in_effect))
        .select_related("document")
        .order_by("document__title")
    )
