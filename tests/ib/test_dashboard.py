"""The partner dashboard's overview at /partner/: the figures of the whole
downline (and nothing of anyone else's), the partner's own commissions, the
charts, the cache that follows new activity, empty states and pinned query
counts."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from ib.models import Commission, Referral
from ib.selectors import dashboard
from ib.selectors.dashboard import overview_compute, overview_for
from tests.factories import open_trading_account
from tests.ib.dashboard_helpers import (
    add_deals,
    client_of,
    commission,
    deposit_completed,
    withdrawal_paid,
)
from tests.ib.factories import make_chain, make_partner

pytestmark = pytest.mark.django_db

OVERVIEW = reverse("partner:overview")


def month_start():
    today = timezone.localdate()
    return timezone.make_aware(
        timezone.datetime(today.year, today.month, 1), timezone.get_current_timezone()
    )


@pytest.fixture
def network():
    """top → sub → subsub, and a stranger partner elsewhere."""
    top, sub, subsub = make_chain(3)
    return top, sub, subsub, make_partner()


def test_counts_clients_of_the_whole_downline_and_nobody_else(network):
    top, sub, subsub, stranger = network
    client_of(top)
    client_of(top)
    client_of(sub)
    client_of(subsub)
    client_of(stranger)
    moved = client_of(sub)
    Referral.objects.filter(client=moved).update(until=timezone.now())  # moved away
    figures = overview_compute(top)
    assert (figures.clients_total, figures.clients_direct, figures.sub_partners) == (4, 2, 2)
    middle = overview_compute(sub)
    assert (middle.clients_total, middle.clients_direct, middle.sub_partners) == (2, 1, 1)


def test_volume_and_active_traders_count_deals_since_the_referral(network):
    top, sub, _, stranger = network
    now = timezone.now()
    recent, old_timer, newcomer, outsider = (
        client_of(top, since=now - timedelta(days=400)),
        client_of(sub, since=now - timedelta(days=400)),
        client_of(sub, since=now - timedelta(hours=2)),
        client_of(stranger),
    )
    in_month = max(month_start() + timedelta(seconds=1), now - timedelta(days=1))
    add_deals(recent, [{"volume": "2.5", "close_time": in_month}])
    add_deals(old_timer, [{"volume": "1.25", "close_time": now - timedelta(days=100)}])
    # Before the newcomer joined this network: another partner's business.
    add_deals(newcomer, [{"volume": "7", "close_time": now - timedelta(days=3)}])
    add_deals(newcomer, [{"volume": "0.5", "close_time": now - timedelta(minutes=10)}])
    add_deals(outsider, [{"volume": "100"}])
    figures = overview_compute(top)
    assert figures.lots_total == Decimal("4.25")
    assert figures.lots_month == Decimal("3.0")
    assert figures.active_traders == 2  # recent and newcomer; not the old timer


def test_deposits_and_withdrawals_per_wallet_currency(network):
    top, sub, _, stranger = network
    alice, bob = client_of(top), client_of(sub)
    deposit_completed(alice, "100.00")  # card: 2.5 % + 0.30 → 97.20 credited
    deposit_completed(bob, "200.00")  # 194.70 credited
    deposit_completed(client_of(stranger), "500.00")
    withdrawal_paid(bob, "60.00")
    [usd] = overview_compute(top).flows
    assert (usd.currency, usd.deposits, usd.withdrawals, usd.net) == ("USD", 29190, 6000, 23190)


def test_commissions_today_this_month_and_all_time_per_currency(network):
    top, _, _, stranger = network
    now = timezone.now()
    commission(top, amount=500, earned_at=now - timedelta(minutes=1))
    commission(top, amount=700, earned_at=max(month_start(), now - timedelta(days=1)))
    commission(top, amount=10_000, earned_at=now - timedelta(days=70))
    commission(top, amount=30, currency="EUR", kind=Commission.CPA, client=client_of(top))
    commission(stranger, amount=99_999)
    totals = {c.currency: c for c in overview_compute(top).commissions}
    usd = totals["USD"]
    assert usd.total == 11_200
    assert usd.today in (500, 1200)  # the second is today too just after midnight
    assert usd.month >= 1200 and usd.month < 11_200
    assert (totals["EUR"].today, totals["EUR"].total) == (30, 30)
    assert [c.currency for c in overview_compute(top).commissions] == ["USD", "EUR"]


def test_the_page_shows_the_figures_and_both_charts(client, network):
    top, sub, _, _ = network
    maria = client_of(top, first_name="Maria", last_name="Kowalski")
    [deal] = add_deals(maria, [{"volume": "2.5"}])
    commission(top, amount=2500, deal=deal)
    deposit_completed(maria, "100.00")
    client.force_login(top.user)
    response = client.get(OVERVIEW)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Referred clients" in html and "Active traders" in html
    assert "2.50" in html  # lots
    assert "25.00\u00a0USD" in html  # commission all time
    assert "97.20" in html  # credited deposit
    assert "Your commissions per day, USD" in html
    assert "New clients per week" in html
    assert "Kowalski" not in html and maria.email not in html


def test_the_chart_period_swaps_the_chart_alone_with_htmx(client, network):
    top = network[0]
    commission(top, amount=100)
    client.force_login(top.user)
    response = client.get(OVERVIEW, {"days": "90"}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'id="commission-chart"' in html and "<main" not in html
    assert 'aria-current="true">90 days' in html
    # A value that is not offered falls back to 30 days.
    full = client.get(OVERVIEW, {"days": "7"}).content.decode()
    assert 'aria-current="true">30 days' in full


def test_empty_overview_says_what_to_do(client):
    partner = make_partner()
    client.force_login(partner.user)
    html = client.get(OVERVIEW).content.decode()
    assert "No commissions yet" in html
    assert "No deposits yet" in html
    assert "No clients yet" in html


def test_the_cache_follows_new_commissions_and_sign_ups(client, network):
    top = network[0]
    client.force_login(top.user)
    commission(top, amount=1000)
    assert "10.00\u00a0USD" in client.get(OVERVIEW).content.decode()
    assert overview_for(top).clients_total == 0
    commission(top, amount=234)
    client_of(top)
    assert "12.34\u00a0USD" in client.get(OVERVIEW).content.decode()
    assert overview_for(top).clients_total == 1


def test_new_deals_and_commissions_are_added_to_the_snapshot_not_recomputed(network, monkeypatch):
    top, sub, _, stranger = network
    old_client = client_of(sub)
    [deal] = add_deals(old_client, [{"volume": "1"}])
    commission(top, amount=100, deal=deal)
    first = overview_for(top)
    taken = []
    real_take = dashboard.snapshot_take
    monkeypatch.setattr(dashboard, "snapshot_take", lambda *a, **k: taken.append(1))
    newcomer = client_of(sub)
    fresh = add_deals(newcomer, [{"volume": "0.5"}, {"volume": "0.25"}])
    add_deals(client_of(stranger), [{"volume": "9"}])
    commission(top, amount=50, deal=fresh[0])
    commission(stranger, amount=5000)
    second = overview_for(top)
    assert taken == []
    assert (first.lots_total, second.lots_total) == (Decimal("1"), Decimal("1.75"))
    assert (first.active_traders, second.active_traders) == (1, 2)
    assert [c.total for c in second.commissions] == [150]
    assert second.clients_total == 2
    monkeypatch.setattr(dashboard, "snapshot_take", real_take)
    assert second == overview_compute(top, now=second.computed_at)


def test_a_move_makes_a_new_snapshot_at_once(network):
    from django.contrib.auth.models import Group

    from ib.services import client_move
    from tests.factories import StaffFactory

    top, sub, _, stranger = network
    leaving = client_of(sub)
    add_deals(leaving, [{"volume": "3"}])
    assert overview_for(top).lots_total == Decimal("3")
    staff = StaffFactory()
    staff.groups.add(Group.objects.get(name="Compliance"))
    client_move(actor=staff, client=leaving, partner=stranger)
    moved = overview_for(top)
    assert (moved.lots_total, moved.clients_total) == (Decimal("0"), 0)


def test_an_old_snapshot_is_refreshed_in_the_background(
    network, django_capture_on_commit_callbacks
):
    top = network[0]
    overview_for(top)
    snap = cache.get(dashboard._snapshot_key(top.pk))
    snap.taken_at -= timedelta(seconds=dashboard.SNAPSHOT_FRESH + 5)
    snap.flows = []  # what a refresh puts right
    cache.set(dashboard._snapshot_key(top.pk), snap)
    deposit_completed(client_of(top), "100.00")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        stale = overview_for(top)  # served from the old snapshot meanwhile
    assert stale.flows == [] and len(callbacks) == 1  # Celery runs eagerly in the tests
    refreshed = cache.get(dashboard._snapshot_key(top.pk))
    assert refreshed.taken_at > snap.taken_at
    assert [f.deposits for f in refreshed.flows] == [9720]


def test_query_counts_are_fixed_whatever_the_downline(client, network, django_assert_num_queries):
    top, sub, subsub, _ = network
    for partner in (top, sub, subsub):
        for _ in range(3):
            c = client_of(partner)
            [deal] = add_deals(c, [{"volume": "1"}])
            commission(top, amount=100, deal=deal)
    client.force_login(top.user)
    client.get(OVERVIEW)  # the session's first read, the snapshot
    # From the snapshot: user, partner, the activity stamp, client counts,
    # sign-ups per week (the session is in the cache).
    with django_assert_num_queries(5):
        assert client.get(OVERVIEW).status_code == 200
    # New deals and commissions since: two queries for the deals, one for the
    # commissions.
    [deal] = add_deals(client_of(subsub), [{"volume": "1"}])
    commission(top, amount=100, deal=deal)
    with django_assert_num_queries(8):
        assert client.get(OVERVIEW).status_code == 200
    # No snapshot: the session (the cache was emptied), user, partner, stamp,
    # the snapshot's 4 aggregates, counts and sign-ups.
    cache.clear()
    with django_assert_num_queries(10):
        assert client.get(OVERVIEW).status_code == 200


def test_deals_of_demo_accounts_are_no_volume_and_make_no_active_trader(network):
    top, sub, _, _ = network
    mixed, demo_only = client_of(top), client_of(sub)
    add_deals(mixed, [{"volume": "2"}])
    add_deals(mixed, [{"volume": "40"}], account=open_trading_account(mixed, type_name="Demo USD"))
    demo = open_trading_account(demo_only, type_name="Demo USD")
    add_deals(demo_only, [{"volume": "50"}, {"volume": "0.5"}], account=demo)
    figures = overview_compute(top)
    assert (figures.lots_total, figures.lots_month) == (Decimal("2"), Decimal("2"))
    assert figures.active_traders == 1  # not the demo-only client
    # New demo deals since the snapshot change nothing; a live one does.
    assert overview_for(top).lots_total == Decimal("2")
    add_deals(demo_only, [{"volume": "9"}], account=demo)
    assert (overview_for(top).lots_total, overview_for(top).active_traders) == (Decimal("2"), 1)
    add_deals(demo_only, [{"volume": "0.25"}])
    grown = overview_for(top)
    assert (grown.lots_total, grown.active_traders) == (Decimal("2.25"), 2)
    assert grown == overview_compute(top, now=grown.computed_at)
