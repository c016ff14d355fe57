"""The accrual rules written out deal by deal (see :mod:`ib.services.accrual`).

This is the engine on SQLite (the embedded default: small volumes) and the
oracle the PostgreSQL engine (:mod:`ib.accrual.postgres`) is tested
against: it reads the tree, the moves, the referrals and the plans as they
are stored and answers each question (who was this partner's parent at
``t``? which version was in force?) directly, without the intervals the
set-based engine builds.

:func:`compute` only reads; :func:`write` stores what it computed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext

from django.db.models import Exists, OuterRef

from .terms import (
    EXACT,
    HUNDRED,
    ZERO,
    RateBook,
    Terms,
    currency_exponents,
    day_start,
    period_end,
    period_start,
    versions_terms,
)

#: Deal ids per pass: period caps see the rows of earlier passes as
#: recorded, and this pass's in deal id order (the PostgreSQL engine uses
#: the same passes; with caps in the rows' own currency the result does not
#: depend on them at all).
CHUNK = 200_000


@dataclass(frozen=True)
class Row:
    """One commission row as accrual writes it (``kind="deal"``)."""

    deal_id: int
    partner_id: int
    client_id: int
    plan_version_id: int
    level: int
    instrument_group: str
    lots: Decimal
    rebate: int
    share: int
    basis: int
    tier_percent: Decimal | None
    capped: bool
    amount: int
    currency: str
    earned_at: datetime


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    deals: int = 0
    skipped_no_rate: int = 0


@dataclass(frozen=True)
class _Deal:
    id: int
    client_id: int
    symbol: str
    lots: Decimal
    open_time: datetime
    close_time: datetime
    commission: int
    currency: str
    digits: int


@dataclass(frozen=True)
class _Instrument:
    group: str
    spread_per_lot: Decimal  # in the profit currency
    profit_currency: str


@dataclass
class _Level:
    level: int
    partner_id: int
    terms: Terms | None  # the partner's own version at t
    version_id: int | None  # what the row records
    rebate: Decimal
    share: Decimal
    tier: Decimal | None
    earns: bool
    raw: int = 0
    basis: Decimal = ZERO
    paid: int = 0
    cap_key: tuple | None = None


def floor(value: Decimal) -> int:
    """Round down to an integer (amounts here are never negative)."""
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


class World:
    """The tree, its history, the referrals and the plans, read once."""

    def __init__(self, rates: RateBook) -> None:
        from accounts.models import Instrument

        from ..models import Partner, PartnerMove, PlanAssignment, PlanVersion, Referral

        self.rates = rates
        self.exponents = currency_exponents()
        self.partners: dict[int, tuple[int, str, int | None]] = {
            pk: (user_id, status, parent)
            for pk, user_id, status, parent in Partner.objects.values_list(
                "pk", "user_id", "status", "parent_partner_id"
            )
        }
        self.partner_of_user = {user_id: pk for pk, (user_id, _, _) in self.partners.items()}
        self.moves: dict[int, list[tuple[datetime, int, int | None]]] = defaultdict(list)
        for pk, partner_id, at, old in PartnerMove.objects.filter(
            partner__isnull=False
        ).values_list("pk", "partner_id", "at", "old_parent_id"):
            self.moves[partner_id].append((at, pk, old))
        for moves in self.moves.values():
            moves.sort(key=lambda m: (m[0], m[1]))
        self.referrals: dict[int, list[tuple[datetime, datetime | None, int]]] = defaultdict(list)
        for client_id, partner_id, since, until in Referral.objects.order_by(
            "since", "id"
        ).values_list("client_id", "partner_id", "since", "until"):
            self.referrals[client_id].append((since, until, partner_id))
        self.assignments: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
        for partner_id, since, plan_id in PlanAssignment.objects.order_by(
            "since", "id"
        ).values_list("partner_id", "since", "plan_id"):
            self.assignments[partner_id].append((since, plan_id))
        self.versions: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
        for plan_id, start, pk in PlanVersion.objects.order_by("effective_from", "id").values_list(
            "plan_id", "effective_from", "pk"
        ):
            self.versions[plan_id].append((start, pk))
        self.terms = versions_terms()
        self.instruments = {
            symbol: _Instrument(group, size * markup * Decimal(1).scaleb(-digits), profit)
            for symbol, group, size, markup, digits, profit in Instrument.objects.values_list(
                "symbol", "group", "contract_size", "spread_markup", "digits", "profit_currency"
            )
        }

    # --- The questions the rules ask, answered from the stored history --------------

    def direct_partner(self, deal: _Deal) -> tuple[int | None, bool]:
        """(the partner the chain starts at, whether it is their own trading)."""
        own = self.partner_of_user.get(deal.client_id)
        if own is not None:
            return own, True
        t = deal.close_time
        found = None
        for since, until, partner_id in self.referrals.get(deal.client_id, ()):
            if since <= t and (until is None or t < until):
                found = partner_id
        return found, False

    def parent_at(self, partner_id: int, t: datetime) -> int | None:
        for at, _, old_parent in self.moves.get(partner_id, ()):
            if at > t:
                return old_parent
        return self.partners[partner_id][2]

    def chain_at(self, partner_id: int, t: datetime) -> list[int]:
        chain = [partner_id]
        parent = self.parent_at(partner_id, t)
        while parent is not None and parent not in chain and parent in self.partners:
            chain.append(parent)
            parent = self.parent_at(parent, t)
        return chain

    def terms_at(self, partner_id: int, t: datetime) -> Terms | None:
        plan_id = None
        for since, plan in self.assignments.get(partner_id, ()):
            if since <= t:
                plan_id = plan
        if plan_id is None:
            return None
        version_id = None
        for start, pk in self.versions.get(plan_id, ()):
            if start <= t:
                version_id = pk
        return self.terms.get(version_id) if version_id is not None else None

    def active(self, partner_id: int) -> bool:
        return self.partners[partner_id][1] == "active"

    # --- Money ------------------------------------------------------------------------

    def pool(
        self, terms: Terms, deal: _Deal, instrument: _Instrument | None, group: str, target: str
    ) -> tuple[Decimal, Decimal] | None:
        """(rebate part, commission and spread share part) of ``terms`` for
        the deal, in minor units of ``target``, exact; None when a rate the
        amount needs is missing."""
        rule = terms.rule_for(group)
        if rule is None:
            return ZERO, ZERO
        rate = self.rates.get
        plan, lots = terms.currency, deal.lots
        scale = Decimal(1).scaleb(self.exponents[target])
        to_target = rate(plan, target)
        with localcontext(EXACT):
            rebate = share = ZERO
            if rule.rebate_per_lot:
                if to_target is None:
                    return None
                rebate = rule.rebate_per_lot * lots * to_target * scale
            spread = instrument.spread_per_lot if instrument is not None else ZERO
            if rule.spread_share and spread:
                profit = (instrument.profit_currency if instrument else "") or deal.currency
                to_plan = rate(profit, plan)
                if to_plan is None or to_target is None:
                    return None
                share += rule.spread_share / HUNDRED * spread * to_plan * to_target * scale * lots
            if rule.commission_share and deal.commission < 0:
                to_plan = rate(deal.currency, plan)
                if to_plan is None or to_target is None:
                    return None
                charged = Decimal(-deal.commission).scaleb(-deal.digits)
                share += rule.commission_share / HUNDRED * charged * to_plan * to_target * scale
        return rebate, share


class _PeriodTotals:
    """What each partner already earned in a period, in the cap's currency:
    the rows recorded before the run plus those of the run's earlier passes."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.earlier: dict[int, list[Row]] = defaultdict(list)
        self._recorded: dict[tuple, tuple[Decimal, bool]] = {}

    def _convert(self, amount: int, currency: str, cap_currency: str) -> Decimal | None:
        rate = self.world.rates.get(currency, cap_currency)
        if rate is None:
            return None
        with localcontext(EXACT):
            return Decimal(amount).scaleb(-self.world.exponents[currency]) * rate

    def recorded(self, key: tuple) -> tuple[Decimal, bool]:
        """(total, whether a rate was missing) of the rows already stored."""
        if key not in self._recorded:
            from ..models import Commission

            partner_id, kind, start, cap_currency = key
            begin = day_start(start)
            rows = Commission.objects.filter(
                kind=Commission.DEAL,
                partner_id=partner_id,
                earned_at__gte=begin,
                earned_at__lt=period_end(begin, kind),
            ).values_list("amount", "currency_id")
            self._recorded[key] = self._sum(rows, cap_currency)
        return self._recorded[key]

    def _sum(self, rows, cap_currency: str) -> tuple[Decimal, bool]:
        total, missing = ZERO, False
        for amount, currency in rows:
            value = self._convert(amount, currency, cap_currency)
            if value is None:
                missing = True
            else:
                with localcontext(EXACT):
                    total += value
        return total, missing

    def before_pass(self, key: tuple) -> tuple[Decimal, bool]:
        total, missing = self.recorded(key)
        partner_id, kind, start, cap_currency = key
        begin = day_start(start)
        end = period_end(begin, kind)
        rows = [
            (r.amount, r.currency)
            for r in self.earlier.get(partner_id, ())
            if begin <= r.earned_at < end
        ]
        more, more_missing = self._sum(rows, cap_currency)
        with localcontext(EXACT):
            return total + more, missing or more_missing


