"""CPA: a one-time amount for a referred client's qualifying first deposit.

The rules (partners and staff read them in docs/IB.md):

- On ``deposit.completed`` the deposit's client is looked up: their direct
  partner is the :class:`~ib.models.Referral` covering the deposit's
  completion time, and the partner's plan is the version in force at that
  moment (``PlanAssignment`` then ``PlanVersion``).
- The deposit qualifies when the plan has a CPA amount, it is the client's
  **first** completed deposit (none completed before it), and what it
  credited, converted into the plan's currency at the current mid rate, is at
  least the plan's minimum first deposit.
- With a minimum of lots, the deposit waits as a :class:`~ib.models.PendingCpa`
  until the client's deals closed between the deposit and the deadline
  (deposit + ``cpa_within_days``; demo accounts do not count) add up to the
  minimum: :func:`cpa_check_pending` (beat, and after accrual) pays it then,
  and forgets it once the deadline has passed (after a grace for late deal
  imports).
- Only an active partner is paid; the amount is the plan's, rounded down to
  the plan currency's minor unit. At most once per client and partner (the
  database's ``ib_commission_cpa`` constraint): a replayed event, a second
  deposit or a re-run change nothing.

The row: kind ``cpa``, ``deposit_id``, ``earned_at`` = the deposit's
completion, ``level`` 1, ``basis`` = the deposit converted into the plan's
currency (minor units), so that the commission explains itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.db import IntegrityError, transaction
from django.db.models import DecimalField, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Deal
from backoffice.money import from_minor, to_minor
from payments.models import Currency, Deposit
from payments.selectors.rates import RateUnavailable, rate_for

from ..models import Commission, Partner, PendingCpa, PlanAssignment, PlanVersion, Referral

logger = logging.getLogger(__name__)

# A pending CPA whose deadline passed is kept this long before it is
# forgotten, so that deals closed in time but imported late still count.
EXPIRY_GRACE = timedelta(days=1)


def referral_at(client_id: int, moment: datetime) -> Referral | None:
    """The client's attribution covering ``moment`` (their direct partner then)."""
    return (
        Referral.objects.filter(client_id=client_id, since__lte=moment)
        .filter(Q(until__isnull=True) | Q(until__gt=moment))
        .select_related("partner")
        .order_by("-since", "-id")
        .first()
    )


def version_in_force(partner_id: int, moment: datetime) -> PlanVersion | None:
    """The version of the plan the partner was on at ``moment``, in force then."""
    plan_id = (
        PlanAssignment.objects.filter(partner_id=partner_id, since__lte=moment)
        .order_by("-since", "-id")
        .values_list("plan_id", flat=True)
        .first()
    )
    if plan_id is None:
        return None
    return (
        PlanVersion.objects.filter(plan_id=plan_id, effective_from__lte=moment)
        .order_by("-effective_from", "-id")
        .first()
    )


def _decimal(text: str | None) -> Decimal:
    return Decimal(text) if text not in (None, "") else Decimal(0)


def _is_first_deposit(deposit: Deposit) -> bool:
    return not (
        Deposit.objects.filter(user_id=deposit.user_id, status=Deposit.COMPLETED)
        .exclude(pk=deposit.pk)
        .filter(
            Q(completed_at__lt=deposit.completed_at)
            | Q(completed_at=deposit.completed_at, pk__lt=deposit.pk)
        )
        .exists()
    )


def _in_plan_currency(minor: int, currency: Currency, plan_currency: Currency) -> int:
    """``minor`` units of ``currency`` in minor units of the plan's currency
    (current mid rate, rounded down). Raises ``RateUnavailable``: the event is
    delivered again later."""
    amount = from_minor(minor, currency.exponent)
    if currency.code != plan_currency.code:
        amount *= rate_for(currency, plan_currency).rate
    return to_minor(amount, plan_currency.exponent, rounding=ROUND_DOWN)


def _cpa_write(
    *, partner_id: int, client_id: int, deposit_id: int, version: PlanVersion, earned_at, basis: int
) -> Commission | None:
    """The CPA row, once per client and partner (None if it already exists)."""
    terms = version.terms
    currency = Currency.objects.get(pk=terms["currency"])
    amount = to_minor(_decimal(terms.get("cpa_amount")), currency.exponent, rounding=ROUND_DOWN)
    if amount <= 0:
        return None
    try:
        with transaction.atomic():
            return Commission.objects.create(
                kind=Commission.CPA,
                partner_id=partner_id,
                client_id=client_id,
                deposit_id=deposit_id,
                plan_version=version,
                level=1,
                basis=basis,
                amount=amount,
                currency=currency,
                earned_at=earned_at,
            )
    except IntegrityError:
        # ib_commission_cpa: already paid to this partner for this client.
        return None


