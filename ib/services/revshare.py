"""Revenue share: a share of the broker's net result on a partner's clients,
settled per period.

The rules (partners and staff read them in docs/IB.md):

- Periods are UTC calendar days, ISO weeks (Monday to Sunday) or calendar
  months, as the plan's ``revshare_period`` says (the version in force when
  the period starts). A partner's first period starts when they were
  approved or first given a plan, whichever is later.
- A period is settled once it has ended, by :func:`revshare_settle` (beat,
  daily), for every **active** partner whose plan version in force at the
  period's end has a revenue share percent. Periods are settled in order;
  none is settled twice (unique per partner, period start and version):
  a deal imported after its period was settled is not counted. The beat
  runs after midnight UTC, when the last minutes' deals are in.
- The net result is the broker's on the partner's **direct** clients (the
  attribution covering each deal's close): −Σ(profit + commission + swap)
  of their deals closed in the period on live accounts, converted into the
  plan's currency at the current mid rate (one rate per currency per run).
- The share is net × percent, rounded down (towards −∞). Without
  ``revshare_carry_negative`` each period pays max(0, share). With it, a
  losing period's share is carried forward: the period pays
  max(0, share + carried), and what stays below zero is carried on.
- Every settled period has a row, a losing one too (amount 0): ``basis`` is
  the net result and ``share`` the signed share, both in minor units of the
  plan's currency; ``earned_at`` is the period's end (exclusive: midnight
  after its last day).

The carried balance is derived from the rows, not stored: walking a
partner's revenue-share rows in order, carried = min(0, carried + share)
for a row whose version carries, 0 for one that does not. Only the rows
after the partner's latest paying row (amount > 0, where the carry is 0)
are read.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, Sum
from django.utils import timezone

from accounts.models import Deal
from backoffice.money import from_minor, to_minor
from payments.models import Currency
from payments.selectors.rates import RateUnavailable, rate_for

from ..models import Commission, Partner, Plan, PlanAssignment, PlanVersion

logger = logging.getLogger(__name__)


def period_bounds(kind: str, day: date) -> tuple[date, date]:
    """The period of ``kind`` (day, week, month) containing ``day``: its
    first day and the day after its last."""
    if kind == Plan.DAY:
        return day, day + timedelta(days=1)
    if kind == Plan.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass
class SettleResult:
    rows: int = 0
    paid: int = 0
    partners: int = 0
    skipped_no_rate: list[int] = field(default_factory=list)


class _Terms:
    """The partner's plan versions in memory: which is in force when."""

    def __init__(self, assignments: list[tuple[datetime, int]], versions: dict[int, list]):
        self.assignments = assignments  # (since, plan_id), oldest first
        self.versions = versions  # plan_id -> [PlanVersion], oldest first

    def before(self, moment: datetime) -> PlanVersion | None:
        """The version in force just before ``moment`` (at a period's end)."""
        plan_id = None
        for since, plan in self.assignments:
            if since < moment:
                plan_id = plan
        found = None
        for version in self.versions.get(plan_id, []):
            if version.effective_from < moment:
                found = version
        return found

    def at(self, moment: datetime) -> PlanVersion | None:
        return self.before(moment + timedelta(microseconds=1))


class _Rates:
    """Rates (and currencies) of one run, each read once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], Decimal] = {}
        self._currencies: dict[str, Currency] = {}

    def currency(self, code: str) -> Currency:
        if code not in self._currencies:
            self._currencies[code] = Currency.objects.get(pk=code)
        return self._currencies[code]

    def __call__(self, base: str, quote: str) -> Decimal:
        if base == quote:
            return Decimal(1)
        if (base, quote) not in self._cache:
            self._cache[(base, quote)] = rate_for(base, quote).rate
        return self._cache[(base, quote)]


def _net_result(partner_id: int, start: datetime, end: datetime, currency: Currency, rates) -> int:
    """The broker's net result on the partner's direct clients' deals closed
    in [start, end), in minor units of ``currency`` (rounded down)."""
    attributed = Q(client__referrals__partner_id=partner_id) & Q(
        client__referrals__since__lte=F("close_time")
    )
    attributed &= Q(client__referrals__until__isnull=True) | Q(
        client__referrals__until__gt=F("close_time")
    )
    sums = (
        Deal.objects.filter(
            attributed, close_time__gte=start, close_time__lt=end, account__is_demo=False
        )
        .order_by()
        .values("account__currency", "account__currency_digits")
        .annotate(result=Sum(F("profit") + F("commission") + F("swap")))
    )
    total = Decimal(0)
    for row in sums:
        client_result = from_minor(int(row["result"] or 0), row["account__currency_digits"])
        total -= client_result * rates(row["account__currency"], currency.code)
    return to_minor(total, currency.exponent, rounding=ROUND_FLOOR)


def _carried(partner_id: int, versions_by_id: dict[int, PlanVersion]) -> int:
    """The negative balance carried into the partner's next period."""
    rows = Commission.objects.filter(partner_id=partner_id, kind=Commission.REVSHARE)
    last_paid = rows.filter(amount__gt=0).aggregate(at=Max("earned_at"))["at"]
    if last_paid is not None:
        rows = rows.filter(earned_at__gt=last_paid)
    carried = 0
    for share, version_id in rows.order_by("earned_at", "id").values_list(
        "share", "plan_version_id"
    ):
        version = versions_by_id.get(version_id)
        if version is not None and version.terms.get("revshare_carry_negative"):
            carried = min(0, carried + share)
        else:
            carried = 0
    return carried


