"""Deposits, deals and rates for the CPA, revenue-share and payout tests
(through the services where one exists)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from accounts.models import Deal, TradingAccount
from payments.models import Deposit, PaymentMethod, Rate, RateSource
from payments.services import wallet_open
from payments.services.deposits import deposit_confirm, deposit_create
from tests.factories import open_trading_account

_tickets = itertools.count(7_000_000)


def set_rate(base: str, quote: str, rate: str) -> None:
    Rate.objects.update_or_create(
        source=RateSource.objects.get(identifier="manual"),
        base_id=base,
        quote_id=quote,
        defaults={"rate": Decimal(rate), "as_of": timezone.now()},
    )


def deposit(user, amount: str, currency: str = "USD") -> Deposit:
    """A completed bank-wire deposit of ``amount`` into the user's wallet
    (no fee: the wallet is credited the whole amount)."""
    method = PaymentMethod.objects.get(name="Bank wire")
    wallet = wallet_open(user=user, currency=currency)
    created = deposit_create(user=user, wallet=wallet, method=method, amount=Decimal(amount))
    change = deposit_confirm(deposit=created, amount=Decimal(amount), currency=currency)
    return change.deposit


def account_of(user, *, demo: bool = False) -> TradingAccount:
    return open_trading_account(user, type_name="Demo USD" if demo else "Standard USD")


def deal(
    account: TradingAccount,
    *,
    close_time: datetime,
    lots: str = "1",
    profit: int = 0,
    commission: int = 0,
    swap: int = 0,
) -> Deal:
    """A closed deal (money in minor units of the account's currency)."""
    return Deal.objects.create(
        platform_id=account.platform_id,
        ticket=next(_tickets),
        account=account,
        client_id=account.user_id,
        symbol="EURUSD",
        side=Deal.BUY,
        volume=Decimal(lots),
        open_time=close_time - timedelta(hours=1),
        close_time=close_time,
        open_price=Decimal("1.08000"),
        close_price=Decimal("1.08100"),
        profit=profit,
        commission=commission,
        swap=swap,
    )
