"""Trading commission accrual (ib.services.accrual): the arithmetic of every
plan type, tiers, caps, hold time, own trading, history (plan versions,
partner and client moves), currencies and idempotency.

Deals are written straight into the deal table here (the arithmetic is the
point); ``test_accrual_flow.py`` goes through ``deals_ingest``, the event and
the task. Every test runs on the engine of the database at hand: the
set-based one on PostgreSQL, the deal-by-deal reference on SQLite.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Max, Min
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AccountType, Deal, Instrument, Platform, TradingAccount
from ib.models import AccrualRun, Commission, Partner, PlanAssignment
from ib.services import client_move, partner_move, partner_suspend
from ib.services.accrual import accrual_run
from ib.services.plans import plan_version_record
from payments.services.rates import rate_set_manual
from tests.factories import TraderFactory
from tests.ib.factories import make_partner, make_plan, refer

pytestmark = pytest.mark.django_db

#: What one run asks on PostgreSQL, whatever its number of deals (the savepoint,
#: the lock, the run's row, reading the tree and plans, temporary tables, one
#: statement per chunk).
QUERIES = 31

_tickets = itertools.count(1)
_logins = itertools.count(900_000)


def epoch() -> datetime:
    """When the test's plans and assignments start: long before its deals."""
    return (timezone.now() - timedelta(days=400)).replace(microsecond=0)


def recently(days: int = 5) -> datetime:
    return (timezone.now() - timedelta(days=days)).replace(microsecond=0)


def plan(rebate: str = "10", **fields):
    """A plan in force since :func:`epoch` (fixed shares 100 % unless told)."""
    fields.setdefault("effective_from", epoch())
    return make_plan(rebate=rebate, **fields)


def backdate() -> None:
    """Every plan assignment so far holds from :func:`epoch` (services only
    assign from now on; the deals of these tests closed days ago)."""
    PlanAssignment.objects.update(since=epoch())


def chain(*plans) -> list[Partner]:
    """Partners top → bottom, each on its plan (assigned since epoch)."""
    partners: list[Partner] = []
    for p in plans:
        partners.append(make_partner(parent=partners[-1] if partners else None, plan=p))
    backdate()
    return partners


def client_of(partner: Partner, *, currency: str = "USD", digits: int = 2):
    """A trader referred to ``partner`` since epoch, and a trading account."""
    user = TraderFactory()
    refer(user, partner, since=epoch())
    return account(user, currency=currency, digits=digits)


def account(user, *, currency: str = "USD", digits: int = 2) -> TradingAccount:
    platform = Platform.objects.get(identifier="demo")
    account_type, _ = AccountType.objects.get_or_create(
        platform=platform,
        name=f"Accrual {currency}",
        defaults={
            "currency": currency,
            "currency_digits": digits,
            "leverage_choices": [100],
            "platform_group": f"test\\{currency}",
        },
    )
    return TradingAccount.objects.create(
        user=user,
        platform=platform,
        account_type=account_type,
        login=str(next(_logins)),
        currency=currency,
        currency_digits=digits,
        leverage=100,
    )


def deal(
    acct: TradingAccount,
    *,
    symbol: str = "EURUSD",
    lots: str = "1",
    closed: datetime | None = None,
    held: timedelta = timedelta(hours=1),
    commission: int = 0,
) -> Deal:
    closed = closed or recently()
    return Deal.objects.create(
        platform_id=acct.platform_id,
        ticket=next(_tickets),
        account=acct,
        client_id=acct.user_id,
        symbol=symbol,
        side=Deal.BUY,
        volume=Decimal(lots),
        open_time=closed - held,
        close_time=closed,
        open_price=Decimal("1.1"),
        close_price=Decimal("1.1"),
        profit=0,
        commission=commission,
    )


def accrue(**kwargs):
    ids = Deal.objects.aggregate(lo=Min("id"), hi=Max("id"))
    return accrual_run(first_deal_id=ids["lo"], last_deal_id=ids["hi"], **kwargs)


def paid(d: Deal | None = None) -> dict[int, int]:
    """{partner id: amount} of the deal rows (of one deal)."""
    rows = Commission.objects.filter(kind=Commission.DEAL)
    if d is not None:
        rows = rows.filter(deal_id=d.pk)
    return {r.partner_id: r.amount for r in rows}


def row(d: Deal, partner: Partner) -> Commission:
    return Commission.objects.get(kind=Commission.DEAL, deal_id=d.pk, partner=partner)


def usd_rule(**parts) -> list[dict]:
    return [{"instrument_group": "", **{k: Decimal(v) for k, v in parts.items()}}]