def _deals(first: int, last: int, platform_id: int | None) -> Iterator[_Deal]:
    from accounts.models import Deal

    from ..models import Commission

    # Demo accounts trade virtual money: they earn nobody anything.
    qs = Deal.objects.filter(id__gte=first, id__lte=last, account__is_demo=False)
    if platform_id is not None:
        qs = qs.filter(platform_id=platform_id)
    done = Commission.objects.filter(kind=Commission.DEAL, deal_id=OuterRef("pk"))
    rows = (
        qs.filter(~Exists(done))
        .order_by("id")
        .values_list(
            "id",
            "client_id",
            "symbol",
            "volume",
            "open_time",
            "close_time",
            "commission",
            "account__currency",
            "account__currency_digits",
        )
    )
    for row in rows.iterator(chunk_size=2000):
        yield _Deal(*row)


def count_deals(first: int, last: int, platform_id: int | None) -> int:
    from accounts.models import Deal

    qs = Deal.objects.filter(id__gte=first, id__lte=last)
    if platform_id is not None:
        qs = qs.filter(platform_id=platform_id)
    return qs.count()


def compute(
    *,
    first_deal_id: int,
    last_deal_id: int,
    platform_id: int | None = None,
    rates: RateBook | None = None,
    chunk: int | None = None,
) -> Outcome:
    """The rows the rules give for the deals ``first_deal_id``..``last_deal_id``
    not accrued yet (nothing is written)."""
    world = World(rates or RateBook())
    outcome = Outcome(deals=count_deals(first_deal_id, last_deal_id, platform_id))
    totals = _PeriodTotals(world)
    chunk = chunk or CHUNK
    start = first_deal_id
    while start <= last_deal_id:
        end = min(start + chunk - 1, last_deal_id)
        running: dict[tuple, Decimal] = defaultdict(Decimal)
        prior: dict[tuple, tuple[Decimal, bool]] = {}
        rows: list[Row] = []
        for deal in _deals(start, end, platform_id):
            deal_rows = _accrue(world, deal, totals, prior, running)
            if deal_rows is None:
                outcome.skipped_no_rate += 1
                continue
            rows.extend(deal_rows)
        for row in rows:
            totals.earlier[row.partner_id].append(row)
        outcome.rows.extend(rows)
        start = end + 1
    return outcome


