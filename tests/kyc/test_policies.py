"""KYC level limits, enforced through the real services that ask the policy
registry: deposits (``deposit_create``), withdrawals (``withdrawal_request``),
live trading accounts (``trading_account_open``) and transfers (to a trading
account, to another client). Sums over the day and the month (earlier today
counts; yesterday counts for the month only; last month for neither), other
currencies converted at the rate, failed deposits and rejected or cancelled
withdrawals left out, refusals naming the level needed with a link to the
verification page, blocked countries, and the query count of ``can_withdraw``.

Time: "now" is pinned to the 15th of this month at noon (UTC, the project's
zone), so that "yesterday" is always in this month; rows made through the
services are then moved in time by setting their ``created_at``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.test import TestCase
from django.utils import timezone

from accounts.exceptions import TradingError
from accounts.models import ClientProfile, TradingAccount
from backoffice import policies
from kyc import selectors
from kyc.models import ClientKyc, Level
from payments import services
from payments.models import Deposit, LedgerAccount, PaymentMethod, Withdrawal
from payments.policies import can_withdraw
from payments.services.conversions import NotAllowed, transfer_execute
from payments.services.deposits import DepositError, deposit_create, deposit_fail
from payments.services.rates import rate_set_manual
from payments.services.trading import TradingTransferError, trading_transfer_in
from payments.services.withdrawals import (
    WithdrawalError,
    withdrawal_cancel,
    withdrawal_reject,
    withdrawal_request,
)
from tests.factories import StaffFactory, TraderFactory, open_trading_account, set_kyc_level

pytestmark = pytest.mark.django_db

UNLOCK = "kyc:verification"
BANK = {"iban": "DE89 3704 0044 0532 0130 00", "account_holder": "Test Trader"}


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def clock() -> datetime:
    """Now is the 15th of this month at noon: yesterday and the day before
    are in this month, 20 days ago is in the last one."""
    fixed = timezone.now().replace(day=15, hour=12, minute=0, second=0, microsecond=0)
    with mock.patch.object(timezone, "now", return_value=fixed):
        yield fixed


@pytest.fixture
def rates(clock) -> None:
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.10"))
    rate_set_manual(actor=None, base="USD", quote="JPY", rate=Decimal("150"))


def wire() -> PaymentMethod:
    return PaymentMethod.objects.select_related("provider").get(name="Bank wire")  # no fee


def wallet(user, currency: str = "USD", fund: str | None = None) -> LedgerAccount:
    account = services.wallet_open(user=user, currency=currency)
    if fund:
        services.wallet_adjust(
            actor=None,
            wallet=account,
            amount=Decimal(fund),
            reason="test funding",
            idempotency_key=f"fund:{uuid.uuid4()}",
        )
        account.refresh_from_db()
    return account


def deposit(
    user, amount: str, currency: str = "USD", *, at: datetime | None = None, paid: bool = True
) -> Deposit:
    """A deposit made now, or at ``at`` (then paid, unless ``paid=False``:
    an open deposit counts only for KYC_OPEN_DEPOSIT_HOURS)."""
    made = deposit_create(
        user=user, wallet=wallet(user, currency), method=wire(), amount=Decimal(amount)
    )
    if at is not None:
        status = Deposit.COMPLETED if paid else made.status
        Deposit.objects.filter(pk=made.pk).update(created_at=at, status=status)
    return made


def withdraw(user, amount: str, currency: str = "USD", *, at: datetime | None = None):
    made = withdrawal_request(
        user=user,
        wallet=LedgerAccount.objects.get(kind=LedgerAccount.WALLET, owner=user, currency=currency),
        method=wire(),
        amount=Decimal(amount),
        destination=BANK,
        otp_code=None,
        idempotency_key=str(uuid.uuid4()),
    )
    if at is not None:
        Withdrawal.objects.filter(pk=made.pk).update(created_at=at)
    return made


def days_ago(now: datetime, days: int) -> datetime:
    return now - timedelta(days=days)


def last_month(now: datetime) -> datetime:
    """The last second of the previous month."""
    _day, month = selectors.period_starts(now)
    return month - timedelta(seconds=1)


def move_to(user, country: str) -> None:
    ClientProfile.objects.filter(user=user).update(country=country)


# --- the lowest level, and who has no KYC row yet ---------------------------------------


def test_a_client_without_a_kyc_row_is_at_the_lowest_level():
    trader = TraderFactory(kyc_level=False)
    assert not ClientKyc.objects.filter(user=trader).exists()
    assert selectors.kyc_level_for_user(trader).number == 0

    decision = can_withdraw(trader, Decimal("10"), "USD")
    assert not decision.allowed
    assert "It needs verification level 1 (Basic)." in decision.reason
    assert (decision.unlock, decision.unlock_url) == ("Verify to level 1", UNLOCK)

    deposit(trader, "1000")  # level 0's daily limit, exactly
    with pytest.raises(DepositError, match="daily deposit limit of 1,000.00 USD at level 0"):
        deposit(trader, "50")
    # Asking is a read: it does not start the client's verification.
    assert not ClientKyc.objects.filter(user=trader).exists()


# --- deposits -----------------------------------------------------------------------------


def test_deposits_earlier_today_count_towards_the_daily_limit():
    trader = TraderFactory(kyc_level=0)  # 1,000 a day, 2,000 a month
    deposit(trader, "600")
    with pytest.raises(DepositError) as refused:
        deposit(trader, "500")
    assert str(refused.value) == (
        "This deposit would pass your daily deposit limit of 1,000.00 USD at level 0 "
        "(Unverified): 400.00 USD is left this day. It needs verification level 1 (Basic)."
    )
    assert (refused.value.unlock, refused.value.unlock_url) == ("Verify to level 1", UNLOCK)
    assert Deposit.objects.filter(user=trader).count() == 1  # nothing was written

    deposit(trader, "400")  # up to the limit exactly
    assert selectors.deposit_usage(trader, "USD").day == Decimal("1000")


def test_yesterdays_deposits_count_for_the_month_but_not_the_day(clock):
    trader = TraderFactory(kyc_level=0)
    deposit(trader, "950", at=days_ago(clock, 1))
    deposit(trader, "900", at=days_ago(clock, 2))
    # Today's total starts at zero; the month's at 1,850.
    assert selectors.deposit_usage(trader, "USD") == selectors.Usage(
        "USD", Decimal("0"), Decimal("1850")
    )
    deposit(trader, "100")
    with pytest.raises(DepositError) as refused:
        deposit(trader, "100")
    assert "monthly deposit limit of 2,000.00 USD at level 0 (Unverified)" in str(refused.value)
    assert "50.00 USD is left this month." in str(refused.value)
    assert refused.value.unlock_url == UNLOCK
    deposit(trader, "50")


def test_last_months_deposits_count_for_neither_the_day_nor_the_month(clock):
    trader = TraderFactory(kyc_level=0)
    deposit(trader, "1000", at=last_month(clock))
    deposit(trader, "1000", at=days_ago(clock, 20))
    usage = selectors.deposit_usage(trader, "USD")
    assert (usage.day, usage.month) == (Decimal("0"), Decimal("0"))
    deposit(trader, "1000", at=days_ago(clock, 3))
    deposit(trader, "1000")
    assert selectors.deposit_usage(trader, "USD").month == Decimal("2000")


def test_failed_deposits_do_not_count_but_deposits_on_their_way_do():
    trader = TraderFactory(kyc_level=0)
    failed = deposit(trader, "1000")
    deposit_fail(deposit=failed, reason="declined")
    on_its_way = deposit(trader, "700")  # created, not yet paid: counts
    assert on_its_way.status == Deposit.CREATED
    with pytest.raises(DepositError, match="300.00 USD is left this day"):
        deposit(trader, "400")


def test_an_abandoned_deposit_stops_holding_the_limit_after_the_open_hours(clock, settings):
    settings.KYC_OPEN_DEPOSIT_HOURS = 6
    trader = TraderFactory(kyc_level=0)
    deposit(trader, "800", at=clock - timedelta(hours=7), paid=False)  # abandoned
    recent = deposit(trader, "150", at=clock - timedelta(hours=1), paid=False)  # on its way
    assert recent.status == Deposit.CREATED
    usage = selectors.deposit_usage(trader, "USD")
    assert (usage.day, usage.month) == (Decimal("150"), Decimal("150"))
    assert deposit(trader, "800")  # 150 + 800 of the daily 1,000
    with pytest.raises(DepositError, match="50.00 USD is left this day"):
        deposit(trader, "100")


def test_deposits_in_other_currencies_are_converted_at_the_rate(rates):
    trader = TraderFactory(kyc_level=0)
    deposit(trader, "800", "EUR")  # 880 USD
    deposit(trader, "9000", "JPY")  # 60 USD
    assert selectors.deposit_usage(trader, "USD").day == Decimal("940")
    with pytest.raises(DepositError) as refused:
        deposit(trader, "60", "EUR")  # 66 USD: 1,006 > 1,000
    assert "60.00 USD is left this day" in str(refused.value)
    deposit(trader, "54", "EUR")  # 59.40 USD


def test_a_deposit_in_a_currency_without_a_rate_is_refused_saying_why():
    trader = TraderFactory(kyc_level=0)
    with pytest.raises(DepositError, match="No exchange rate between CHF and USD"):
        deposit(trader, "100", "CHF")
    assert not Deposit.objects.filter(user=trader).exists()


def test_a_higher_level_has_higher_deposit_limits_and_the_last_none():
    basic = TraderFactory(kyc_level=1)
    deposit(basic, "10000")
    with pytest.raises(DepositError, match="It needs verification level 2 \\(Verified\\)"):
        deposit(basic, "50")
    enhanced = TraderFactory(kyc_level=3)
    deposit(enhanced, "1000000")
    deposit(enhanced, "1000000")


def test_a_limit_changed_by_staff_applies_to_the_next_deposit():
    trader = TraderFactory(kyc_level=0)
    deposit(trader, "900")
    Level.objects.filter(number=0).update(deposit_daily_limit=Decimal("500"))
    with pytest.raises(DepositError, match="0.00 USD is left this day"):
        deposit(trader, "50")
    Level.objects.filter(number=0).update(deposit_daily_limit=None, deposit_monthly_limit=None)
    deposit(trader, "5000")


# --- withdrawals --------------------------------------------------------------------------


def test_level_0_cannot_withdraw_and_is_told_which_level_and_where():
    trader = TraderFactory(kyc_level=0)
    usd = wallet(trader, fund="1000")
    with pytest.raises(WithdrawalError) as refused:
        withdraw(trader, "100")
    assert str(refused.value) == (
        "Withdrawals need a verified identity. It needs verification level 1 (Basic)."
    )
    assert (refused.value.unlock, refused.value.unlock_url) == ("Verify to level 1", UNLOCK)
    assert not Withdrawal.objects.exists()
    assert LedgerAccount.objects.get(pk=usd.pk).balance == usd.balance


def test_withdrawals_earlier_today_count_towards_the_daily_limit():
    trader = TraderFactory(kyc_level=1)  # 5,000 a day, 10,000 a month
    usd = wallet(trader, fund="20000")
    withdraw(trader, "3000")
    with pytest.raises(WithdrawalError) as refused:
        withdraw(trader, "2500")
    assert str(refused.value) == (
        "This withdrawal would pass your daily withdrawal limit of 5,000.00 USD at level 1 "
        "(Basic): 2,000.00 USD is left this day. It needs verification level 2 (Verified)."
    )
    assert refused.value.unlock_url == UNLOCK
    assert Withdrawal.objects.filter(user=trader).count() == 1
    assert LedgerAccount.objects.get(pk=usd.pk).balance == 1_700_000  # only the first reserved
    withdraw(trader, "2000")


def test_yesterdays_withdrawals_count_for_the_month_but_not_the_day(clock):
    trader = TraderFactory(kyc_level=1)
    wallet(trader, fund="20000")
    withdraw(trader, "4000", at=days_ago(clock, 1))
    withdraw(trader, "4000", at=days_ago(clock, 2))
    withdraw(trader, "1900")  # day 1,900 of 5,000; month 9,900 of 10,000
    with pytest.raises(WithdrawalError) as refused:
        withdraw(trader, "150")
    assert "monthly withdrawal limit of 10,000.00 USD at level 1 (Basic)" in str(refused.value)
    assert "100.00 USD is left this month." in str(refused.value)
    withdraw(trader, "100")


def test_last_months_withdrawals_count_for_neither(clock):
    trader = TraderFactory(kyc_level=1)
    wallet(trader, fund="30000")
    withdraw(trader, "5000", at=last_month(clock))
    withdraw(trader, "5000", at=days_ago(clock, 25))
    withdraw(trader, "5000")
    assert selectors.withdrawal_usage(trader, "USD") == selectors.Usage(
        "USD", Decimal("5000"), Decimal("5000")
    )


def test_rejected_and_cancelled_withdrawals_do_not_count():
    trader = TraderFactory(kyc_level=1)
    wallet(trader, fund="20000")
    withdrawal_cancel(user=trader, withdrawal=withdraw(trader, "3000"))
    finance = StaffFactory(roles=["Finance"])
    withdrawal_reject(actor=finance, withdrawal=withdraw(trader, "2000"), reason="Wrong IBAN")
    withdraw(trader, "5000")  # the full daily limit is still there
    with pytest.raises(WithdrawalError, match="0.00 USD is left this day"):
        withdraw(trader, "50")


def test_withdrawals_in_other_currencies_are_converted_at_the_rate(rates):
    trader = TraderFactory(kyc_level=1)
    wallet(trader, "EUR", fund="10000")
    wallet(trader, "USD", fund="10000")
    withdraw(trader, "4000", "EUR")  # 4,400 USD
    with pytest.raises(WithdrawalError, match="600.00 USD is left this day"):
        withdraw(trader, "700")
    with pytest.raises(WithdrawalError, match="600.00 USD is left this day"):
        withdraw(trader, "550", "EUR")  # 605 USD
    withdraw(trader, "600")


def test_withdrawals_over_the_level_need_the_next_level_that_allows_them():
    trader = TraderFactory(kyc_level=2)  # 25,000 a day
    wallet(trader, fund="200000")
    with pytest.raises(WithdrawalError, match="It needs verification level 3 \\(Enhanced\\)"):
        withdraw(trader, "30000")
    set_kyc_level(trader, 3)
    withdraw(trader, "30000")


# --- live trading accounts ----------------------------------------------------------------


def test_a_live_account_needs_the_level_that_allows_it():
    trader = TraderFactory(kyc_level=0)
    with pytest.raises(TradingError) as refused:
        open_trading_account(trader)
    decision = refused.value.decision
    assert decision.reason == (
        "A live trading account needs a verified identity. It needs verification level 1 (Basic)."
    )
    assert decision.unlock_url == UNLOCK
    open_trading_account(trader, type_name="Demo USD")  # a demo account needs nothing
    assert list(TradingAccount.objects.filter(user=trader).values_list("is_demo", flat=True)) == [
        True
    ]
    set_kyc_level(trader, 1)
    assert not open_trading_account(trader).is_demo


def test_the_broker_sets_which_level_opens_live_accounts():
    trader = TraderFactory(kyc_level=1)
    Level.objects.filter(number=1).update(allows_live_accounts=False)
    with pytest.raises(TradingError, match="It needs verification level 2 \\(Verified\\)"):
        open_trading_account(trader)
    Level.objects.filter(number__gte=1).update(allows_live_accounts=False)
    with pytest.raises(TradingError) as refused:
        open_trading_account(trader)
    # No level allows it: no level is named, the page still explains.
    assert refused.value.decision.unlock == "See your verification"
    assert refused.value.decision.unlock_url == UNLOCK


# --- transfers ----------------------------------------------------------------------------


def test_transfers_follow_the_levels_setting(settings):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    trader = TraderFactory(kyc_level=1)
    friend = TraderFactory()
    usd = wallet(trader, fund="1000")
    account = open_trading_account(trader)
    Level.objects.filter(number=1).update(allows_transfers=False)

    with pytest.raises(TradingTransferError) as refused:
        trading_transfer_in(
            user=trader,
            account=account,
            wallet=usd,
            amount=Decimal("100"),
            idempotency_key=str(uuid.uuid4()),
        )
    assert "Transfers need a verified identity" in str(refused.value)
    assert refused.value.decision.unlock_url == UNLOCK
    with pytest.raises(NotAllowed, match="It needs verification level 2"):
        transfer_execute(
            user=trader,
            from_wallet=usd,
            to_wallet=None,
            to_user_email=friend.email,
            amount=Decimal("10"),
            idempotency_key=str(uuid.uuid4()),
        )
    assert LedgerAccount.objects.get(pk=usd.pk).balance == 100_000

    Level.objects.filter(number=1).update(allows_transfers=True)
    with TestCase.captureOnCommitCallbacks(execute=True):
        trading_transfer_in(
            user=trader,
            account=account,
            wallet=usd,
            amount=Decimal("100"),
            idempotency_key=str(uuid.uuid4()),
        )
    assert LedgerAccount.objects.get(pk=usd.pk).balance == 90_000


# --- blocked countries --------------------------------------------------------------------


def test_registration_from_a_blocked_country_is_refused():
    refused = policies.check(None, policies.REGISTER, country="KP")
    assert not refused.allowed
    assert refused.reason.startswith("We cannot open accounts for residents of this country.")
    assert policies.check(None, policies.REGISTER, country="GB").allowed
    assert policies.check(None, policies.REGISTER, country="NG").allowed  # high risk, not blocked


def test_a_client_now_resident_in_a_blocked_country_cannot_deposit_trade_or_fund_trading():
    trader = TraderFactory(kyc_level=2)
    usd = wallet(trader, fund="1000")
    account = open_trading_account(trader)
    move_to(trader, "IR")
    with pytest.raises(DepositError, match="We cannot accept deposits from your country"):
        deposit(trader, "100")
    with pytest.raises(TradingError, match="Live trading is not available in your country"):
        open_trading_account(trader)
    with pytest.raises(TradingTransferError, match="Trading is not available in your country"):
        trading_transfer_in(
            user=trader,
            account=account,
            wallet=usd,
            amount=Decimal("100"),
            idempotency_key=str(uuid.uuid4()),
        )
    assert not Deposit.objects.filter(user=trader).exists()
    # Taking money out stays possible.
    assert can_withdraw(trader, Decimal("100"), "USD").allowed


# --- the cost of asking -------------------------------------------------------------------


def test_can_withdraw_with_withdrawals_in_two_currencies_takes_three_queries(
    rates, django_assert_num_queries
):
    trader = TraderFactory(kyc_level=2)
    wallet(trader, "USD", fund="100000")
    wallet(trader, "EUR", fund="100000")
    for amount in ("100", "200", "300"):
        withdraw(trader, amount, "USD")
        withdraw(trader, amount, "EUR")
    selectors.rate_memo_clear()
    # The client's level (with its limits currency); the sums of the day and
    # of the month in every currency, in one query; the EUR rate, read once
    # for the EUR totals and the EUR amount asked about alike.
    with django_assert_num_queries(3):
        assert can_withdraw(trader, Decimal("100"), "EUR").allowed
    # The rate is then reused for a minute (selectors.LIMIT_RATE_CACHE_SECONDS).
    with django_assert_num_queries(2):
        assert can_withdraw(trader, Decimal("100"), "USD").allowed
    assert selectors.withdrawal_usage(trader, "USD").day == Decimal("1260")  # 600 + 600 × 1.10
    # A refusal over the limit also looks up the level that would allow it.
    with django_assert_num_queries(3):
        assert not can_withdraw(trader, Decimal("30000"), "USD").allowed
    # A level that allows no withdrawals answers without summing anything.
    set_kyc_level(trader, 0)
    with django_assert_num_queries(2):
        assert not can_withdraw(trader, Decimal("100"), "EUR").allowed


def test_limits_convert_at_a_rate_at_most_a_minute_old(rates):
    trader = TraderFactory(kyc_level=0)
    deposit(trader, "800", "EUR")  # 880 USD at 1.10
    assert selectors.deposit_usage(trader, "USD").day == Decimal("880")
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.20"))
    assert selectors.deposit_usage(trader, "USD").day == Decimal("880")  # the rate just read
    selectors.rate_memo_clear()  # as a minute later
    assert selectors.deposit_usage(trader, "USD").day == Decimal("960")
    assert selectors.LIMIT_RATE_CACHE_SECONDS == 60
