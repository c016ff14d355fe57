"""Revenue share: the broker's net result on a partner's direct clients per
period, a share of it paid, losses carried forward only when the plan says
so, each period settled once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from ib.models import Commission, Partner, PlanAssignment, PlanVersion
from ib.services.revshare import period_bounds, revshare_settle
from tests.factories import TraderFactory
from tests.ib.factories import make_partner, make_plan, refer

from .money_helpers import account_of, deal, set_rate

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def at(month: int, day: int = 10, hour: int = 12) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


def backdate(partner: Partner, when: datetime = T0) -> Partner:
    """The partner (and their plan) as if approved at ``when``."""
    Partner.objects.filter(pk=partner.pk).update(approved_at=when, created_at=when)
    PlanAssignment.objects.filter(partner=partner).update(since=when)
    partner = Partner.objects.get(pk=partner.pk)
    PlanVersion.objects.filter(plan_id=partner.plan_id).update(effective_from=when)
    return partner


def sharing_partner(*, parent=None, **plan_fields) -> Partner:
    plan_fields.setdefault("revshare_percent", Decimal("25"))
    return backdate(make_partner(parent=parent, plan=make_plan(**plan_fields)))


def client_account(partner: Partner, *, since: datetime = T0 - timedelta(days=1)):
    client = TraderFactory()
    refer(client, partner, since=since)
    return account_of(client)


def rows(partner: Partner) -> list[tuple]:
    return list(
        Commission.objects.filter(partner=partner, kind=Commission.REVSHARE)
        .order_by("period_start")
        .values_list("period_start", "basis", "share", "amount")
    )


def four_months(account) -> None:
    """Broker's result: Jan +1,007.00, Feb −2,000.00, Mar +1,000.00, Apr +2,000.00."""
    deal(account, close_time=at(1), profit=-100000, commission=-700)
    deal(account, close_time=at(2), profit=150000, swap=50000)
    deal(account, close_time=at(3), profit=-100000)
    deal(account, close_time=at(4, 30, 23), profit=-200000)


def test_each_period_pays_its_share_and_a_losing_one_pays_nothing():
    partner = sharing_partner()
    four_months(client_account(partner))
    result = revshare_settle(period_end=date(2025, 4, 30))
    assert result.rows == 4 and result.paid == 3
    assert rows(partner) == [
        (date(2025, 1, 1), 100700, 25175, 25175),
        (date(2025, 2, 1), -200000, -50000, 0),
        (date(2025, 3, 1), 100000, 25000, 25000),  # the loss of February is not carried
        (date(2025, 4, 1), 200000, 50000, 50000),
    ]
    april = Commission.objects.get(partner=partner, period_start=date(2025, 4, 1))
    assert april.earned_at == datetime(2025, 5, 1, tzinfo=UTC)
    assert (april.currency_id, april.client_id, april.deal_id, april.level) == (
        "USD",
        None,
        None,
        1,
    )


def test_a_loss_is_carried_forward_when_the_plan_says_so():
    partner = sharing_partner(revshare_carry_negative=True)
    four_months(client_account(partner))
    revshare_settle(period_end=date(2025, 2, 28))
    revshare_settle(period_end=date(2025, 3, 31))  # the carry is read back from the rows
    revshare_settle(period_end=date(2025, 4, 30))
    assert rows(partner) == [
        (date(2025, 1, 1), 100700, 25175, 25175),
        (date(2025, 2, 1), -200000, -50000, 0),
        (date(2025, 3, 1), 100000, 25000, 0),  # −500 + 250: −250 still carried
        (date(2025, 4, 1), 200000, 50000, 25000),  # 500 − 250
    ]


