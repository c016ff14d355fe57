"""The payments admin, one module per area. Importing them registers them."""

from . import ledger  # noqa: F401
