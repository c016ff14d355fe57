"""Property tests of accrual (hypothesis).

1. On PostgreSQL the set-based engine writes exactly the rows the deal-by-deal
   reference computes, on generated trees (with moves and inactive
   partners), plans (both tier models, several versions, currencies, caps,
   hold times, own trading), referrals (with client moves), rates (some
   missing) and deals; then again after more deals and a new rate arrive,
   so that period caps start from what the first run recorded.
2. On any database: what a deal pays never exceeds what the plan allows —
   the governing amount times the tier shares' sum (fixed shares), the
   highest rate in the chain (rate difference), the cap per deal — and no
   partner earns more than its cap in a period.
"""

from __future__ import annotations

import copy
import uuid
from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Max, Min
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import Deal, Instrument
from ib.accrual import reference
from ib.accrual.terms import period_start
from ib.models import Commission, Partner, PartnerMove, PlanAssignment, PlanVersion, Referral
from ib.services.accrual import accrual_run
from ib.services.plans import plan_create
from payments.services.rates import rate_set_manual
from tests.factories import TraderFactory
from tests.ib.factories import make_partner
from tests.ib.test_accrual import account, deal, epoch, recently

pytestmark = pytest.mark.django_db

# Hypothesis leans toward the first choice of each list: the interesting one goes first.
SHARES = ["70, 20, 10", "60, 25, 10, 5", "100", "50, 50", "33.333, 33.333", "0, 100"]
SYMBOLS = ["EURUSD", "XAUUSD", "USDJPY", "GER40", "NOSUCH"]
CURRENCIES = [("USD", 2), ("USD", 2), ("EUR", 2), ("JPY", 0)]
RATES = {"EURUSD": ("EUR", "USD", "1.0823"), "USDJPY": ("USD", "JPY", "151.37")}
MARKUPS = {"EURUSD": "12", "XAUUSD": "30", "USDJPY": "7.5"}

rules = st.fixed_dictionaries(
    {
        "rebate_per_lot": st.sampled_from(["10", "1.5", "3.33", "0"]),
        "commission_share": st.sampled_from(["25", "100", "0"]),
        "spread_share": st.sampled_from(["10", "33.333", "0"]),
    }
)
plan_specs = st.fixed_dictionaries(
    {
        "currency": st.sampled_from(["USD", "USD", "EUR", "JPY"]),
        "rate_difference": st.sampled_from([True, False]),
        "tier_shares": st.sampled_from(SHARES),
        "min_hold_seconds": st.sampled_from([0, 0, 60]),
        "allow_own_trading": st.booleans(),
        "cap_per_deal": st.sampled_from([None, "12.5", None, "3"]),
        "cap_per_period": st.sampled_from([None, "20", None, "7.77"]),
        "cap_period": st.sampled_from(["day", "week", "month"]),
        "any_rule": rules,
        "fx_rule": st.one_of(st.none(), rules),
        "second_version": st.one_of(st.none(), st.tuples(st.integers(1, 2), st.integers(0, 3))),
    }
)


@st.composite
def worlds(draw):
    n = draw(st.integers(1, 6))
    # Mostly a chain (each under the one before), with side branches and roots.
    parents = [None] + [
        draw(st.sampled_from([i - 1, i - 1, i - 1, None]) | st.integers(0, i - 1))
        for i in range(1, n)
    ]
    plans = draw(st.lists(plan_specs, min_size=1, max_size=3))
    plan_index = st.integers(0, len(plans) - 1)
    assignments = [
        # Most partners are on a plan from the start; some change plan later.
        ([(0, draw(plan_index))] if draw(st.integers(0, 5)) else [])
        + draw(st.lists(st.tuples(st.integers(1, 2), plan_index), max_size=1))
        for _ in range(n)
    ]
    moves = [
        (i, draw(st.one_of(st.none(), st.integers(0, i - 1))), draw(st.integers(1, 2)))
        for i in range(1, n)
        if draw(st.booleans())
    ]
    clients = draw(
        st.lists(
            st.tuples(
                st.sampled_from([n - 1, n - 1]) | st.integers(0, n - 1),  # mostly the bottom
                st.sampled_from(CURRENCIES),
                st.one_of(st.none(), st.tuples(st.integers(0, n - 1), st.integers(1, 2))),
            ),
            min_size=1,
            max_size=3,
        )
    )
    own = draw(st.lists(st.integers(0, n - 1), max_size=1))
    traders = len(clients) + len(own)
    deal_specs = st.tuples(
        st.integers(0, traders - 1),
        st.sampled_from(SYMBOLS),
        st.sampled_from(["1", "0.37", "2.5", "0.01"]),
        st.sampled_from([-701, 0, -70, 150]),
        st.sampled_from([3600, 30, 59]),
        # Minutes after the first midnight: on and around the moments things change.
        st.sampled_from([1440, 2160, 1435, 2155, 0, 1439]) | st.integers(-60, 3 * 1440),
    )
    return {
        "parents": parents,
        "inactive": draw(st.sets(st.integers(0, n - 1), max_size=2)),
        "plans": plans,
        "assignments": assignments,
        "moves": moves,
        "clients": clients,
        "own": own,
        "deals": draw(st.lists(deal_specs, min_size=1, max_size=12)),
        "more_deals": draw(st.lists(deal_specs, max_size=6)),
        # Usually every rate is there; sometimes some are missing until later.
        "rates": draw(st.just(set(RATES)) | st.sets(st.sampled_from(sorted(RATES)))),
        "late_rates": draw(st.sets(st.sampled_from(sorted(RATES)))),
        "markups": draw(st.booleans()),
        "chunk": draw(st.sampled_from([2, 3, 1000])),
    }


