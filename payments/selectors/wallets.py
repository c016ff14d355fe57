"""Reads of the payments app: wallets, their history, ledger invariants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Q, Sum
from django.http import Http404

from ..models import Currency, Entry, JournalTransaction, LedgerAccount


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
    wallet: LedgerAccount,
    before_id: int | None = None,
    kind: str | None = None,
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
    qs = Entry.objects.filter(account=wallet)
    if kind:
        qs = qs.filter(transaction__kind=kind)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    by_time = since is not None or until is not None
    if before_id is not None:
        if by_time:
            cursor_time = (
                Entry.objects.filter(account=wallet, id=before_id)
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
    return HistoryPage(entries=rows[:limit], next_cursor=next_cursor)


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
