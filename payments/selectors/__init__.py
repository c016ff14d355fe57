"""Reads of the payments app, one module per area (wallets and the ledger,
deposits, withdrawals, rates, conversions). The wallet and ledger reads are
re-exported here (``selectors.wallet_history``)."""

from .wallets import (
    STATUS_FILTERS,
    HistoryPage,
    InProgress,
    LedgerCheck,
    currencies_active,
    ledger_check,
    system_account_balance,
    wallet_get_for_user,
    wallet_history,
    wallet_in_progress,
    wallets_for_user,
)

__all__ = [
    "STATUS_FILTERS",
    "HistoryPage",
    "InProgress",
    "LedgerCheck",
    "currencies_active",
    "ledger_check",
    "system_account_balance",
    "wallet_get_for_user",
    "wallet_history",
    "wallet_in_progress",
    "wallets_for_user",
]