def _levels(world: World, deal: _Deal, gov: Terms, direct: int, own: bool, group: str):
    """The chain's level rows before caps, and whether a rate was missing."""
    t, target = deal.close_time, gov.currency
    instrument = world.instruments.get(deal.symbol)
    chain = world.chain_at(direct, t)
    levels: list[_Level] = []
    missing = False
    if not gov.rate_difference:
        pool = world.pool(gov, deal, instrument, group, target)
        if pool is None:
            missing, pool = True, (ZERO, ZERO)
        for i, partner_id in enumerate(chain[: len(gov.tier_shares)], 1):
            levels.append(
                _Level(
                    level=i,
                    partner_id=partner_id,
                    terms=world.terms_at(partner_id, t) if i > 1 else gov,
                    version_id=gov.version_id,
                    rebate=pool[0],
                    share=pool[1],
                    tier=gov.tier_shares[i - 1],
                    earns=world.active(partner_id)
                    and not (i == 1 and own and not gov.allow_own_trading),
                )
            )
        return levels, missing
    for i, partner_id in enumerate(chain, 1):
        terms = gov if i == 1 else world.terms_at(partner_id, t)
        pool = (ZERO, ZERO)
        if terms is not None:
            pool = world.pool(terms, deal, instrument, group, target)
            if pool is None:
                missing, pool = True, (ZERO, ZERO)
        levels.append(
            _Level(
                level=i,
                partner_id=partner_id,
                terms=terms,
                version_id=terms.version_id if terms is not None else None,
                rebate=pool[0],
                share=pool[1],
                tier=None,
                earns=world.active(partner_id)
                and not (i == 1 and own and not gov.allow_own_trading),
            )
        )
    return levels, missing


