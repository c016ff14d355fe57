"""CPA: paid once for a referred client's qualifying first deposit, to an
active partner, with the plan's minimum deposit (in the plan's currency)
and minimum lots within N days."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from backoffice.models import Event
from backoffice.services import event_deliver
from ib.models import Commission, Partner, PendingCpa
from ib.services import client_move, partner_suspend
from ib.services.cpa import EXPIRY_GRACE, cpa_check_pending, cpa_on_deposit
from tests.factories import TraderFactory
from tests.ib.factories import make_partner, make_plan, refer

from .money_helpers import account_of, deal, deposit, set_rate

pytestmark = pytest.mark.django_db


def cpa_plan(**fields):
    fields.setdefault("cpa_amount", Decimal("250"))
    fields.setdefault("cpa_min_deposit", Decimal("100"))
    return make_plan(**fields)


def referred(partner):
    client = TraderFactory()
    refer(client, partner, since=timezone.now() - timedelta(days=1))
    return client


def cpa_rows(**filters):
    return list(Commission.objects.filter(kind=Commission.CPA, **filters))


def test_a_qualifying_first_deposit_earns_the_cpa_once(django_capture_on_commit_callbacks):
    partner = make_partner(plan=cpa_plan())
    client = referred(partner)
    with django_capture_on_commit_callbacks(execute=True):
        first = deposit(client, "500.00")
    [row] = cpa_rows(partner=partner)
    assert (row.client_id, row.deposit_id, row.level) == (client.pk, first.pk, 1)
    assert (row.amount, row.currency_id, row.basis) == (25000, "USD", 50000)
    assert row.earned_at == first.completed_at and row.payout_id is None

    with django_capture_on_commit_callbacks(execute=True):
        deposit(client, "900.00")  # a second deposit: not the first
    # The event delivered again (a replay), and the service called again.
    event = Event.objects.filter(name="deposit.completed", subject_id=str(first.pk)).get()
    event.deliveries.all().delete()
    assert event_deliver(event_id=event.pk, subscriber_id="ib.cpa_on_deposit") is True
    assert cpa_on_deposit(first.pk) is None
    assert len(cpa_rows()) == 1


def test_a_first_deposit_below_the_minimum_earns_nothing_and_a_later_one_is_not_first():
    partner = make_partner(plan=cpa_plan())
    client = referred(partner)
    small = deposit(client, "60.00")
    assert cpa_on_deposit(small.pk) is None
    big = deposit(client, "1000.00")
    assert cpa_on_deposit(big.pk) is None
    assert cpa_rows() == []


def test_the_minimum_is_compared_in_the_plans_currency():
    set_rate("USD", "EUR", "0.92")
    plan = cpa_plan(currency="EUR")
    partner = make_partner(plan=plan)
    short, enough = referred(partner), referred(partner)
    assert cpa_on_deposit(deposit(short, "108.00").pk) is None  # 99.36 EUR < 100
    row = cpa_on_deposit(deposit(enough, "109.00").pk)  # 100.28 EUR
    assert (row.amount, row.currency_id, row.basis) == (25000, "EUR", 10028)


def test_no_partner_no_cpa_plan_or_a_pending_partner_earn_nothing():
    unattributed = TraderFactory()
    assert cpa_on_deposit(deposit(unattributed, "500.00").pk) is None
    no_cpa = make_partner(plan=make_plan())
    assert cpa_on_deposit(deposit(referred(no_cpa), "500.00").pk) is None
    assert cpa_rows() == []


def test_an_inactive_partner_is_not_paid(django_assert_max_num_queries):
    partner = make_partner(plan=cpa_plan())
    client = referred(partner)
    partner_suspend(actor=None, partner=partner, reason="under review")
    assert cpa_on_deposit(deposit(client, "500.00").pk) is None
    assert cpa_rows() == []


def test_the_partner_at_the_time_of_the_deposit_is_paid():
    old, new = make_partner(plan=cpa_plan()), make_partner(plan=cpa_plan(cpa_amount="40"))
    client = referred(old)
    client_move(actor=None, client=client, partner=new)
    row = cpa_on_deposit(deposit(client, "500.00").pk)
    assert (row.partner_id, row.amount) == (new.pk, 4000)


# --- minimum lots within N days ---------------------------------------------------------


def lots_plan():
    return cpa_plan(cpa_min_lots=Decimal("1.5"), cpa_within_days=10)


def test_minimum_lots_traded_in_time_pay_the_cpa():
    partner = make_partner(plan=lots_plan())
    client = referred(partner)
    account = account_of(client)
    paid_in = deposit(client, "500.00")
    pending = cpa_on_deposit(paid_in.pk)
    assert isinstance(pending, PendingCpa)
    assert pending.deadline == paid_in.completed_at + timedelta(days=10)
    deal(account, close_time=paid_in.completed_at - timedelta(hours=2), lots="5")  # before
    deal(account, close_time=paid_in.completed_at + timedelta(days=1), lots="1")
    assert cpa_check_pending(client_ids=[client.pk]) == []
    assert cpa_rows() == [] and PendingCpa.objects.count() == 1

    deal(account, close_time=paid_in.completed_at + timedelta(days=9), lots="0.5")
    [row] = cpa_check_pending()
    assert (row.partner_id, row.client_id, row.amount, row.deposit_id) == (
        partner.pk,
        client.pk,
        25000,
        paid_in.pk,
    )
    assert row.earned_at == paid_in.completed_at and row.basis == 50000
    assert not PendingCpa.objects.exists()
    assert cpa_check_pending() == [] and len(cpa_rows()) == 1
    assert cpa_on_deposit(paid_in.pk) is None  # replayed: neither paid nor pending again
    assert not PendingCpa.objects.exists()


def test_lots_after_the_deadline_or_on_demo_accounts_do_not_count_and_it_expires():
    partner = make_partner(plan=lots_plan())
    client = referred(partner)
    paid_in = deposit(client, "500.00")
    cpa_on_deposit(paid_in.pk)
    deal(account_of(client, demo=True), close_time=paid_in.completed_at + timedelta(days=1))
    deal(account_of(client, demo=True), close_time=paid_in.completed_at + timedelta(days=2))
    deal(account_of(client), close_time=paid_in.completed_at + timedelta(days=11), lots="9")
    deadline = paid_in.completed_at + timedelta(days=10)
    # Past the deadline but within the grace for late imports: still waiting.
    assert cpa_check_pending(now=deadline + timedelta(hours=1)) == []
    assert PendingCpa.objects.count() == 1
    assert cpa_check_pending(now=deadline + EXPIRY_GRACE + timedelta(seconds=1)) == []
    assert not PendingCpa.objects.exists() and cpa_rows() == []


def test_lots_reached_while_the_partner_is_suspended_wait_for_reactivation():
    partner = make_partner(plan=lots_plan())
    client = referred(partner)
    paid_in = deposit(client, "500.00")
    cpa_on_deposit(paid_in.pk)
    partner_suspend(actor=None, partner=partner, reason="checks")
    deal(account_of(client), close_time=paid_in.completed_at + timedelta(days=1), lots="2")
    assert cpa_check_pending() == [] and PendingCpa.objects.count() == 1
    Partner.objects.filter(pk=partner.pk).update(status=Partner.ACTIVE)
    assert len(cpa_check_pending()) == 1


def test_the_deposit_event_pays_through_the_outbox(django_capture_on_commit_callbacks):
    partner = make_partner(plan=cpa_plan(cpa_amount="12.345"))
    client = referred(partner)
    with django_capture_on_commit_callbacks(execute=True):
        deposit(client, "100.00")
    [row] = cpa_rows()
    assert row.amount == 1234  # rounded down, never up
    event = Event.objects.get(name="deposit.completed")
    assert event.deliveries.filter(subscriber="ib.cpa_on_deposit").exists()
