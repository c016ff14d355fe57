from decimal import Decimal

import pytest

from accounts.exceptions import TradingError
from accounts.models import AccountType, DemoPlatformAccount, TradingAccount
from accounts.services.trading import (
    trading_account_leverage_change,
    trading_account_open,
    trading_account_password_reset,
)
from backoffice import policies
from backoffice.models import Event
from tests.factories import TraderFactory, open_trading_account

pytestmark = pytest.mark.django_db


def test_demo_account_gets_virtual_money_from_the_platform_not_the_ledger():
    from payments.models import JournalTransaction

    trader = TraderFactory()
    account_type = AccountType.objects.get(name="Demo USD")
    opened = trading_account_open(user=trader, account_type=account_type, leverage=200)
    account = opened.account
    assert account.is_demo and account.leverage == 200
    assert account.balance == 1_000_000 and account.equity == 1_000_000
    assert account.state_updated_at is not None
    assert len(opened.password) == 12 and opened.password != opened.investor_password
    assert not JournalTransaction.objects.exists()
    platform_row = DemoPlatformAccount.objects.get(login=account.login)
    assert opened.password not in platform_row.password_hash
    assert Event.objects.filter(name="trading_account.opened", client=trader).count() == 1


def test_live_account_starts_empty_and_asks_the_policy():
    trader = TraderFactory()
    account = open_trading_account(trader)
    assert not account.is_demo and account.balance == 0

    def refuse(user, **context):
        return policies.Decision(False, "Verify your identity first.", unlock="Verify")

    policies.register("open_live_account", "test-refuse", refuse)
    try:
        with pytest.raises(TradingError, match="Verify your identity"):
            open_trading_account(trader)
        # A demo account needs no permission.
        open_trading_account(trader, type_name="Demo USD")
    finally:
        policies.unregister("open_live_account", "test-refuse")
    assert TradingAccount.objects.filter(user=trader).count() == 2


def test_leverage_only_within_the_types_choices():
    trader = TraderFactory()
    account = open_trading_account(trader)
    with pytest.raises(TradingError, match="not offered"):
        trading_account_leverage_change(user=trader, account=account, leverage=1000)
    trading_account_leverage_change(user=trader, account=account, leverage=500)
    assert DemoPlatformAccount.objects.get(login=account.login).leverage == 500
    assert TradingAccount.objects.get(pk=account.pk).leverage == 500


def test_another_trader_cannot_change_my_account():
    owner, other = TraderFactory(), TraderFactory()
    account = open_trading_account(owner)
    with pytest.raises(TradingError):
        trading_account_leverage_change(user=other, account=account, leverage=50)
    with pytest.raises(TradingError):
        trading_account_password_reset(user=other, account=account)


def test_password_reset_changes_the_platforms_password():
    from django.contrib.auth.hashers import check_password

    trader = TraderFactory()
    account = open_trading_account(trader)
    password = trading_account_password_reset(user=trader, account=account)
    assert check_password(
        password, DemoPlatformAccount.objects.get(login=account.login).password_hash
    )


def test_account_count_is_capped(settings):
    settings.TRADING_ACCOUNTS_PER_CLIENT = 2
    trader = TraderFactory()
    open_trading_account(trader, type_name="Demo USD")
    open_trading_account(trader, type_name="Demo USD")
    with pytest.raises(TradingError, match="at most 2"):
        open_trading_account(trader, type_name="Demo USD")
    assert AccountType.objects.get(name="Demo USD").demo_balance == Decimal("10000")
