"""The contract between the accounts/payments services and a trading platform.

A gateway is built around one configured :class:`~accounts.models.Platform`
(``self.platform``; settings in ``self.settings``, decrypted secrets in
``self.secrets``). It talks to the platform and translates; it never touches
the ledger or our models' statuses. Amounts cross this boundary as
``Decimal`` in the account's currency.

Errors: :class:`PlatformError` says the platform refused or could not be
reached *before* anything could have happened (``permanent`` says whether
retrying can help); :class:`OutcomeUnknown` says the request may or may not
have been applied (a timeout after sending, a dropped connection): the caller
must then ask :meth:`PlatformGateway.balance_operation_find` before doing
anything else, never retry blindly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from backoffice.secrets import decrypt


class PlatformError(Exception):
    """The platform refused, or was not reached. ``permanent``: retrying the
    same request cannot help (bad login, not enough free margin, ...)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class OutcomeUnknown(PlatformError):
    """The request was sent but no answer came back: it may have been applied."""

    def __init__(self, message: str = "The trading platform did not answer in time.") -> None:
        super().__init__(message, permanent=False)


@dataclass(frozen=True)
class AccountState:
    balance: Decimal
    equity: Decimal
    margin: Decimal
    free_margin: Decimal
    margin_level: Decimal | None  # percent; None without open positions
    leverage: int | None = None


@dataclass(frozen=True)
class DealRecord:
    """One closed trade as the platform reports it. ``profit``, ``commission``
    and ``swap`` are in the account's currency (negative: a loss or a charge)."""

    ticket: int
    login: str
    symbol: str
    side: str  # "buy" or "sell"
    volume: Decimal  # lots
    open_time: datetime
    close_time: datetime
    open_price: Decimal
    close_price: Decimal
    profit: Decimal
    commission: Decimal = Decimal("0")
    swap: Decimal = Decimal("0")


@dataclass(frozen=True)
class DealsPage:
    """Deals after a cursor; ``cursor`` is where the next call starts (stored
    on the platform row after the deals are saved); ``more``: call again now."""

    deals: list[DealRecord] = field(default_factory=list)
    cursor: str = ""
    more: bool = False


class PlatformGateway:
    #: Shown in the admin when choosing an implementation.
    label = ""
    #: The names of the secrets this implementation reads from ``self.secrets``.
    secret_names: tuple[str, ...] = ()
    #: Settings keys it needs (the admin refuses a configuration without them).
    required_settings: tuple[str, ...] = ()
    #: Whether accounts can be opened and funded through it (a file-import
    #: platform only receives deal reports).
    live_operations = True

    def __init__(self, platform) -> None:
        self.platform = platform
        self.settings = dict(platform.settings or {})
        self.secrets = decrypt(platform.secrets)

    def account_create(
        self,
        *,
        group: str,
        currency: str,
        currency_digits: int,
        leverage: int,
        name: str,
        email: str,
        password: str,
        investor_password: str,
    ) -> str:
        """Create the account on the platform; return its login."""
        raise NotImplementedError

    def leverage_change(self, *, login: str, leverage: int) -> None:
        raise NotImplementedError

    def password_change(self, *, login: str, password: str) -> None:
        """Set the main (trading) password."""
        raise NotImplementedError

    def balance_operation(self, *, login: str, amount: Decimal, comment: str, key: str) -> str:
        """Credit (positive) or debit (negative) the account's balance; return
        the platform's ticket. ``key`` identifies the operation: the gateway
        must make it findable by :meth:`balance_operation_find` (MT5 keeps it
        in the deal's comment). A debit beyond the free margin is refused with
        a permanent :class:`PlatformError`."""
        raise NotImplementedError

    def balance_operation_find(self, *, login: str, key: str) -> str | None:
        """The ticket of the balance operation made with ``key``, or ``None``
        when the platform has no such operation."""
        raise NotImplementedError

    def account_state(self, *, login: str) -> AccountState:
        raise NotImplementedError

    def deals_since(self, cursor: str, *, limit: int = 10_000) -> DealsPage:
        """Closed deals after ``cursor`` ("" = from the beginning), oldest first."""
        raise NotImplementedError