# --- One partner, one plan: the parts of the amount ----------------------------------


def test_rebate_per_lot():
    governing = plan("10")
    (p,) = chain(governing)
    d = deal(client_of(p), lots="2.5")
    result = accrue()
    r = row(d, p)
    assert (r.amount, r.rebate, r.share, r.level, r.currency_id) == (2500, 2500, 0, 1, "USD")
    assert (r.tier_percent, r.capped, r.basis) == (Decimal("100"), False, 0)
    assert r.instrument_group == "fx_majors" and r.lots == Decimal("2.5")
    assert r.earned_at == d.close_time and r.client_id == d.client_id
    assert r.plan_version_id == governing.versions.get().pk
    assert (result.deals, result.commissions, result.skipped_no_rate) == (1, 1, 0)
    run = AccrualRun.objects.get(pk=result.run_id)
    assert (run.deals, run.commissions) == (1, 1) and run.finished_at and run.seconds >= 0


def test_demo_accounts_earn_nothing():
    (p,) = chain(plan("10"))
    live = client_of(p)
    demo = account(live.user)
    TradingAccount.objects.filter(pk=demo.pk).update(is_demo=True)
    demo.refresh_from_db()
    on_live, on_demo = deal(live), deal(demo, lots="50")
    accrue()
    assert paid(on_live) == {p.pk: 1000}
    assert paid(on_demo) == {}


def test_commission_share_counts_only_what_the_client_was_charged():
    (p,) = chain(plan(rules=usd_rule(commission_share="50")))
    acct = client_of(p)
    charged = deal(acct, commission=-701)  # 7.01 USD charged
    refunded = deal(acct, commission=300)
    accrue()
    r = row(charged, p)
    assert (r.amount, r.rebate, r.share) == (350, 0, 350)  # 3.505 rounded down
    assert paid(refunded) == {}


def test_spread_share():
    Instrument.objects.filter(symbol="EURUSD").update(spread_markup=Decimal("12"))
    (p,) = chain(plan(rules=usd_rule(spread_share="25")))
    d = deal(client_of(p), lots="2")
    accrue()
    # 2 lots x 100,000 x 12 points x 10^-5 = 24 USD of spread; 25 % = 6 USD.
    assert (row(d, p).amount, row(d, p).share) == (600, 600)


def test_rebate_commission_and_spread_together():
    Instrument.objects.filter(symbol="XAUUSD").update(spread_markup=Decimal("30"))
    rules = usd_rule(rebate_per_lot="2.5", commission_share="40", spread_share="10")
    (p,) = chain(plan(rules=rules))
    d = deal(client_of(p), symbol="XAUUSD", lots="0.5", commission=-350)
    accrue()
    # rebate 1.25; commission 40 % of 3.50 = 1.40; spread 0.5 x 100 x 30 x 0.01 = 15, 10 % = 1.50
    r = row(d, p)
    assert (r.rebate, r.share, r.amount, r.instrument_group) == (125, 290, 415, "metals")


def test_instrument_group_rule_before_the_rule_for_any_group():
    rules = [
        {"instrument_group": "fx_majors", "rebate_per_lot": Decimal("10")},
        {"instrument_group": "", "rebate_per_lot": Decimal("2")},
    ]
    (p,) = chain(plan(rules=rules))
    acct = client_of(p)
    fx, gold, unknown = deal(acct), deal(acct, symbol="XAUUSD"), deal(acct, symbol="NOSUCH")
    accrue()
    assert (paid(fx), paid(gold), paid(unknown)) == ({p.pk: 1000}, {p.pk: 200}, {p.pk: 200})
    assert row(unknown, p).instrument_group == ""


def test_no_rule_for_the_group_earns_nothing():
    (p,) = chain(plan(rules=[{"instrument_group": "metals", "rebate_per_lot": Decimal("5")}]))
    d = deal(client_of(p))
    accrue()
    assert paid(d) == {}


# --- Tiers ---------------------------------------------------------------------------


def test_fixed_shares_seventy_twenty_ten_and_the_fourth_earns_nothing():
    p = plan("10", tier_shares="70, 20, 10")
    top, second, third, bottom = chain(p, p, p, p)
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 700, third.pk: 200, second.pk: 100}
    assert [row(d, x).level for x in (bottom, third, second)] == [1, 2, 3]
    assert row(d, third).tier_percent == Decimal("20")
    assert row(d, third).plan_version_id == p.versions.get().pk  # the governing version


def test_fixed_shares_follow_the_governing_plan_not_the_partners_own():
    governing = plan("10", tier_shares="60, 40")
    other = plan("50", tier_shares="100")
    top, bottom = chain(other, governing)
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 600, top.pk: 400}


