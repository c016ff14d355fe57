"""Reads for the trader's trading-account pages: the trader's accounts (as
cards with their figures formatted), one account checked against its owner,
and the account types the trader may open (live and demo apart)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import QuerySet
from django.http import Http404

from backoffice.money import from_minor

from .. import roles
from ..models import AccountType, TradingAccount, User
from ..platforms import GATEWAYS
from . import staff_role_names


def money_display(minor: int | None, digits: int) -> str:
    """``1234567`` with 2 digits → ``"12,345.67"`` (no float on the way)."""
    if minor is None:
        return "—"
    value: Decimal = from_minor(minor, digits)
    return f"{value:,.{digits}f}"


@dataclass(frozen=True)
class TradingAccountCard:
    """An account with its cached figures ready to show."""

    account: TradingAccount
    balance: str
    equity: str
    margin: str
    free_margin: str
    margin_level: str  # "—" without open positions

    @classmethod
    def of(cls, account: TradingAccount) -> TradingAccountCard:
        digits = account.currency_digits
        level = account.margin_level
        return cls(
            account=account,
            balance=money_display(account.balance, digits),
            equity=money_display(account.equity, digits),
            margin=money_display(account.margin, digits),
            free_margin=money_display(account.free_margin, digits),
            margin_level="—" if level is None else f"{level:,.2f} %",
        )

    @property
    def is_active(self) -> bool:
        return self.account.status == TradingAccount.ACTIVE


def _accounts_of(user: User) -> QuerySet[TradingAccount]:
    return TradingAccount.objects.filter(user=user).select_related("platform", "account_type")


def trading_accounts_for_user(*, user: User) -> list[TradingAccountCard]:
    """Every account of the trader, active ones first, newest first: one query."""
    accounts = _accounts_of(user).order_by("status", "-created_at", "-id")
    return [TradingAccountCard.of(account) for account in accounts]


def trading_account_get_for_user(*, user: User, account_id: int | str) -> TradingAccount:
    """The trader's own account, or 404 (another trader's id included)."""
    try:
        return _accounts_of(user).get(pk=int(account_id))
    except (TradingAccount.DoesNotExist, TypeError, ValueError):
        raise Http404("No such trading account.") from None


def _opens_accounts(kind: str) -> bool:
    """Whether the platform implementation can open accounts (a file-import
    platform only receives deal reports); False when it cannot be loaded."""
    try:
        return bool(GATEWAYS.get(kind).live_operations)
    except (KeyError, ImportError):
        return False


@dataclass(frozen=True)
class AvailableAccountTypes:
    live: list[AccountType] = field(default_factory=list)
    demo: list[AccountType] = field(default_factory=list)

    @property
    def all(self) -> list[AccountType]:
        return [*self.live, *self.demo]

    def __bool__(self) -> bool:
        return bool(self.live or self.demo)


def account_types_available(*, user: User) -> AvailableAccountTypes:
    """The account types a trader may pick: active, on an enabled platform
    that opens accounts; live and demo apart, in the broker's order. Whether
    a live account is allowed *now* (KYC, restrictions) is the policy's
    answer when opening, with what would unlock it."""
    types = (
        AccountType.objects.filter(is_active=True, platform__enabled=True)
        .select_related("platform")
        .order_by("display_order", "name", "pk")
    )
    live: list[AccountType] = []
    demo: list[AccountType] = []
    opens: dict[str, bool] = {}
    for account_type in types:
        kind = account_type.platform.kind
        if kind not in opens:
            opens[kind] = _opens_accounts(kind)
        if opens[kind]:
            (demo if account_type.is_demo else live).append(account_type)
    return AvailableAccountTypes(live=live, demo=demo)


def platform_server_name(account: TradingAccount) -> str:
    """The server the trader types into the platform's terminal, when the
    platform's settings name one (``server_name``)."""
    return str((account.platform.settings or {}).get("server_name") or "").strip()


def trading_account_operable(account: TradingAccount) -> bool:
    """Whether the trader can act on the account (refresh, leverage,
    password): active, on an enabled platform that opens accounts. Archived
    accounts, and accounts known only from deal reports, are read-only."""
    return (
        account.status == TradingAccount.ACTIVE
        and account.platform.enabled
        and _opens_accounts(account.platform.kind)
    )


def trading_accounts_visible_to(*, staff: User) -> QuerySet[TradingAccount]:
    """The trading accounts a staff member may see: the same rule as
    :func:`accounts.selectors.clients_visible_to` (a sales manager with no
    other role sees only the accounts of the clients assigned to them)."""
    qs = TradingAccount.objects.all()
    if staff.is_superuser or staff_role_names(staff) & set(roles.ALL_CLIENTS_ROLES):
        return qs
    return qs.filter(user__profile__manager=staff)