class Built:
    def __init__(self, spec: dict) -> None:
        self.base = recently(20).replace(hour=0, minute=0, second=0)
        self.times = {
            0: epoch(),
            1: self.base + timedelta(days=1),
            2: self.base + timedelta(hours=36),
        }
        if spec["markups"]:
            for symbol, markup in MARKUPS.items():
                Instrument.objects.filter(symbol=symbol).update(spread_markup=Decimal(markup))
        self.plans = [self._plan(p) for p in spec["plans"]]
        self.partners: list[Partner] = []
        for parent in spec["parents"]:
            above = self.partners[parent] if parent is not None else None
            self.partners.append(make_partner(parent=above))
        PlanAssignment.objects.all().delete()
        for partner, rows in zip(self.partners, spec["assignments"], strict=True):
            for when, plan in rows:
                PlanAssignment.objects.create(
                    partner=partner, plan=self.plans[plan], since=self.times[when]
                )
        for index in spec["inactive"]:
            Partner.objects.filter(pk=self.partners[index].pk).update(status=Partner.SUSPENDED)
        for index, old, when in spec["moves"]:
            partner = self.partners[index]
            PartnerMove.objects.create(
                partner=partner,
                old_parent=self.partners[old] if old is not None else None,
                new_parent_id=Partner.objects.get(pk=partner.pk).parent_partner_id,
                at=self.times[when],
            )
        self.accounts = []
        for partner_index, (currency, digits), moved in spec["clients"]:
            user = TraderFactory()
            referral = Referral.objects.create(
                client=user,
                partner=self.partners[partner_index],
                source=Referral.STAFF,
                since=self.times[0],
            )
            if moved is not None:
                to, when = moved
                referral.until = self.times[when]
                referral.save()
                Referral.objects.create(
                    client=user,
                    partner=self.partners[to],
                    source=Referral.STAFF,
                    since=self.times[when],
                )
            self.accounts.append(account(user, currency=currency, digits=digits))
        for index in spec["own"]:
            self.accounts.append(account(self.partners[index].user))
        for pair in spec["rates"]:
            set_rate(pair)

    def _plan(self, p: dict):
        rule_list = [{"instrument_group": "", **_decimals(p["any_rule"])}]
        if p["fx_rule"] is not None:
            rule_list.append({"instrument_group": "fx_majors", **_decimals(p["fx_rule"])})
        plan = plan_create(
            name=f"P {uuid.uuid4().hex[:12]}",
            currency=p["currency"],
            rules=rule_list,
            tier_model="rate_difference" if p["rate_difference"] else "fixed_shares",
            tier_shares="" if p["rate_difference"] else p["tier_shares"],
            min_hold_seconds=p["min_hold_seconds"],
            allow_own_trading=p["allow_own_trading"],
            cap_per_deal=_decimal(p["cap_per_deal"]),
            cap_per_period=_decimal(p["cap_per_period"]),
            cap_period=p["cap_period"],
            effective_from=epoch(),
        )
        if p["second_version"] is not None:
            when, change = p["second_version"]
            terms = copy.deepcopy(plan.versions.get().terms)
            for rule in terms["rules"].values():
                rule["rebate_per_lot"] = str(Decimal(rule["rebate_per_lot"]) + change)
            terms["min_hold_seconds"] = 0
            PlanVersion.objects.create(
                plan=plan, effective_from=self.times[when] - timedelta(minutes=5), terms=terms
            )
        return plan

    def deals(self, specs) -> None:
        for trader, symbol, lots, commission, held, minutes in specs:
            deal(
                self.accounts[trader],
                symbol=symbol,
                lots=lots,
                commission=commission,
                held=timedelta(seconds=held),
                closed=self.base + timedelta(minutes=minutes),
            )