def rate_difference_plan(rate: str):
    return plan(rate, tier_model="rate_difference", tier_shares="")


def test_rate_difference_ten_eight_five():
    plans = [rate_difference_plan(r) for r in ("10", "8", "5")]
    top, middle, bottom = chain(*plans)
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 500, middle.pk: 300, top.pk: 200}
    r = row(d, top)
    assert (r.basis, r.rebate, r.level, r.tier_percent) == (800, 1000, 3, None)
    assert r.plan_version_id == plans[0].versions.get().pk  # the partner's own version


def test_rate_difference_parent_below_its_child_earns_nothing():
    low, high = rate_difference_plan("4"), rate_difference_plan("8")
    top = make_partner()
    bottom = make_partner(parent=top)
    # Set up around the ceiling check, as an old assignment would be.
    PlanAssignment.objects.create(partner=top, plan=low, since=epoch())
    PlanAssignment.objects.create(partner=bottom, plan=high, since=epoch())
    grand = make_partner()
    partner_move(actor=None, partner=top, new_parent=grand)
    PlanAssignment.objects.create(partner=grand, plan=rate_difference_plan("9"), since=epoch())
    from ib.models import PartnerMove

    PartnerMove.objects.update(at=epoch())
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 800, grand.pk: 100}  # top: 4 - 8 < 0


def test_rate_difference_partner_without_a_plan_has_rate_zero():
    top, middle, bottom = chain(rate_difference_plan("10"), None, rate_difference_plan("6"))
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 600, top.pk: 400}


# --- Anti-abuse, status --------------------------------------------------------------


def test_minimum_hold_time():
    (p,) = chain(plan("10", min_hold_seconds=60))
    acct = client_of(p)
    short, enough = deal(acct, held=timedelta(seconds=59)), deal(acct, held=timedelta(seconds=60))
    accrue()
    assert paid(short) == {} and paid(enough) == {p.pk: 1000}


def test_minimum_hold_time_of_the_governing_plan_stops_every_level():
    top, bottom = chain(plan("10"), plan("10", tier_shares="50, 50", min_hold_seconds=300))
    d = deal(client_of(bottom), held=timedelta(seconds=299))
    accrue()
    assert paid(d) == {}


@pytest.mark.parametrize("allowed", [False, True])
def test_own_trading(allowed):
    p = plan("10", tier_shares="70, 30", allow_own_trading=allowed)
    top, bottom = chain(p, p)
    own = deal(account(bottom.user))
    accrue()
    expected = {bottom.pk: 700, top.pk: 300} if allowed else {top.pk: 300}
    assert paid(own) == expected


def test_own_trading_starts_the_chain_even_when_the_partner_was_referred():
    p = plan("10", tier_shares="70, 30", allow_own_trading=True)
    top, bottom = chain(p, p)
    elsewhere = make_partner(plan=p)
    backdate()
    refer(bottom.user, elsewhere, since=epoch())
    d = deal(account(bottom.user))
    accrue()
    assert paid(d) == {bottom.pk: 700, top.pk: 300}


def test_inactive_partner_in_the_middle_earns_nothing_and_the_chain_goes_on():
    p = plan("10", tier_shares="70, 20, 10")
    top, middle, bottom = chain(p, p, p)
    partner_suspend(actor=None, partner=middle, reason="checks")
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 700, top.pk: 100}


def test_inactive_partner_rate_still_counts_as_the_one_below():
    top, middle, bottom = chain(*(rate_difference_plan(r) for r in ("10", "8", "5")))
    partner_suspend(actor=None, partner=middle, reason="checks")
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 500, top.pk: 200}


# --- Caps ----------------------------------------------------------------------------


def test_cap_per_deal_pays_from_level_one_upward():
    p = plan("10", tier_shares="70, 20, 10", cap_per_deal=Decimal("8"))
    top, middle, bottom = chain(p, p, p)
    d = deal(client_of(bottom))
    accrue()
    assert paid(d) == {bottom.pk: 700, middle.pk: 100, top.pk: 0}
    assert [row(d, x).capped for x in (bottom, middle, top)] == [False, True, True]


