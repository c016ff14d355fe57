"""Payouts: a partner's unpaid commissions paid into their wallet through
the ledger, and staff's hold on them.

One payout is one journal transaction: the "ib_commissions" system account
(the broker's IB commission expense; system accounts may go negative) pays
the partner's wallet in their payout currency. Each commission currency's
unpaid total is converted at the current mid rate (one rate per currency,
kept in ``Payout.breakdown``) and rounded down; the rows paid point at the
payout, in the same database transaction as the posting.

Race-safe: the partner's row is locked first, so two requests at once make
one payout (the second finds nothing left to pay). Idempotent: the ledger
key names the rows covered, so the same rows can never be posted twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from backoffice.events import publish
from backoffice.money import from_minor
from backoffice.services import notification_create
from payments.exceptions import LedgerError
from payments.models import Currency
from payments.selectors.rates import RateUnavailable
from payments.services.ledger import Line, ledger_post, system_account, wallet_open

from ..exceptions import IbError
from ..models import Commission, Partner, Payout
from ..selectors.payouts import convert_totals, minimum_minor

logger = logging.getLogger(__name__)

EXPENSE_ACCOUNT = "ib_commissions"
# Rows marked paid per UPDATE (bound parameters stay well under the limits).
MARK_CHUNK = 5000


def _require(actor, what: str) -> None:
    if actor is not None and not actor.has_perm("ib.pay_partner"):
        raise IbError(f"You do not have permission to {what}.")


def _money(minor: int, currency: Currency) -> str:
    return f"{from_minor(minor, currency.exponent):,} {currency.code}"


def _unpaid(partner: Partner) -> list[tuple[int, str, int, datetime]]:
    return list(
        Commission.objects.filter(partner=partner, payout__isnull=True, amount__gt=0)
        .order_by("id")
        .values_list("id", "currency_id", "amount", "earned_at")
    )


@transaction.atomic
def payout_create(*, partner: Partner, actor=None, kind: str) -> Payout:
    """Pay the partner's unpaid commissions into their wallet now.

    ``kind`` is ``manual`` (staff: any amount, needs ``ib.pay_partner``),
    ``requested`` (the partner's button) or ``scheduled`` (beat); the last
    two are refused below the partner's minimum. Refused, with the reason,
    when payouts are held, nothing is unpaid or a rate is missing."""
    if kind not in dict(Payout.KINDS):
        raise IbError(f"Unknown payout kind {kind!r}.")
    if kind == Payout.MANUAL:
        _require(actor, "pay partners")
    partner = (
        Partner.objects.select_for_update(of=("self",))
        .select_related("user", "payout_currency")
        .get(pk=partner.pk)
    )
    if partner.payouts_held:
        reason = partner.hold_reason or "no reason given"
        raise IbError(f"Payouts to this partner are on hold: {reason}.")
    rows = _unpaid(partner)
    if not rows:
        raise IbError("There are no unpaid commissions to pay out.")
    totals: dict[str, tuple[int, int]] = {}
    for _, code, amount, _ in rows:
        minor, count = totals.get(code, (0, 0))
        totals[code] = (minor + amount, count + 1)
    currency = partner.payout_currency
    try:
        conversion = convert_totals(totals, currency)
    except RateUnavailable as exc:
        raise IbError(f"The payout cannot be converted now: {exc}") from exc
    if conversion.amount <= 0:
        raise IbError(f"The unpaid commissions come to less than 1 minor unit of {currency}.")
    minimum = minimum_minor(partner, currency)
    if kind != Payout.MANUAL and conversion.amount < minimum:
        raise IbError(
            f"The balance awaiting payout, {_money(conversion.amount, currency)}, is below "
            f"the minimum payout of {_money(minimum, currency)}."
        )
    ids = [row[0] for row in rows]
    covers_from = min(row[3] for row in rows)
    covers_until = max(row[3] for row in rows)
    try:
        journal = ledger_post(
            kind="ib_payout",
            idempotency_key=f"ib-payout:{partner.pk}:{ids[0]}-{ids[-1]}:{len(ids)}",
            lines=[
                Line(system_account(EXPENSE_ACCOUNT, currency), -conversion.amount),
                Line(wallet_open(user=partner.user, currency=currency), conversion.amount),
            ],
            actor=actor,
            description=f"Partner commissions ({len(ids)})",
            metadata={"partner": partner.pk, "commissions": len(ids), "kind": kind},
        )
    except LedgerError as exc:
        raise IbError(f"The payout could not be posted: {exc}") from exc
    if journal.replayed:
        raise IbError("These commissions were already paid out.")
    payout = Payout.objects.create(
        partner=partner,
        kind=kind,
        currency=currency,
        amount=conversion.amount,
        commissions=len(ids),
        covers_from=covers_from,
        covers_until=covers_until,
        breakdown=conversion.breakdown,
        journal=journal,
        actor=actor if actor is not None and actor.pk else None,
    )
    for start in range(0, len(ids), MARK_CHUNK):
        Commission.objects.filter(pk__in=ids[start : start + MARK_CHUNK]).update(payout=payout)
    publish(
        "ib.payout_paid",
        payout,
        {
            "amount": str(from_minor(payout.amount, currency.exponent)),
            "currency": currency.code,
            "commissions": len(ids),
            "kind": kind,
            "journal": journal.pk,
        },
        client=partner.user,
        actor=actor,
    )
    notification_create(
        user=partner.user,
        kind="ib",
        title="Commissions paid",
        body=(
            f"{_money(payout.amount, currency)} for {len(ids)} commission"
            f"{'s' if len(ids) != 1 else ''} was paid into your {currency.code} wallet."
        ),
    )
    return payout


def payout_request(*, partner: Partner) -> Payout:
    """The partner asks to be paid now (above their minimum)."""
    return payout_create(partner=partner, actor=partner.user, kind=Payout.REQUESTED)


@transaction.atomic
def payouts_hold(*, actor, partner: Partner, reason: str) -> Partner:
    """Stop every payout to the partner (requests, schedule, staff) until released."""
    _require(actor, "hold partners' payouts")
    reason = (reason or "").strip()
    if not reason:
        raise IbError("Give the reason for the hold: the partner reads it.")
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    partner.payouts_held, partner.hold_reason = True, reason[:200]
    partner.save(update_fields=["payouts_held", "hold_reason"])
    publish("ib.payouts_held", partner, {"reason": reason}, client=partner.user, actor=actor)
    return partner


@transaction.atomic
def payouts_release(*, actor, partner: Partner, reason: str = "") -> Partner:
    _require(actor, "release partners' payouts")
    partner = Partner.objects.select_for_update().get(pk=partner.pk)
    if not partner.payouts_held:
        return partner
    was = partner.hold_reason
    partner.payouts_held, partner.hold_reason = False, ""
    partner.save(update_fields=["payouts_held", "hold_reason"])
    publish(
        "ib.payouts_released",
        partner,
        {"reason": reason, "held_for": was},
        client=partner.user,
        actor=actor,
    )
    return partner


@dataclass
class ScheduledResult:
    paid: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


def payouts_scheduled(*, today: date | None = None) -> ScheduledResult:
    """Beat (daily): pay partners on a daily schedule, and on Mondays those
    on a weekly one; not held, above their minimum, once a day at most.
    Each partner in a transaction of their own; one refusal never stops the rest."""
    now = timezone.now()
    today = today or now.astimezone(UTC).date()
    schedules = [Partner.DAILY] + ([Partner.WEEKLY] if today.weekday() == 0 else [])
    day_start = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    already = Payout.objects.filter(
        kind=Payout.SCHEDULED,
        created_at__gte=day_start,
        created_at__lt=day_start + timedelta(days=1),
    ).values("partner_id")
    partners = (
        Partner.objects.filter(
            status=Partner.ACTIVE, payouts_held=False, payout_schedule__in=schedules
        )
        .filter(commissions__payout__isnull=True, commissions__amount__gt=0)
        .exclude(pk__in=already)
        .distinct()
        .order_by("pk")
    )
    result = ScheduledResult()
    for partner in partners:
        try:
            result.paid.append(payout_create(partner=partner, kind=Payout.SCHEDULED).pk)
        except IbError as exc:
            result.skipped[partner.pk] = str(exc)
    return result
