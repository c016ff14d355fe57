"""Payouts through the ledger: the partner's unpaid commissions converted
into their payout currency and posted in one journal transaction; holds,
the minimum, schedules; two requests at once make one payout."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.roles import FINANCE, SUPPORT
from backoffice.models import Event, Notification
from ib.exceptions import IbError
from ib.models import Commission, Partner, Payout, PlanVersion
from ib.selectors.payouts import convert_totals
from ib.services.payouts import (
    EXPENSE_ACCOUNT,
    payout_create,
    payout_request,
    payouts_hold,
    payouts_release,
    payouts_scheduled,
)
from payments.models import Currency, Entry, JournalTransaction, LedgerAccount
from payments.selectors import ledger_check
from tests.conftest import require_or_skip
from tests.factories import StaffFactory, TraderFactory
from tests.ib.factories import make_partner, make_plan
from tests.payments.test_withdrawals import run_in_threads

from .money_helpers import set_rate

pytestmark = pytest.mark.django_db

_deals = itertools.count(900_000)


def earn(
    partner: Partner,
    amount: int,
    currency: str = "USD",
    *,
    kind: str = Commission.DEAL,
    client=None,
    earned_at: datetime | None = None,
) -> Commission:
    """A commission row as accrual writes it (minor units of ``currency``)."""
    partner = Partner.objects.get(pk=partner.pk)
    version = PlanVersion.objects.filter(plan_id=partner.plan_id).first()
    return Commission.objects.create(
        kind=kind,
        partner=partner,
        client=client,
        deal_id=next(_deals) if kind == Commission.DEAL else None,
        plan_version=version,
        amount=amount,
        currency_id=currency,
        earned_at=earned_at or timezone.now() - timedelta(hours=1),
    )


def partner_with(**fields) -> Partner:
    return make_partner(plan=make_plan(), **fields)


def finance():
    return StaffFactory(roles=[FINANCE])


def wallet_of(partner: Partner, currency: str = "USD") -> LedgerAccount | None:
    return LedgerAccount.objects.filter(
        kind=LedgerAccount.WALLET, owner_id=partner.user_id, currency_id=currency
    ).first()


def expense_total(currency: str = "USD") -> int:
    return sum(
        Entry.objects.filter(account__code=EXPENSE_ACCOUNT, currency_id=currency).values_list(
            "amount", flat=True
        )
    )


def test_a_payout_posts_one_journal_transaction_and_marks_the_rows_paid():
    partner = partner_with()
    client = TraderFactory()
    rows = [earn(partner, 2550, client=client), earn(partner, 7450), earn(partner, 1000)]
    staff = finance()
    payout = payout_create(partner=partner, actor=staff, kind=Payout.MANUAL)

    assert (payout.amount, payout.currency_id, payout.commissions) == (11000, "USD", 3)
    assert payout.covers_from == min(r.earned_at for r in rows)
    assert payout.breakdown == {"USD": {"amount": 11000, "rows": 3, "rate": "1", "credited": 11000}}
    assert wallet_of(partner).balance == 11000
    assert expense_total() == -11000  # the system account goes negative: an expense
    journal = JournalTransaction.objects.get(pk=payout.journal_id)
    assert journal.kind == "ib_payout" and journal.actor == staff
    assert sorted(journal.entries.values_list("amount", flat=True)) == [-11000, 11000]
    assert set(Commission.objects.values_list("payout_id", flat=True)) == {payout.pk}
    assert ledger_check().ok
    event = Event.objects.get(name="ib.payout_paid")
    assert (event.client_id, event.actor_id, event.payload["amount"]) == (
        partner.user_id,
        staff.pk,
        "110.00",
    )
    assert Notification.objects.filter(user_id=partner.user_id, kind="ib").exists()

    with pytest.raises(IbError, match="no unpaid commissions"):
        payout_create(partner=partner, actor=staff, kind=Payout.MANUAL)
    assert Payout.objects.count() == 1 and wallet_of(partner).balance == 11000


def test_each_currency_is_converted_at_one_rate_and_rounded_down():
    set_rate("USD", "EUR", "0.9")
    partner = partner_with(payout_currency_id="EUR", payout_minimum=Decimal("0"))
    earn(partner, 10001, "USD")
    earn(partner, 1, "USD")  # one sum per currency: 100.02 USD × 0.9 = 90.018 → 90.01 EUR
    earn(partner, 1000, "EUR")
    payout = payout_request(partner=partner)
    assert payout.breakdown["USD"] == {"amount": 10002, "rows": 2, "rate": "0.9", "credited": 9001}
    assert payout.breakdown["EUR"]["credited"] == 1000
    assert payout.amount == 10001
    assert wallet_of(partner, "EUR").balance == 10001
    assert wallet_of(partner, "USD") is None
    assert expense_total("EUR") == -10001 and expense_total("USD") == 0
    assert ledger_check().ok


def test_a_missing_rate_refuses_the_payout_and_changes_nothing():
    partner = partner_with(payout_currency_id="EUR")
    earn(partner, 99999, "GBP")
    with pytest.raises(IbError, match="cannot be converted"):
        payout_create(partner=partner, actor=finance(), kind=Payout.MANUAL)
    assert not Payout.objects.exists() and not JournalTransaction.objects.exists()


def test_requests_below_the_minimum_are_refused_but_staff_can_pay():
    partner = partner_with(payout_minimum=Decimal("50"))
    earn(partner, 4999)
    with pytest.raises(IbError, match=r"49\.99 USD, is below the minimum payout of 50\.00 USD"):
        payout_request(partner=partner)
    assert not Payout.objects.exists()
    payout = payout_create(partner=partner, actor=finance(), kind=Payout.MANUAL)
    assert payout.amount == 4999 and wallet_of(partner).balance == 4999


def test_held_payouts_are_refused_with_the_reason_until_released():
    partner = partner_with(payout_minimum=Decimal("0"))
    earn(partner, 5000)
    staff = finance()
    payouts_hold(actor=staff, partner=partner, reason="documents to check")
    for attempt in (
        lambda: payout_request(partner=partner),
        lambda: payout_create(partner=partner, actor=staff, kind=Payout.MANUAL),
    ):
        with pytest.raises(IbError, match="on hold: documents to check"):
            attempt()
    assert not Payout.objects.exists() and wallet_of(partner) is None
    held = Event.objects.get(name="ib.payouts_held")
    assert (held.actor_id, held.payload) == (staff.pk, {"reason": "documents to check"})

    payouts_release(actor=staff, partner=partner, reason="checked")
    assert payout_request(partner=partner).amount == 5000
    assert Event.objects.filter(name="ib.payouts_released").count() == 1


def test_hold_needs_the_permission_and_a_reason():
    partner = partner_with()
    with pytest.raises(IbError, match="permission"):
        payouts_hold(actor=StaffFactory(roles=[SUPPORT]), partner=partner, reason="x")
    with pytest.raises(IbError, match="reason"):
        payouts_hold(actor=finance(), partner=partner, reason="  ")
    with pytest.raises(IbError, match="permission"):
        payout_create(partner=partner, actor=StaffFactory(roles=[SUPPORT]), kind=Payout.MANUAL)
    assert not Partner.objects.get(pk=partner.pk).payouts_held


def test_zero_rows_are_not_covered_and_other_partners_rows_stay_unpaid():
    partner, other = partner_with(payout_minimum=Decimal("0")), partner_with()
    paid = earn(partner, 300)
    zero = earn(partner, 0)
    theirs = earn(other, 700)
    payout = payout_request(partner=partner)
    assert payout.commissions == 1
    assert list(Commission.objects.filter(payout=payout)) == [paid]
    assert Commission.objects.get(pk=zero.pk).payout_id is None
    assert Commission.objects.get(pk=theirs.pk).payout_id is None


# --- schedules --------------------------------------------------------------------------


def test_scheduled_payouts_follow_each_partners_schedule():
    daily = partner_with(payout_schedule=Partner.DAILY, payout_minimum=Decimal("10"))
    weekly = partner_with(payout_schedule=Partner.WEEKLY, payout_minimum=Decimal("10"))
    manual = partner_with(payout_schedule=Partner.MANUAL, payout_minimum=Decimal("10"))
    small = partner_with(payout_schedule=Partner.DAILY, payout_minimum=Decimal("10"))
    held = partner_with(payout_schedule=Partner.DAILY, payout_minimum=Decimal("10"))
    for partner in (daily, weekly, manual, held):
        earn(partner, 2000)
    earn(small, 999)
    payouts_hold(actor=None, partner=held, reason="fraud check")

    tuesday = date(2025, 3, 4)
    result = payouts_scheduled(today=tuesday)
    assert set(Payout.objects.values_list("partner_id", flat=True)) == {daily.pk}
    assert "below the minimum" in result.skipped[small.pk]
    assert Payout.objects.get().kind == Payout.SCHEDULED

    Payout.objects.update(created_at=datetime(2025, 3, 4, 6, tzinfo=UTC))  # paid that Tuesday
    earn(daily, 5000)
    assert payouts_scheduled(today=tuesday).paid == []  # once a day at most
    monday = date(2025, 3, 10)
    result = payouts_scheduled(today=monday)
    assert len(result.paid) == 2
    assert set(Payout.objects.values_list("partner_id", flat=True)) == {daily.pk, weekly.pk}
    assert Payout.objects.get(partner=daily, amount=5000).kind == Payout.SCHEDULED
    assert not Payout.objects.filter(partner__in=[manual, held, small]).exists()


# --- races ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_requests_at_once_make_one_payout():
    require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")
    partner = partner_with(payout_minimum=Decimal("0"))
    for _ in range(20):
        earn(partner, 500)
    results = run_in_threads(*(lambda: payout_request(partner=partner) for _ in range(4)))
    payouts = [r for r in results if isinstance(r, Payout)]
    refusals = [r for r in results if isinstance(r, IbError)]
    assert len(payouts) == 1 and len(refusals) == 3, results
    assert Payout.objects.count() == 1
    assert wallet_of(partner).balance == 10000
    assert Commission.objects.filter(payout__isnull=True).count() == 0
    assert ledger_check().ok


# --- arithmetic ---------------------------------------------------------------------------


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    totals=st.dictionaries(
        st.sampled_from(["USD", "EUR", "JPY", "BTC"]),
        st.integers(min_value=1, max_value=10**15),
        min_size=1,
    ),
    into=st.sampled_from(["USD", "EUR", "JPY"]),
)
def test_a_payout_never_credits_more_than_the_exact_conversion(totals, into):
    set_rate("USD", "EUR", "0.9137")
    set_rate("USD", "JPY", "151.37")
    set_rate("BTC", "USD", "64123.45")
    into_currency = Currency.objects.get(pk=into)
    conversion = convert_totals({code: (minor, 1) for code, minor in totals.items()}, into_currency)
    exact_total = Decimal(0)
    for code, minor in totals.items():
        exponent = Currency.objects.get(pk=code).exponent
        rate = Decimal(conversion.breakdown[code]["rate"])
        exact = Decimal(minor).scaleb(-exponent) * rate * Decimal(10) ** into_currency.exponent
        credited = conversion.breakdown[code]["credited"]
        assert 0 <= exact - credited < 1  # rounded down, by less than one minor unit
        exact_total += exact
    assert conversion.amount == sum(e["credited"] for e in conversion.breakdown.values())
    assert conversion.amount <= exact_total