def test_cap_per_period_resets_at_the_day_boundary():
    p = plan("10", cap_per_period=Decimal("15"), cap_period="day")
    (partner,) = chain(p)
    acct = client_of(partner)
    day = recently(10).replace(hour=0, minute=0, second=0)
    first = deal(acct, closed=day + timedelta(hours=23))
    second = deal(acct, closed=day + timedelta(hours=23, minutes=30))
    third = deal(acct, closed=day + timedelta(hours=23, minutes=50))
    next_day = deal(acct, closed=day + timedelta(days=1, minutes=10))
    accrue()
    assert [paid(d)[partner.pk] for d in (first, second, third, next_day)] == [1000, 500, 0, 1000]
    assert [row(d, partner).capped for d in (first, second, third, next_day)] == [
        False,
        True,
        True,
        False,
    ]


def test_cap_per_period_counts_what_earlier_runs_recorded():
    p = plan("10", cap_per_period=Decimal("25"), cap_period="month")
    (partner,) = chain(p)
    acct = client_of(partner)
    month = recently(40).replace(day=3)
    deal(acct, closed=month)
    deal(acct, closed=month + timedelta(days=1))
    accrue()
    later = deal(acct, closed=month + timedelta(days=2))
    accrue()
    assert paid(later) == {partner.pk: 500}
    again = accrue()  # nothing new, and nothing counted twice
    assert again.commissions == 0 and paid(later) == {partner.pk: 500}


def test_cap_per_period_is_each_partners_own():
    capped = plan("10", cap_per_period=Decimal("5"), cap_period="week")
    governing = plan("10", tier_shares="50, 50")
    top, bottom = chain(capped, governing)
    d1, d2 = deal(client_of(bottom)), deal(client_of(bottom))
    accrue()
    assert paid(d1) == {bottom.pk: 500, top.pk: 500}
    assert paid(d2) == {bottom.pk: 500, top.pk: 0} and row(d2, top).capped


# --- Currencies ----------------------------------------------------------------------


def test_plan_in_euros_on_a_dollar_account():
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.25"))
    (p,) = chain(plan(currency="EUR", rules=usd_rule(rebate_per_lot="2", commission_share="100")))
    d = deal(client_of(p), commission=-701)
    accrue()
    r = row(d, p)
    # rebate 2 EUR; 7.01 USD x 0.8 = 5.608 EUR -> 5.60
    assert (r.currency_id, r.rebate, r.share, r.amount) == ("EUR", 200, 560, 760)


def test_yen_has_no_minor_unit():
    rate_set_manual(actor=None, base="USD", quote="JPY", rate=Decimal("150"))
    (p,) = chain(plan(currency="JPY", rules=usd_rule(commission_share="100")))
    d = deal(client_of(p), commission=-333)  # 3.33 USD x 150 = 499.5 JPY
    yen_account = client_of(p, currency="JPY", digits=0)
    in_yen = deal(yen_account, commission=-1234)
    accrue()
    assert (row(d, p).amount, row(d, p).currency_id) == (499, "JPY")
    assert row(in_yen, p).amount == 1234


def test_dollar_plan_on_a_yen_account():
    rate_set_manual(actor=None, base="USD", quote="JPY", rate=Decimal("150"))
    (p,) = chain(plan(rules=usd_rule(commission_share="100")))
    d = deal(client_of(p, currency="JPY", digits=0), commission=-1500)
    accrue()
    assert row(d, p).amount == 1000  # 1,500 JPY = 10 USD


def test_rate_difference_across_currencies_compares_in_the_governing_currency():
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.2"))
    top = make_partner()
    bottom = make_partner(parent=top)
    PlanAssignment.objects.create(
        partner=top, plan=plan("10", currency="EUR", tier_model="rate_difference"), since=epoch()
    )
    PlanAssignment.objects.create(
        partner=bottom, plan=rate_difference_plan("5"), since=epoch()
    )  # USD
    d = deal(client_of(bottom))
    accrue()
    # top's 10 EUR is 12 USD in the bottom's (governing) currency: 12 - 5 = 7 USD.
    assert paid(d) == {bottom.pk: 500, top.pk: 700}
    assert row(d, top).currency_id == "USD" and row(d, top).rebate == 1200


def test_missing_rate_leaves_the_deal_for_a_later_run():
    (p,) = chain(plan(currency="EUR", rules=usd_rule(commission_share="100")))
    acct = client_of(p)
    waiting, free = deal(acct, commission=-500), deal(acct, commission=0)
    result = accrue()
    assert result.skipped_no_rate == 1
    assert paid(waiting) == {} and paid(free) == {}
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.25"))
    later = accrue()
    assert later.skipped_no_rate == 0
    assert paid(waiting) == {p.pk: 400}


# --- History -------------------------------------------------------------------------