@transaction.atomic
def cpa_on_deposit(deposit_id: int) -> Commission | PendingCpa | None:
    """React to a completed deposit: pay the CPA it qualifies for, or start
    waiting for the plan's minimum lots. Idempotent (see the module's rules)."""
    deposit = (
        Deposit.objects.filter(pk=deposit_id, status=Deposit.COMPLETED)
        .select_related("wallet__currency")
        .first()
    )
    if deposit is None or deposit.completed_at is None:
        return None
    moment = deposit.completed_at
    referral = referral_at(deposit.user_id, moment)
    if referral is None or referral.partner.status != Partner.ACTIVE:
        return None
    partner = referral.partner
    already = Commission.objects.filter(
        kind=Commission.CPA, client_id=deposit.user_id, partner=partner
    ).exists()
    if already or not _is_first_deposit(deposit):
        return None
    version = version_in_force(partner.pk, moment)
    if version is None or _decimal(version.terms.get("cpa_amount")) <= 0:
        return None
    terms = version.terms
    plan_currency = Currency.objects.get(pk=terms["currency"])
    basis = _in_plan_currency(deposit.credit_amount, deposit.wallet.currency, plan_currency)
    minimum = _decimal(terms.get("cpa_min_deposit"))
    if from_minor(basis, plan_currency.exponent) < minimum:
        return None
    if _decimal(terms.get("cpa_min_lots")) > 0:
        pending, _ = PendingCpa.objects.get_or_create(
            client_id=deposit.user_id,
            partner=partner,
            defaults={
                "deposit_id": deposit.pk,
                "plan_version": version,
                "deposited_at": moment,
                "deadline": moment + timedelta(days=int(terms.get("cpa_within_days") or 0)),
            },
        )
        # Deals may already be in (an event delivered late): check at once.
        paid = cpa_check_pending(client_ids=[deposit.user_id])
        return paid[0] if paid else pending
    return _cpa_write(
        partner_id=partner.pk,
        client_id=deposit.user_id,
        deposit_id=deposit.pk,
        version=version,
        earned_at=moment,
        basis=basis,
    )


def _lots_in_window() -> Subquery:
    """Lots the pending row's client closed between the deposit and the
    deadline, live accounts only (one correlated aggregate per row)."""
    lots = (
        Deal.objects.filter(
            client_id=OuterRef("client_id"),
            close_time__gte=OuterRef("deposited_at"),
            close_time__lte=OuterRef("deadline"),
            account__is_demo=False,
        )
        .order_by()
        .values("client_id")
        .annotate(total=Sum("volume"))
        .values("total")
    )
    return Subquery(lots, output_field=DecimalField(max_digits=20, decimal_places=4))


@transaction.atomic
def cpa_check_pending(
    client_ids: Iterable[int] | None = None, *, now: datetime | None = None
) -> list[Commission]:
    """Pay the pending CPAs whose client has traded the plan's minimum lots
    in time (of ``client_ids``, or all); forget those past their deadline
    (plus :data:`EXPIRY_GRACE`). Returns the commissions written.

    Safe to call from anywhere, any number of times: the row is unique per
    client and partner, and a paid or expired pending row is deleted."""
    now = now or timezone.now()
    pending = PendingCpa.objects.select_related("partner", "plan_version")
    if client_ids is not None:
        client_ids = list(client_ids)
        if not client_ids:
            return []
        pending = pending.filter(client_id__in=client_ids)
    pending = pending.annotate(
        lots=Coalesce(_lots_in_window(), Value(Decimal(0)), output_field=DecimalField())
    ).select_for_update(of=("self",), skip_locked=True)
    written: list[Commission] = []
    done: list[int] = []
    for row in pending:
        minimum = _decimal(row.plan_version.terms.get("cpa_min_lots"))
        if Decimal(row.lots) >= minimum:
            if row.partner.status != Partner.ACTIVE:
                # Not paid while inactive; it may still be reactivated in time.
                if row.deadline + EXPIRY_GRACE < now:
                    done.append(row.pk)
                continue
            commission = _cpa_write(
                partner_id=row.partner_id,
                client_id=row.client_id,
                deposit_id=row.deposit_id,
                version=row.plan_version,
                earned_at=row.deposited_at,
                basis=_basis_of(row),
            )
            if commission is not None:
                written.append(commission)
            done.append(row.pk)
        elif row.deadline + EXPIRY_GRACE < now:
            done.append(row.pk)
    if done:
        PendingCpa.objects.filter(pk__in=done).delete()
    return written


def _basis_of(row: PendingCpa) -> int:
    """The qualifying deposit in the plan's currency, for the explanation
    (today's rate; 0 when no rate is known: the CPA is paid all the same)."""
    deposit = Deposit.objects.filter(pk=row.deposit_id).select_related("wallet__currency").first()
    if deposit is None:
        return 0
    try:
        plan_currency = Currency.objects.get(pk=row.plan_version.terms["currency"])
        return _in_plan_currency(deposit.credit_amount, deposit.wallet.currency, plan_currency)
    except RateUnavailable:
        return 0
