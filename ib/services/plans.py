"""Commission plans: saving a plan records the version accrual reads.

``plan_terms`` is the one description of a plan's terms (a JSON object kept
in :class:`~ib.models.PlanVersion`); accrual compiles it and the partner
dashboard explains commissions from it, so the plan a deal was paid under
can be edited later without changing what was paid or how it reads.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from backoffice.events import publish

from ..exceptions import IbError
from ..models import Plan, PlanVersion

TERMS_SCHEMA = 1


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(Decimal(value).normalize(), "f")


def tier_shares_parse(text: str) -> list[Decimal]:
    """``"70, 20, 10"`` → ``[70, 20, 10]``; refuses what is not a list of
    percentages adding up to at most 100."""
    parts = [p.strip() for p in (text or "").replace(";", ",").split(",") if p.strip()]
    try:
        shares = [Decimal(p.rstrip("%").strip()) for p in parts]
    except ArithmeticError as exc:
        raise IbError("Tier shares are percentages separated by commas, e.g. 70, 20, 10.") from exc
    if any(not s.is_finite() or s < 0 or s > 100 for s in shares):
        raise IbError("Each tier share is between 0 and 100 %.")
    if sum(shares, Decimal(0)) > 100:
        raise IbError("The tier shares add up to more than 100 %.")
    return shares


def plan_terms(plan: Plan) -> dict[str, Any]:
    """The plan's terms and rules as stored in a version (amounts as decimal
    strings in the plan's currency, percentages as strings)."""
    shares = tier_shares_parse(plan.tier_shares) if plan.tier_model == Plan.FIXED_SHARES else []
    return {
        "schema": TERMS_SCHEMA,
        "plan": plan.pk,
        "name": plan.name,
        "currency": plan.currency_id,
        "tier_model": plan.tier_model,
        "tier_shares": [_text(s) for s in shares],
        "min_hold_seconds": plan.min_hold_seconds,
        "allow_own_trading": plan.allow_own_trading,
        "cap_per_deal": _text(plan.cap_per_deal),
        "cap_per_period": _text(plan.cap_per_period),
        "cap_period": plan.cap_period,
        "revshare_percent": _text(plan.revshare_percent),
        "revshare_period": plan.revshare_period,
        "revshare_carry_negative": plan.revshare_carry_negative,
        "cpa_amount": _text(plan.cpa_amount),
        "cpa_min_deposit": _text(plan.cpa_min_deposit),
        "cpa_min_lots": _text(plan.cpa_min_lots),
        "cpa_within_days": plan.cpa_within_days,
        "rules": {
            rule.instrument_group: {
                "rebate_per_lot": _text(rule.rebate_per_lot),
                "commission_share": _text(rule.commission_share),
                "spread_share": _text(rule.spread_share),
            }
            for rule in plan.rules.all()
        },
    }


@transaction.atomic
def plan_version_record(
    *, plan: Plan, actor=None, effective_from: datetime | None = None
) -> PlanVersion:
    """Snapshot the plan (saved, with its rules) as the version in force from
    ``effective_from`` (default: the plan's ``effective_from``, or now).

    A version starting in the past would change what deals already closed
    earned: refused (more than a minute back), like a date before the
    plan's latest version."""
    now = timezone.now()
    start = effective_from or plan.effective_from or now
    if start < now - timezone.timedelta(minutes=1) and plan.versions.exists():
        raise IbError(
            "A change cannot take effect in the past: deals already closed keep the terms "
            "they were paid under. Choose now or a later moment."
        )
    latest = plan.versions.order_by("-effective_from", "-id").first()
    if latest is not None and start < latest.effective_from:
        raise IbError(
            f"The plan already has a version from {latest.effective_from:%Y-%m-%d %H:%M}; "
            "a new one starts at or after it."
        )
    terms = plan_terms(plan)
    if latest is not None and latest.terms == terms:
        return latest
    version = PlanVersion.objects.create(
        plan=plan,
        effective_from=start,
        terms=terms,
        created_by=actor if actor and actor.pk else None,
    )
    publish(
        "ib.plan_changed",
        plan,
        {"version": version.pk, "effective_from": start.isoformat()},
        actor=actor,
    )
    return version


@transaction.atomic
def plan_create(
    *, actor=None, name: str, currency: str = "USD", rules: list[dict] | None = None, **fields
) -> Plan:
    """A plan with its rules and first version, in force from now (or the
    ``effective_from`` given). For code and demo data; staff use the admin."""
    plan = Plan(name=name, currency_id=currency, **fields)
    if plan.effective_from is None:
        plan.effective_from = timezone.now()
    tier_shares_parse(plan.tier_shares)
    plan.full_clean()
    plan.save()
    for rule in rules or [{"instrument_group": ""}]:
        plan.rules.create(**rule)
    plan_version_record(plan=plan, actor=actor, effective_from=plan.effective_from)
    return plan