def _accrue(world: World, deal: _Deal, totals: _PeriodTotals, prior, running) -> list[Row] | None:
    """The deal's rows (possibly none), or None when it waits for a rate."""
    direct, own = world.direct_partner(deal)
    if direct is None:
        return []
    t = deal.close_time
    gov = world.terms_at(direct, t)
    if gov is None:
        return []
    if deal.close_time - deal.open_time < timedelta(seconds=gov.min_hold_seconds):
        return []
    instrument = world.instruments.get(deal.symbol)
    group = instrument.group if instrument is not None else ""
    levels, missing = _levels(world, deal, gov, direct, own, group)
    target = gov.currency
    rate = world.rates.get
    # Period caps: the key of each capped level, and the rates it needs.
    for lv in levels:
        terms = lv.terms
        if terms is None or terms.cap_per_period is None:
            continue
        kind, cap_currency = terms.cap_period, terms.currency
        lv.cap_key = (lv.partner_id, kind, period_start(t, kind), cap_currency)
        if lv.cap_key not in prior:
            prior[lv.cap_key] = totals.before_pass(lv.cap_key)
        if prior[lv.cap_key][1]:
            missing = True
        if target != cap_currency and (
            rate(target, cap_currency) is None or rate(cap_currency, target) is None
        ):
            missing = True
    if missing:
        return None
    # Tiers.
    highest = ZERO
    for lv in levels:
        with localcontext(EXACT):
            amount = lv.rebate + lv.share
            if gov.rate_difference:
                lv.basis = highest
                lv.raw = floor(max(amount - highest, ZERO)) if lv.earns else 0
                highest = max(highest, amount)
            else:
                lv.raw = floor(amount * lv.tier / HUNDRED) if lv.earns else 0
    # The cap per deal, from level 1 upward.
    scale = Decimal(1).scaleb(world.exponents[target])
    cap = floor(gov.cap_per_deal * scale) if gov.cap_per_deal is not None else None
    before = 0
    for lv in levels:
        lv.paid = lv.raw if cap is None else max(0, min(lv.raw, cap - before))
        before += lv.raw
    # The cap per period, partner by partner, in deal id order.
    for lv in levels:
        if lv.cap_key is None:
            continue
        cap_currency = lv.cap_key[3]
        with localcontext(EXACT):
            remaining = lv.terms.cap_per_period - prior[lv.cap_key][0]
            converted = Decimal(lv.paid).scaleb(-world.exponents[target]) * rate(
                target, cap_currency
            )
            so_far = running[lv.cap_key]
            if so_far + converted > remaining:
                cut = floor((remaining - so_far) * rate(cap_currency, target) * scale)
                lv.paid = max(0, min(lv.paid, cut))
            running[lv.cap_key] = so_far + converted
    rows = []
    for lv in levels:
        capped = lv.paid < lv.raw
        if lv.paid <= 0 and not capped:
            continue
        rows.append(
            Row(
                deal_id=deal.id,
                partner_id=lv.partner_id,
                client_id=deal.client_id,
                plan_version_id=lv.version_id,
                level=lv.level,
                instrument_group=group,
                lots=deal.lots,
                rebate=floor(lv.rebate),
                share=floor(lv.share),
                basis=floor(lv.basis),
                tier_percent=lv.tier,
                capped=capped,
                amount=lv.paid,
                currency=target,
                earned_at=t,
            )
        )
    return rows


def write(rows: list[Row]) -> int:
    """Store the rows (a row already there is left as it is); how many were new."""
    from django.utils import timezone

    from ..models import Commission

    if not rows:
        return 0
    ids = [r.deal_id for r in rows]
    existing = Commission.objects.filter(
        kind=Commission.DEAL, deal_id__gte=min(ids), deal_id__lte=max(ids)
    )
    before = existing.count()
    now = timezone.now()
    Commission.objects.bulk_create(
        [
            Commission(
                kind=Commission.DEAL,
                partner_id=r.partner_id,
                client_id=r.client_id,
                deal_id=r.deal_id,
                plan_version_id=r.plan_version_id,
                level=r.level,
                instrument_group=r.instrument_group,
                lots=r.lots,
                rebate=r.rebate,
                share=r.share,
                basis=r.basis,
                tier_percent=r.tier_percent,
                capped=r.capped,
                amount=r.amount,
                currency_id=r.currency,
                earned_at=r.earned_at,
                created_at=now,
            )
            for r in rows
        ],
        batch_size=500,
        ignore_conflicts=True,
    )
    return existing.count() - before