def test_plan_change_applies_to_deals_closed_after_it():
    p = plan("10")
    (partner,) = chain(p)
    acct = client_of(partner)
    change = timezone.now() + timedelta(hours=1)
    rule = p.rules.get()
    rule.rebate_per_lot = Decimal("4")
    rule.save()
    new = plan_version_record(plan=p, effective_from=change)
    before = deal(acct, closed=change - timedelta(seconds=1))
    after = deal(acct, closed=change)
    accrue()  # runs later than both closes would allow for: by the deals' times
    assert paid(before) == {partner.pk: 1000} and paid(after) == {partner.pk: 400}
    assert row(after, partner).plan_version_id == new.pk
    assert row(before, partner).plan_version_id != new.pk


def test_partner_move_pays_the_old_chain_for_deals_closed_before():
    p = plan("10", tier_shares="50, 50")
    old_parent, child = chain(p, p)
    new_parent = make_partner(plan=p)
    backdate()
    acct = client_of(child)
    before = deal(acct, closed=recently(1))
    partner_move(actor=None, partner=child, new_parent=new_parent)
    after = deal(acct, closed=timezone.now() + timedelta(minutes=5))
    accrue()
    assert paid(before) == {child.pk: 500, old_parent.pk: 500}
    assert paid(after) == {child.pk: 500, new_parent.pk: 500}


def test_move_of_a_partner_higher_up_changes_the_chain_below():
    p = plan("10", tier_shares="40, 30, 30")
    top, middle, bottom = chain(p, p, p)
    other = make_partner(plan=p)
    backdate()
    acct = client_of(bottom)
    before = deal(acct, closed=recently(1))
    partner_move(actor=None, partner=middle, new_parent=other)
    after = deal(acct, closed=timezone.now() + timedelta(minutes=5))
    accrue()
    assert paid(before) == {bottom.pk: 400, middle.pk: 300, top.pk: 300}
    assert paid(after) == {bottom.pk: 400, middle.pk: 300, other.pk: 300}


def test_client_move():
    p = plan("10")
    a, b = make_partner(plan=p), make_partner(plan=p)
    backdate()
    acct = client_of(a)
    before = deal(acct, closed=recently(1))
    client_move(actor=None, client=acct.user, partner=b)
    after = deal(acct, closed=timezone.now() + timedelta(minutes=5))
    accrue()
    assert paid(before) == {a.pk: 1000} and paid(after) == {b.pk: 1000}


def test_client_without_a_partner_at_the_close_earns_nobody_anything():
    (p,) = chain(plan("10"))
    user = TraderFactory()
    refer(user, p, since=recently(2))
    acct = account(user)
    before = deal(acct, closed=recently(3))
    accrue()
    assert paid(before) == {}


# --- Once ----------------------------------------------------------------------------


def test_a_rerun_writes_nothing_new():
    p = plan("10", tier_shares="70, 30")
    top, bottom = chain(p, p)
    acct = client_of(bottom)
    deals = [deal(acct, lots=str(n)) for n in range(1, 4)]
    first = accrue()
    rows = sorted(Commission.objects.values_list("deal_id", "partner_id", "amount"))
    second = accrue()
    assert (first.commissions, second.commissions) == (6, 0)
    assert sorted(Commission.objects.values_list("deal_id", "partner_id", "amount")) == rows
    assert AccrualRun.objects.count() == 2
    assert len(deals) == 3


def test_only_the_platform_asked_for():
    (p,) = chain(plan("10"))
    acct = client_of(p)
    other = Platform.objects.create(identifier="other", kind="demo", name="Other")
    d = deal(acct)
    result = accrue(platform_id=other.pk)
    assert (result.deals, result.commissions, paid(d)) == (0, 0, {})
    assert accrue(platform_id=acct.platform_id).commissions == 1


def test_range_is_checked():
    with pytest.raises(ValueError):
        accrual_run(first_deal_id=10, last_deal_id=9)


# --- Set-based on PostgreSQL ---------------------------------------------------------


def test_the_postgresql_engine_asks_as_many_queries_for_fifty_deals_as_for_one():
    if connection.vendor != "postgresql":
        pytest.skip("the deal-by-deal reference engine runs on SQLite")
    p = plan("10", tier_shares="70, 30", cap_per_period=Decimal("1000"), cap_period="day")
    top, bottom = chain(p, rate_difference_plan("5"))
    acct = client_of(bottom)
    deal(acct)
    with CaptureQueriesContext(connection) as one:
        accrue()
    for n in range(50):
        deal(acct, closed=recently(2) + timedelta(minutes=n))
    with CaptureQueriesContext(connection) as fifty:
        accrue()
    assert len(fifty) == len(one) == QUERIES, [q["sql"][:60] for q in fifty]
