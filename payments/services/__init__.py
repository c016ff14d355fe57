"""Writes of the payments app, one module per area:

- :mod:`.ledger`: the double-entry ledger (every movement of money goes through
  :func:`ledger_post`), wallets, system accounts, manual adjustments;
- :mod:`.deposits`: deposits through payment methods and PSP webhooks;
- :mod:`.withdrawals`: withdrawal requests, approvals, payouts;
- :mod:`.rates`: exchange rates from rate providers;
- :mod:`.conversions`: quoted conversions and internal transfers.

The ledger's functions are re-exported here (``services.ledger_post``).
"""

from .ledger import (
    ADJUSTMENTS,
    Line,
    currency_get,
    ledger_post,
    ledger_reverse,
    system_account,
    wallet_adjust,
    wallet_open,
)

__all__ = [
    "ADJUSTMENTS",
    "Line",
    "currency_get",
    "ledger_post",
    "ledger_reverse",
    "system_account",
    "wallet_adjust",
    "wallet_open",
]
