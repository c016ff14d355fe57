"""Partners, plans and referrals for the IB tests (through the services)."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone

from ib.models import Partner, Plan, Referral
from ib.services import partner_create
from ib.services.plans import plan_create
from tests.factories import TraderFactory

_plans = 0


def make_plan(*, rebate: str = "10", currency: str = "USD", rules=None, **fields) -> Plan:
    """A plan paying ``rebate`` per lot on any group unless ``rules`` are given."""
    global _plans
    _plans += 1
    rules = rules or [{"instrument_group": "", "rebate_per_lot": Decimal(rebate)}]
    return plan_create(
        name=fields.pop("name", f"Plan {_plans}"), currency=currency, rules=rules, **fields
    )


def make_partner(
    *, parent: Partner | None = None, plan: Plan | None = None, user=None, **fields
) -> Partner:
    """An active partner (a trader made partner by staff) under ``parent``."""
    return partner_create(
        actor=None, user=user or TraderFactory(), parent=parent, plan=plan, **fields
    )


def make_chain(depth: int, *, plan: Plan | None = None) -> list[Partner]:
    """``depth`` partners, each under the previous one: [top, ..., bottom]."""
    chain: list[Partner] = []
    for _ in range(depth):
        chain.append(make_partner(parent=chain[-1] if chain else None, plan=plan))
    return chain


def refer(client, partner: Partner, *, since=None, source: str = Referral.STAFF) -> Referral:
    """Attribute ``client`` to ``partner`` (directly, for arithmetic tests)."""
    return Referral.objects.create(
        client=client, partner=partner, source=source, since=since or timezone.now()
    )
