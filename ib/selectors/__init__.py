"""Reads of the IB programme: settings, the tree, a partner's place in it."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from ..models import Partner, PlanAssignment, Referral, Settings


def programme_settings() -> Settings:
    settings, _ = Settings.objects.get_or_create(pk=1)
    return settings


def partner_for_user(user) -> Partner | None:
    """The user's partner record (any status), or None."""
    if user is None or not user.is_authenticated:
        return None
    return Partner.objects.filter(user_id=user.pk).select_related("plan").first()


def active_partner_for_user(user) -> Partner | None:
    partner = partner_for_user(user)
    return partner if partner is not None and partner.status == Partner.ACTIVE else None


def ancestor_ids(partner: Partner) -> list[int]:
    """The partner's ancestors' ids, nearest first (no query: the path's
    prefixes, resolved in one query)."""
    step = Partner.steplen
    prefixes = [partner.path[:n] for n in range(step, len(partner.path), step)]
    if not prefixes:
        return []
    by_path = dict(Partner.objects.filter(path__in=prefixes).values_list("path", "pk"))
    return [by_path[p] for p in reversed(prefixes) if p in by_path]


def subtree(partner: Partner, *, include_self: bool = True) -> QuerySet[Partner]:
    """The partner's downline partners (any depth), by path prefix."""
    qs = Partner.objects.filter(path__startswith=partner.path)
    return qs if include_self else qs.exclude(pk=partner.pk)


def is_in_subtree(root: Partner, partner_id: int) -> bool:
    return subtree(root).filter(pk=partner_id).exists()


def downline_referrals(partner: Partner) -> QuerySet[Referral]:
    """Current referrals of every partner in the partner's subtree."""
    return Referral.objects.filter(until__isnull=True, partner__path__startswith=partner.path)


def current_referral(client) -> Referral | None:
    return (
        Referral.objects.filter(client_id=client.pk, until__isnull=True)
        .select_related("partner")
        .first()
    )


def plan_at(partner: Partner, moment: datetime) -> int | None:
    """The id of the plan the partner was on at ``moment``."""
    return (
        PlanAssignment.objects.filter(partner=partner, since__lte=moment)
        .order_by("-since", "-id")
        .values_list("plan_id", flat=True)
        .first()
    )


def application_history(partner: Partner) -> dict:
    """When the partner's (latest) application was made and, if it was
    rejected after that, the reason the applicant was given (from the
    events the services recorded)."""
    from backoffice.models import Event

    events = Event.objects.filter(
        subject_type=Partner._meta.label_lower,
        subject_id=str(partner.pk),
        name__in=["ib.partner_applied", "ib.partner_rejected"],
    ).order_by("-created_at", "-id")[:10]
    applied = next((e for e in events if e.name == "ib.partner_applied"), None)
    rejected = next((e for e in events if e.name == "ib.partner_rejected"), None)
    return {
        "applied_at": applied.created_at if applied else partner.created_at,
        "rejected_at": rejected.created_at if rejected else None,
        "reason": (rejected.payload.get("reason", "") if rejected else "").strip(),
    }
