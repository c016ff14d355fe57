"""Reads of the trader's transfer pages between wallets and trading accounts.

Every id or reference from a request goes through an access getter here:
another trader's account or transfer, and a demo account, are a 404.
"""

from __future__ import annotations

from decimal import Decimal

from django.http import Http404

from accounts.models import TradingAccount

from ..models import Currency, LedgerAccount, TradingTransfer
from ..templatetags.payments import format_amount

RECENT_LIMIT = 10


def trading_account_get_for_transfer(*, user, account_id: int | str) -> TradingAccount:
    """The trader's own live trading account (archived ones included: their
    past transfers stay readable), or 404: another trader's, a demo account."""
    try:
        pk = int(account_id)
    except (TypeError, ValueError):
        raise Http404("No such trading account.") from None
    account = (
        TradingAccount.objects.filter(pk=pk, user=user, is_demo=False)
        .select_related("platform", "account_type")
        .first()
    )
    if account is None:
        raise Http404("No such trading account.")
    return account


def trading_transfer_get_for_user(*, user, reference: str) -> TradingTransfer:
    """The trader's own transfer by its reference (one query), or 404."""
    transfer = (
        TradingTransfer.objects.filter(reference=str(reference)[:32], user=user)
        .select_related("wallet__currency", "trading_account")
        .first()
    )
    if transfer is None:
        raise Http404("No such transfer.")
    return transfer


def trading_transfers_recent(
    *, account: TradingAccount, limit: int = RECENT_LIMIT
) -> list[TradingTransfer]:
    """The account's latest transfers, newest first (one query)."""
    transfers = list(
        TradingTransfer.objects.filter(trading_account=account)
        .select_related("wallet__currency")
        .order_by("-id")[:limit]
    )
    for transfer in transfers:
        transfer.trading_account = account  # no query per row
    return transfers


def first_transfer_minimum(account: TradingAccount) -> Decimal | None:
    """The account type's minimum while the account has never been funded
    (no transfer in that did not fail), else None: the rule the service
    applies (``payments.services.trading``)."""
    minimum = account.account_type.min_first_transfer
    if not minimum:
        return None
    funded = (
        TradingTransfer.objects.filter(trading_account=account, direction=TradingTransfer.IN)
        .exclude(status=TradingTransfer.FAILED)
        .exists()
    )
    return None if funded else minimum


def account_currency(account: TradingAccount, wallets: list[LedgerAccount]) -> Currency | None:
    """The ledger currency of the account's currency: taken from a wallet in
    that currency when the trader has one (no query), else read."""
    for wallet in wallets:
        if wallet.currency_id == account.currency:
            return wallet.currency
    return Currency.objects.filter(code=account.currency).first()


def account_money(minor: int | None, account: TradingAccount, currency: Currency | None) -> str:
    """An amount of the trading account (minor units of its platform digits)
    as the wallets show money: ``$1,234.56``; with the code when the
    currency is not one of ours."""
    if minor is None:
        return ""
    if currency is not None and currency.exponent >= account.currency_digits:
        return format_amount(minor * 10 ** (currency.exponent - account.currency_digits), currency)
    amount = account.major(minor)
    return f"{amount:,.{account.currency_digits}f}\u00a0{account.currency}"