def _decimal(value):
    return None if value is None else Decimal(value)


def _decimals(rule: dict) -> dict:
    return {k: Decimal(v) for k, v in rule.items()}


def set_rate(pair: str) -> None:
    base, quote, rate = RATES[pair]
    rate_set_manual(actor=None, base=base, quote=quote, rate=Decimal(rate))


def stored() -> list[tuple]:
    return sorted(
        Commission.objects.filter(kind=Commission.DEAL).values_list(
            "deal_id",
            "partner_id",
            "client_id",
            "plan_version_id",
            "level",
            "instrument_group",
            "lots",
            "rebate",
            "share",
            "basis",
            "tier_percent",
            "capped",
            "amount",
            "currency_id",
            "earned_at",
        )
    )


def expected(rows) -> list[tuple]:
    return sorted(
        (
            r.deal_id,
            r.partner_id,
            r.client_id,
            r.plan_version_id,
            r.level,
            r.instrument_group,
            r.lots,
            r.rebate,
            r.share,
            r.basis,
            None if r.tier_percent is None else r.tier_percent.quantize(Decimal("0.001")),
            r.capped,
            r.amount,
            r.currency,
            r.earned_at,
        )
        for r in rows
    )


def deal_range() -> tuple[int, int]:
    ids = Deal.objects.aggregate(lo=Min("id"), hi=Max("id"))
    return ids["lo"], ids["hi"]


def compare_once() -> None:
    before = stored()
    first, last = deal_range()
    oracle = reference.compute(first_deal_id=first, last_deal_id=last)
    result = accrual_run(first_deal_id=first, last_deal_id=last)
    from hypothesis import event

    event(f"rows>0: {bool(oracle.rows)}")
    event(f"skipped: {bool(oracle.skipped_no_rate)}")
    event(f"capped: {any(r.capped for r in oracle.rows)}")
    event(f"rd basis: {any(r.basis for r in oracle.rows)}")
    event(f"levels: {max((r.level for r in oracle.rows), default=0)}")
    event(f"non-USD: {any(r.currency != 'USD' for r in oracle.rows)}")
    assert stored() == sorted(before + expected(oracle.rows))
    assert (result.commissions, result.skipped_no_rate, result.deals) == (
        len(oracle.rows),
        oracle.skipped_no_rate,
        oracle.deals,
    )


class Rollback(Exception):
    pass


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("compares the PostgreSQL engine with the reference")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=worlds())
def test_the_postgresql_engine_writes_what_the_reference_computes(postgresql, spec):
    chunk = reference.CHUNK
    reference.CHUNK = spec["chunk"]
    try:
        with transaction.atomic():
            world = Built(spec)
            world.deals(spec["deals"])
            compare_once()
            world.deals(spec["more_deals"])
            for pair in spec["late_rates"]:
                set_rate(pair)
            compare_once()
            compare_once()  # a third time: nothing new
            raise Rollback
    except Rollback:
        pass
    finally:
        reference.CHUNK = chunk


# --- Never more than the plan allows ------------------------------------------------------

chain_specs = st.fixed_dictionaries(
    {
        "rate_difference": st.booleans(),
        "tier_shares": st.sampled_from(SHARES),
        "rates": st.lists(st.sampled_from(["0", "2", "4.5", "7", "10"]), min_size=1, max_size=5),
        "commission_share": st.sampled_from(["0", "30", "100"]),
        "spread_share": st.sampled_from(["0", "50"]),
        "cap_per_deal": st.sampled_from([None, "1", "6.5"]),
        "cap_per_period": st.sampled_from([None, "9", "30"]),
        "cap_period": st.sampled_from(["day", "week"]),
        "inactive": st.sets(st.integers(0, 4), max_size=2),
        "deals": st.lists(
            st.tuples(
                st.sampled_from(["0.01", "0.3", "1", "4"]),
                st.sampled_from([0, -35, -700]),
                st.integers(0, 2 * 1440),
            ),
            min_size=1,
            max_size=10,
        ),
    }
)


