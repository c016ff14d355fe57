"""The payments admin, one module per area. Importing them registers them."""

from . import (
    deposits,  # noqa: F401
    ledger,  # noqa: F401
    rates,  # noqa: F401
    trading,  # noqa: F401
    withdrawals,  # noqa: F401
)