def _settle_partner(
    partner: Partner, terms: _Terms, limit: date, rates: _Rates, versions_by_id, result
) -> None:
    """Settle the partner's ended periods, oldest first, each in its own
    transaction; stop at the first that cannot be (no rate)."""
    last_end = Commission.objects.filter(partner=partner, kind=Commission.REVSHARE).aggregate(
        at=Max("earned_at")
    )["at"]
    if last_end is not None:
        day = last_end.astimezone(UTC).date()
    else:
        first = terms.assignments[0][0] if terms.assignments else partner.created_at
        start = max(first, partner.approved_at or partner.created_at)
        day = start.astimezone(UTC).date()
    if last_end is not None and partner.approved_at is not None:
        # Periods while suspended are not paid when the partner comes back.
        day = max(day, partner.approved_at.astimezone(UTC).date())
    carried = None
    while True:
        opening = terms.at(_midnight(day))
        kind = (opening.terms.get("revshare_period") if opening else None) or Plan.MONTH
        first_day, end_day = period_bounds(kind, day)
        if end_day > limit:
            return
        start_day = max(first_day, day)
        day = end_day
        end = _midnight(end_day)
        version = terms.before(end)
        percent = version.terms.get("revshare_percent") if version else None
        if not percent:
            continue
        currency = rates.currency(version.terms["currency"])
        try:
            net = _net_result(partner.pk, _midnight(start_day), end, currency, rates)
        except RateUnavailable as exc:
            logger.warning("revshare: partner %s not settled: %s", partner.pk, exc)
            result.skipped_no_rate.append(partner.pk)
            return
        share = to_minor(
            from_minor(net, currency.exponent) * Decimal(percent) / 100,
            currency.exponent,
            rounding=ROUND_FLOOR,
        )
        if carried is None:
            carried = _carried(partner.pk, versions_by_id)
        if not version.terms.get("revshare_carry_negative"):
            carried = 0
        amount = max(0, share + carried)
        try:
            with transaction.atomic():
                Commission.objects.create(
                    kind=Commission.REVSHARE,
                    partner=partner,
                    period_start=start_day,
                    plan_version=version,
                    level=1,
                    basis=net,
                    share=share,
                    amount=amount,
                    currency=currency,
                    earned_at=end,
                )
        except IntegrityError:
            # Settled meanwhile by another run: the next run reads its carry.
            return
        carried = min(0, carried + share) if version.terms.get("revshare_carry_negative") else 0
        result.rows += 1
        result.paid += amount > 0


def revshare_settle(*, period_end: date | None = None) -> SettleResult:
    """Settle every revenue-share period that ended on or before
    ``period_end`` (default: yesterday, UTC) and is not settled yet."""
    last_day = period_end or (timezone.now().astimezone(UTC).date() - timedelta(days=1))
    limit = last_day + timedelta(days=1)
    versions: dict[int, list[PlanVersion]] = defaultdict(list)
    for version in PlanVersion.objects.order_by("effective_from", "id"):
        versions[version.plan_id].append(version)
    sharing = {
        plan_id
        for plan_id, plan_versions in versions.items()
        if any(v.terms.get("revshare_percent") for v in plan_versions)
    }
    result = SettleResult()
    if not sharing:
        return result
    partners = list(
        Partner.objects.filter(status=Partner.ACTIVE, assignments__plan_id__in=sharing)
        .distinct()
        .order_by("pk")
    )
    assignments: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for partner_id, since, plan_id in (
        PlanAssignment.objects.filter(partner__in=partners)
        .order_by("since", "id")
        .values_list("partner_id", "since", "plan_id")
    ):
        assignments[partner_id].append((since, plan_id))
    versions_by_id = {v.pk: v for plan_versions in versions.values() for v in plan_versions}
    rates = _Rates()
    for partner in partners:
        result.partners += 1
        terms = _Terms(assignments[partner.pk], versions)
        _settle_partner(partner, terms, limit, rates, versions_by_id, result)
    return result