def pool(rate: Decimal, spec, lots: Decimal, commission: int) -> Decimal:
    """The plan's amount for one deal in USD (EURUSD, markup 12 points)."""
    spread = lots * 100_000 * 12 * Decimal("0.00001")
    charged = Decimal(max(-commission, 0)) / 100
    return (
        rate * lots
        + Decimal(spec["commission_share"]) / 100 * charged
        + Decimal(spec["spread_share"]) / 100 * spread
    )


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=chain_specs)
def test_a_deal_never_pays_more_than_the_plan_allows(spec):
    try:
        with transaction.atomic():
            check_bounds(spec)
            raise Rollback
    except Rollback:
        pass


def check_bounds(spec) -> None:
    Instrument.objects.filter(symbol="EURUSD").update(spread_markup=Decimal("12"))
    rates = [Decimal(r) for r in spec["rates"]]
    if spec["rate_difference"]:
        rates = sorted(rates, reverse=True)  # top first: a rate no higher than its parent's
    plans = [
        plan_create(
            name=f"B {uuid.uuid4().hex[:12]}",
            rules=[
                {
                    "instrument_group": "",
                    "rebate_per_lot": rate,
                    "commission_share": Decimal(spec["commission_share"]),
                    "spread_share": Decimal(spec["spread_share"]),
                }
            ],
            tier_model="rate_difference" if spec["rate_difference"] else "fixed_shares",
            tier_shares="" if spec["rate_difference"] else spec["tier_shares"],
            cap_per_deal=_decimal(spec["cap_per_deal"]),
            cap_per_period=_decimal(spec["cap_per_period"]),
            cap_period=spec["cap_period"],
            effective_from=epoch(),
        )
        for rate in rates
    ]
    partners: list[Partner] = []
    for plan in plans:
        partners.append(make_partner(parent=partners[-1] if partners else None))
        PlanAssignment.objects.filter(partner=partners[-1]).delete()
        PlanAssignment.objects.create(partner=partners[-1], plan=plan, since=epoch())
    for index in spec["inactive"]:
        if index < len(partners):
            Partner.objects.filter(pk=partners[index].pk).update(status=Partner.SUSPENDED)
    user = TraderFactory()
    Referral.objects.create(client=user, partner=partners[-1], source=Referral.STAFF, since=epoch())
    acct = account(user)
    base = recently(10).replace(hour=0, minute=0, second=0)
    deals = [
        deal(
            acct,
            lots=lots,
            commission=commission,
            closed=base + timedelta(minutes=minutes),
        )
        for lots, commission, minutes in spec["deals"]
    ]
    first, last = deal_range()
    accrual_run(first_deal_id=first, last_deal_id=last)

    governing = spec  # the bottom partner's plan governs; its terms are the spec's
    by_deal = defaultdict(list)
    for row in Commission.objects.filter(kind=Commission.DEAL):
        assert row.amount >= 0
        by_deal[row.deal_id].append(row)
    for d in deals:
        total = sum(r.amount for r in by_deal[d.pk])
        own_pool = pool(rates[-1], spec, d.volume, d.commission)
        if spec["rate_difference"]:
            allowed = max(pool(r, spec, d.volume, d.commission) for r in rates)
        else:
            shares = sum((Decimal(s) for s in spec["tier_shares"].split(",")), Decimal(0))
            allowed = own_pool * shares / 100
            assert total <= (own_pool * 100).to_integral_value(ROUND_FLOOR)
        assert total <= (allowed * 100).to_integral_value(ROUND_FLOOR)
        if governing["cap_per_deal"] is not None:
            assert total <= Decimal(governing["cap_per_deal"]) * 100
    if spec["cap_per_period"] is not None:
        per_period = defaultdict(int)
        for row in Commission.objects.filter(kind=Commission.DEAL):
            per_period[row.partner_id, period_start(row.earned_at, spec["cap_period"])] += (
                row.amount
            )
        assert all(v <= Decimal(spec["cap_per_period"]) * 100 for v in per_period.values())