def test_a_period_is_settled_once_and_only_when_it_has_ended():
    partner = sharing_partner()
    account = client_account(partner)
    deal(account, close_time=at(1), profit=-40000)
    assert revshare_settle(period_end=date(2025, 1, 30)).rows == 0  # January not over
    assert revshare_settle(period_end=date(2025, 1, 31)).rows == 1
    deal(account, close_time=at(1, 20), profit=-40000)  # imported late: not paid again
    assert revshare_settle(period_end=date(2025, 1, 31)).rows == 0
    assert revshare_settle(period_end=date(2025, 3, 31)).rows == 2  # February, March (0)
    assert [r[3] for r in rows(partner)] == [10000, 0, 0]
    assert Commission.objects.filter(kind=Commission.REVSHARE).count() == 3


def test_only_direct_clients_while_attributed_and_live_accounts_count():
    partner = sharing_partner()
    sub = make_partner(parent=partner)  # no revenue share of its own
    deal(client_account(sub), close_time=at(1), profit=-500000)  # the sub-partner's client
    own = client_account(partner)
    deal(own, close_time=at(1), profit=-10000)
    late = client_account(partner, since=at(1, 15))
    deal(late, close_time=at(1, 14), profit=-700000)  # before the referral
    deal(late, close_time=at(1, 16), profit=-20000)
    demo = TraderFactory()
    refer(demo, partner, since=T0)
    deal(account_of(demo, demo=True), close_time=at(1), profit=-900000)
    revshare_settle(period_end=date(2025, 1, 31))
    assert rows(partner) == [(date(2025, 1, 1), 30000, 7500, 7500)]
    assert rows(sub) == []


def test_the_net_result_is_converted_into_the_plans_currency():
    set_rate("USD", "EUR", "0.9")
    partner = sharing_partner(currency="EUR", revshare_percent=Decimal("10"))
    deal(client_account(partner), close_time=at(1), profit=-123457)  # 1,234.57 USD
    revshare_settle(period_end=date(2025, 1, 31))
    row = Commission.objects.get(partner=partner, kind=Commission.REVSHARE)
    # 1,111.113 EUR rounds down to 1,111.11; 10 % → 111.11.
    assert (row.currency_id, row.basis, row.share, row.amount) == ("EUR", 111111, 11111, 11111)


def test_weekly_periods_start_on_monday():
    partner = sharing_partner(revshare_period="week")
    account = client_account(partner)
    deal(account, close_time=datetime(2025, 1, 12, 23, 59, tzinfo=UTC), profit=-10000)  # Sun
    deal(account, close_time=datetime(2025, 1, 13, 0, 0, tzinfo=UTC), profit=-40000)  # Mon
    revshare_settle(period_end=date(2025, 1, 19))
    # 1 Jan 2025 is a Wednesday: the first week is cut at the partner's start.
    assert [(r[0], r[3]) for r in rows(partner)] == [
        (date(2025, 1, 1), 0),
        (date(2025, 1, 6), 2500),
        (date(2025, 1, 13), 10000),
    ]


def test_inactive_partners_and_plans_without_revenue_share_are_not_settled():
    suspended = sharing_partner()
    Partner.objects.filter(pk=suspended.pk).update(status=Partner.SUSPENDED)
    plain = backdate(make_partner(plan=make_plan()))
    deal(client_account(suspended), close_time=at(1), profit=-10000)
    deal(client_account(plain), close_time=at(1), profit=-10000)
    assert revshare_settle(period_end=date(2025, 1, 31)).rows == 0
    assert not Commission.objects.exists()


@pytest.mark.parametrize(
    ("kind", "day", "bounds"),
    [
        ("day", date(2025, 3, 5), (date(2025, 3, 5), date(2025, 3, 6))),
        ("week", date(2025, 3, 5), (date(2025, 3, 3), date(2025, 3, 10))),
        ("month", date(2025, 12, 31), (date(2025, 12, 1), date(2026, 1, 1))),
        ("month", date(2024, 2, 29), (date(2024, 2, 1), date(2024, 3, 1))),
    ],
)
def test_period_bounds(kind, day, bounds):
    assert period_bounds(kind, day) == bounds
