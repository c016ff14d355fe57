"""Reads of the payments app: wallets, their history, ledger invariants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.http import Http404

from ..models import (
    Currency,
    Deposit,
    Entry,
    JournalTransaction,
    LedgerAccount,
    TradingTransfer,
    Withdrawal,
)

# The status of a history line: a withdrawal's reserve shows its withdrawal's
# status as it moves; every other entry is a completed movement.
COMPLETED = "completed"
IN_PROGRESS = "in_progress"
RETURNED = "returned"
STATUS_FILTERS = {
    COMPLETED: "Completed",
    IN_PROGRESS: "In progress",
    RETURNED: "Rejected or cancelled",
}
_WITHDRAWAL_STATUS_FILTER = {
    IN_PROGRESS: [Withdrawal.PENDING, Withdrawal.APPROVED],
    RETURNED: [Withdrawal.REJECTED, Withdrawal.CANCELLED],
}
_TRADING_STATUS_FILTER = {
    IN_PROGRESS: list(TradingTransfer.OPEN_STATUSES),
    RETURNED: [TradingTransfer.FAILED],
}


def wallets_for_user(*, user) -> list[LedgerAccount]:
    return list(
        LedgerAccount.objects.filter(kind=LedgerAccount.WALLET, owner=user)
        .select_related("currency")
        .order_by("currency__display_order", "currency_id")
    )


def wallet_get_for_user(*, user, wallet_id: int) -> LedgerAccount:
    """The user's own wallet, or 404 (never another user's)."""
    wallet = (
        LedgerAccount.objects.filter(pk=wallet_id, kind=LedgerAccount.WALLET, owner=user)
        .select_related("currency")
        .first()
    )
    if wallet is None:
        raise Http404("No such wallet.")
    return wallet


def currencies_active() -> list[Currency]:
    return list(Currency.objects.filter(is_active=True))


@dataclass(frozen=True)
class HistoryPage:
    entries: list[Entry]
    next_cursor: int | None


def wallet_history(
    *,
    wallet: LedgerAccount | None = None,
    wallets: list[LedgerAccount] | None = None,
    before_id: int | None = None,
    kind: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
) -> HistoryPage:
    """A page of a wallet's entries, newest first, by keyset (no OFFSET, no
    COUNT): pass the returned ``next_cursor`` as ``before_id`` for the next.

    Without a period the order is the entry id (the account's history index).
    With a period it is (time, id), on the (account, time, id) index, so that a
    month a year ago is read directly instead of walking back to it; the
    cursor is still an entry id, whose time is looked up.
    """
    accounts = [wallet] if wallet is not None else list(wallets or [])
    if not accounts:
        return HistoryPage(entries=[], next_cursor=None)
    qs = (
        Entry.objects.filter(account__in=accounts)
        if len(accounts) > 1
        else (Entry.objects.filter(account=accounts[0]))
    )
    if kind:
        qs = qs.filter(transaction__kind=kind)
    if status:
        qs = _filter_status(qs, status)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    by_time = since is not None or until is not None
    if before_id is not None:
        if by_time:
            cursor_time = (
                Entry.objects.filter(account__in=accounts, id=before_id)
                .values_list("created_at", flat=True)
                .first()
            )
            if cursor_time is None:
                return HistoryPage(entries=[], next_cursor=None)
            qs = qs.filter(
                Q(created_at__lt=cursor_time) | Q(created_at=cursor_time, id__lt=before_id)
            )
        else:
            qs = qs.filter(id__lt=before_id)
    order = ("-created_at", "-id") if by_time else ("-id",)
    rows = list(qs.select_related("transaction").order_by(*order)[: limit + 1])
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    entries = rows[:limit]
    by_id = {account.pk: account for account in accounts}
    for entry in entries:
        entry.account = by_id[entry.account_id]  # with its currency, no query
    _attach_statuses(entries)
    return HistoryPage(entries=entries, next_cursor=next_cursor)


def _filter_status(qs, status: str):
    reserve_of = Withdrawal.objects.filter(reserve_journal_id=OuterRef("transaction_id"))
    # A transfer to a trading account debits the wallet at once; until the
    # platform has taken it, its line is in progress (failed: returned).
    trading_of = TradingTransfer.objects.filter(journal_id=OuterRef("transaction_id"))
    if status == COMPLETED:
        unfinished = reserve_of.exclude(status=Withdrawal.PAID)
        trading_unfinished = trading_of.exclude(status=TradingTransfer.COMPLETED)
        return qs.exclude(Exists(unfinished)).exclude(Exists(trading_unfinished))
    statuses = _WITHDRAWAL_STATUS_FILTER[status]
    trading = _TRADING_STATUS_FILTER[status]
    withdrawn = Exists(reserve_of.filter(status__in=statuses))
    return qs.filter(withdrawn | Exists(trading_of.filter(status__in=trading)))


def _attach_statuses(entries: list[Entry]) -> None:
    """``entry.status`` and ``entry.status_label`` for each line: one query
    for the withdrawals among them and one for the transfers to trading
    accounts, none when there are none."""
    reserves = [e.transaction_id for e in entries if e.transaction.kind == "withdrawal_reserve"]
    withdrawals = {}
    if reserves:
        withdrawals = {
            w.reserve_journal_id: w
            for w in Withdrawal.objects.filter(reserve_journal_id__in=reserves).only(
                "reserve_journal_id", "status", "reference"
            )
        }
    trading_ids = [e.transaction_id for e in entries if e.transaction.kind == "trading_transfer_in"]
    trading = {}
    if trading_ids:
        trading = {
            t.journal_id: t
            for t in TradingTransfer.objects.filter(journal_id__in=trading_ids).only(
                "journal_id", "status", "reference"
            )
        }
    for entry in entries:
        withdrawal = withdrawals.get(entry.transaction_id)
        transfer = trading.get(entry.transaction_id)
        if withdrawal is not None:
            entry.status = withdrawal.status
            entry.status_label = withdrawal.get_status_display().capitalize()
            entry.reference = withdrawal.reference
        elif transfer is not None and transfer.status != TradingTransfer.COMPLETED:
            failed = transfer.status == TradingTransfer.FAILED
            entry.status = "failed" if failed else "pending"
            entry.status_label = "Failed, returned" if failed else "In progress"
            entry.reference = transfer.reference
        else:
            entry.status, entry.status_label, entry.reference = COMPLETED, "Completed", ""


@dataclass(frozen=True)
class InProgress:
    deposits: list[Deposit]
    withdrawals: list[Withdrawal]

    def __bool__(self) -> bool:
        return bool(self.deposits or self.withdrawals)


IN_PROGRESS_LIMIT = 10


def wallet_in_progress(*, wallet: LedgerAccount) -> InProgress:
    """The wallet's deposits and withdrawals still moving (two queries)."""
    deposits = list(
        Deposit.objects.filter(
            wallet=wallet, status__in=[Deposit.CREATED, Deposit.PENDING, Deposit.FLAGGED]
        )
        .select_related("method", "currency")
        .order_by("-id")[:IN_PROGRESS_LIMIT]
    )
    withdrawals = list(
        Withdrawal.objects.filter(
            wallet=wallet, status__in=[Withdrawal.PENDING, Withdrawal.APPROVED]
        )
        .select_related("method")
        .order_by("-id")[:IN_PROGRESS_LIMIT]
    )
    return InProgress(deposits, withdrawals)


@dataclass(frozen=True)
class LedgerCheck:
    unbalanced_transactions: list[int]
    wallets_off_by_entries: list[int]
    negative_wallets: list[int]
    transactions_with_too_few_entries: list[int]

    @property
    def ok(self) -> bool:
        return not (
            self.unbalanced_transactions
            or self.wallets_off_by_entries
            or self.negative_wallets
            or self.transactions_with_too_few_entries
        )


def ledger_check() -> LedgerCheck:
    """Every invariant of the ledger, checked from the entries up."""
    unbalanced = sorted(
        {
            row["transaction_id"]
            for row in Entry.objects.values("transaction_id", "currency_id")
            .annotate(total=Sum("amount"))
            .exclude(total=0)
        }
    )
    sums = dict(
        Entry.objects.filter(account__kind=LedgerAccount.WALLET)
        .values_list("account_id")
        .annotate(total=Sum("amount"))
    )
    off = [
        wallet_id
        for wallet_id, balance in LedgerAccount.objects.filter(
            kind=LedgerAccount.WALLET
        ).values_list("id", "balance")
        if sums.get(wallet_id, 0) != balance
    ]
    negative = list(
        LedgerAccount.objects.filter(kind=LedgerAccount.WALLET, balance__lt=0).values_list(
            "id", flat=True
        )
    )
    thin = list(
        JournalTransaction.objects.annotate(n=Count("entries"))
        .filter(Q(n__lt=2))
        .values_list("id", flat=True)
    )
    return LedgerCheck(unbalanced, off, negative, thin)


def system_account_balance(*, account: LedgerAccount) -> int:
    """A system account keeps no running balance: it is the sum of entries."""
    return account.entries.aggregate(total=Sum("amount"))["total"] or 0
