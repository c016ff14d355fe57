"""Writes of the payments app. Every movement of money goes through
:func:`ledger_post`: one journal transaction, entries summing to zero per
currency, wallets locked in a fixed order and never negative, idempotent by
key."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import BigIntegerField, Case, Q, Value, When
from django.utils import timezone

from backoffice.events import publish
from backoffice.money import MoneyError, to_minor

from ..exceptions import (
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    UnbalancedTransaction,
)
from ..models import Currency, Entry, JournalTransaction, LedgerAccount, Withdrawal


@dataclass(frozen=True)
class Line:
    """One leg of a posting: ``amount`` minor units into ``account`` (negative: out)."""

    account: LedgerAccount
    amount: int


def _request_hash(kind: str, lines: Sequence[Line], metadata: dict[str, Any]) -> str:
    canonical = json.dumps(
        {
            "kind": kind,
            "lines": sorted([line.account.pk, line.amount] for line in lines),
            "metadata": metadata,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validate(lines: Sequence[Line]) -> None:
    if len(lines) < 2:
        raise UnbalancedTransaction("A posting needs at least two entries.")
    totals: dict[str, int] = defaultdict(int)
    for line in lines:
        if not isinstance(line.amount, int) or isinstance(line.amount, bool):
            raise LedgerError("Ledger amounts are integers in minor units.")
        if line.amount == 0:
            raise LedgerError("A ledger entry cannot be zero.")
        if line.account.pk is None:
            raise LedgerError("Post to saved ledger accounts only.")
        totals[line.account.currency_id] += line.amount
    unbalanced = {code: total for code, total in totals.items() if total != 0}
    if unbalanced:
        raise UnbalancedTransaction(f"Entries do not sum to zero per currency: {unbalanced}")


def ledger_post(
    *,
    kind: str,
    idempotency_key: str,
    lines: Sequence[Line],
    actor=None,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    reverses: JournalTransaction | None = None,
) -> JournalTransaction:
    """Post one balanced journal transaction, exactly once per idempotency key.

    The same key with the same request returns the first transaction (with
    ``replayed = True``); the same key with a different request raises
    :class:`IdempotencyConflict`. Wallets are locked in id order; one that
    would go negative raises :class:`InsufficientFunds` and nothing is written.
    """
    metadata = metadata or {}
    _validate(lines)
    request_hash = _request_hash(kind, lines, metadata)
    try:
        # One atomic block: a transaction of its own when called alone (no
        # savepoint), one savepoint inside a caller's transaction.
        with transaction.atomic():
            post = _post_in_database if connection.vendor == "postgresql" else _post
            return post(
                kind=kind,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                lines=lines,
                actor=actor,
                description=description,
                metadata=metadata,
                reverses=reverses,
            )
    except IntegrityError:
        # Rolled back, nothing written. The usual cause: the key was taken
        # (a replay, or a concurrent request with the same key that committed
        # first). Looking it up is cheaper than checking on every posting.
        existing = JournalTransaction.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return _replay(existing, request_hash)
        if reverses is not None and JournalTransaction.objects.filter(reverses=reverses).exists():
            # Not the key but the one-to-one ``reverses``: a concurrent
            # reversal of the same transaction, under another key, won.
            raise LedgerError(f"Transaction #{reverses.pk} was already reversed.") from None
        raise


def _post(
    *, kind, idempotency_key, request_hash, lines, actor, description, metadata, reverses
) -> JournalTransaction:
    # The journal row is written first: its unique key serialises concurrent
    # requests with the same key (the second waits on the index, then fails)
    # before any wallet is locked.
    journal = JournalTransaction.objects.create(
        kind=kind,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        description=description[:255],
        metadata=metadata,
        actor=actor if actor is not None and actor.pk else None,
        reverses=reverses,
        created_at=timezone.now(),
    )
    deltas: dict[int, int] = defaultdict(int)
    wallets: dict[int, LedgerAccount] = {}
    for line in lines:
        if line.account.kind == LedgerAccount.WALLET:
            deltas[line.account.pk] += line.amount
            wallets[line.account.pk] = line.account
    balances_after = _apply_to_wallets(deltas, wallets)

    Entry.objects.bulk_create(
        Entry(
            transaction=journal,
            account_id=line.account.pk,
            currency_id=line.account.currency_id,
            amount=line.amount,
            balance_after=balances_after.get(line.account.pk),
            created_at=journal.created_at,
        )
        for line in lines
    )
    journal.replayed = False
    return journal


# SQLSTATE raised by the payments_ledger_post database function when a wallet
# would go negative (migration 0007).
INSUFFICIENT_FUNDS_SQLSTATE = "BO001"
_POST_SQL = "SELECT * FROM payments_ledger_post(%s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s)"


def _post_in_database(
    *, kind, idempotency_key, request_hash, lines, actor, description, metadata, reverses
) -> JournalTransaction:
    """The same posting as :func:`_post`, in one round trip: the database
    function takes the key, locks the wallets in id order, checks and updates
    their balances and writes the entries (measured in docs/PERFORMANCE.md)."""
    created_at = timezone.now()
    actor_id = actor.pk if actor is not None and actor.pk else None
    description = description[:255]
    metadata_json = json.dumps(metadata, sort_keys=True, default=str)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                _POST_SQL,
                [
                    kind,
                    idempotency_key,
                    request_hash,
                    description,
                    metadata_json,
                    actor_id,
                    reverses.pk if reverses is not None else None,
                    created_at,
                    [line.account.pk for line in lines],
                    [line.amount for line in lines],
                ],
            )
            journal_id, replayed, stored_hash = cursor.fetchone()
    except DatabaseError as exc:
        cause = exc.__cause__
        if getattr(cause, "pgcode", None) != INSUFFICIENT_FUNDS_SQLSTATE:
            raise
        account_id, needed, available = (int(x) for x in cause.diag.message_detail.split(","))
        wallet = next(line.account for line in lines if line.account.pk == account_id)
        raise InsufficientFunds(wallet, needed, available) from None
    if replayed:
        if stored_hash != request_hash:
            raise IdempotencyConflict(
                f"Idempotency key {idempotency_key!r} was used for a different request."
            )
        existing = JournalTransaction.objects.get(pk=journal_id)
        existing.replayed = True
        return existing
    journal = JournalTransaction(
        pk=journal_id,
        kind=kind,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        description=description,
        metadata=json.loads(metadata_json),
        actor_id=actor_id,
        reverses=reverses,
        created_at=created_at,
    )
    journal._state.adding = False
    journal.replayed = False
    return journal


def _replay(existing: JournalTransaction, request_hash: str) -> JournalTransaction:
    if existing.request_hash != request_hash:
        raise IdempotencyConflict(
            f"Idempotency key {existing.idempotency_key!r} was used for a different request."
        )
    existing.replayed = True
    return existing


def _apply_to_wallets(deltas: dict[int, int], wallets: dict[int, LedgerAccount]) -> dict[int, int]:
    """Lock the wallets (in id order, so that postings never deadlock), check
    and update their running balances in one statement. Returns the balances
    after."""
    if not deltas:
        return {}
    locked = list(
        LedgerAccount.objects.select_for_update()
        .filter(pk__in=deltas.keys(), kind=LedgerAccount.WALLET)
        .order_by("pk")
        .values_list("pk", "balance")
    )
    if len(locked) != len(deltas):
        raise LedgerError("A wallet of this posting does not exist.")
    after: dict[int, int] = {}
    for pk, balance in locked:
        after[pk] = balance + deltas[pk]
        if after[pk] < 0:
            raise InsufficientFunds(wallets[pk], -deltas[pk], balance)
    changed = [pk for pk in after if deltas[pk]]
    if changed:
        LedgerAccount.objects.filter(pk__in=changed).update(
            balance=Case(
                *(When(pk=pk, then=Value(after[pk])) for pk in changed),
                output_field=BigIntegerField(),
            )
        )
    return after


@transaction.atomic
def ledger_reverse(
    *, journal: JournalTransaction, actor, reason: str, idempotency_key: str | None = None
) -> JournalTransaction:
    """Post the mirror image of a transaction. A transaction is reversed once
    (a reversal is itself never reversed: post a new transaction instead)."""
    key = idempotency_key or f"reversal:{journal.pk}"
    already = JournalTransaction.objects.filter(reverses=journal).first()
    if already is not None and already.idempotency_key != key:
        raise LedgerError(f"Transaction #{journal.pk} was already reversed by #{already.pk}.")
    if journal.reverses_id is not None:
        raise LedgerError("A reversal cannot be reversed; post a new transaction.")
    refusal = workflow_reversal_refusal(journal)
    if refusal:
        raise LedgerError(refusal)
    entries = list(journal.entries.select_related("account"))
    reversal = ledger_post(
        kind="reversal",
        idempotency_key=key,
        lines=[Line(e.account, -e.amount) for e in entries],
        actor=actor,
        description=f"Reversal of #{journal.pk}: {reason}"[:255],
        metadata={"reverses": journal.pk, "reason": reason},
        reverses=journal,
    )
    if not reversal.replayed:
        owners = {e.account.owner_id for e in entries if e.account.owner_id is not None}
        payload = {"reverses": journal.pk, "reversal": reversal.pk, "reason": reason}
        for owner in get_user_model().objects.filter(pk__in=owners):
            publish("ledger.reversed", reversal, payload, client=owner, actor=actor)
        if not owners:
            publish("ledger.reversed", reversal, payload, actor=actor)
    return reversal


def workflow_reversal_refusal(journal: JournalTransaction) -> str:
    """Why a withdrawal's own posting (reserve, payout, release) cannot be
    reversed by hand, or "": reversing it would leave the withdrawal's status
    and the pending account out of step (a reversed reserve could still be
    paid out). The withdrawal's own actions move that money."""
    withdrawal = (
        Withdrawal.objects.filter(
            Q(reserve_journal=journal) | Q(settle_journal=journal) | Q(release_journal=journal)
        )
        .only("reference")
        .first()
    )
    if withdrawal is None:
        return ""
    return (
        f"Transaction #{journal.pk} belongs to withdrawal {withdrawal.reference}: "
        "reject or cancel the withdrawal instead of reversing its postings."
    )


def currency_get(code: str) -> Currency:
    try:
        return Currency.objects.get(code=code.upper(), is_active=True)
    except Currency.DoesNotExist as exc:
        raise LedgerError(f"Unknown currency {code!r}.") from exc


@transaction.atomic
def wallet_open(*, user, currency: Currency | str) -> LedgerAccount:
    """The user's wallet in this currency, created if missing (idempotent;
    ``get_or_create`` relies on the unique constraint when two requests race)."""
    if isinstance(currency, str):
        currency = currency_get(currency)
    wallet, created = LedgerAccount.objects.get_or_create(
        kind=LedgerAccount.WALLET, owner=user, currency=currency
    )
    if created:
        publish("wallet.opened", wallet, {"currency": currency.code}, client=user)
    return wallet


def system_account(code: str, currency: Currency | str) -> LedgerAccount:
    """The system account ``code`` in this currency, created if missing."""
    currency_code = currency.code if isinstance(currency, Currency) else currency
    account, _ = LedgerAccount.objects.get_or_create(
        kind=LedgerAccount.SYSTEM, code=code, currency_id=currency_code
    )
    return account


ADJUSTMENTS = "adjustments"


@transaction.atomic
def wallet_adjust(
    *, actor, wallet: LedgerAccount, amount: Decimal, reason: str, idempotency_key: str
) -> JournalTransaction:
    """A manual credit (positive) or debit (negative) of a wallet by Finance,
    against the adjustments system account. Audited as an event."""
    if not reason.strip():
        raise LedgerError("Give the reason for the adjustment.")
    try:
        minor = to_minor(amount, wallet.currency.exponent)
    except MoneyError as exc:
        raise LedgerError(str(exc)) from exc
    if minor == 0:
        raise LedgerError("The amount cannot be zero.")
    journal = ledger_post(
        kind="adjustment",
        idempotency_key=idempotency_key,
        lines=[
            Line(wallet, minor),
            Line(system_account(ADJUSTMENTS, wallet.currency_id), -minor),
        ],
        actor=actor,
        description=reason,
        metadata={"reason": reason},
    )
    if journal.replayed:
        return journal
    publish(
        "wallet.adjusted",
        journal,
        {"wallet": wallet.pk, "amount": str(amount), "currency": wallet.currency_id},
        client=wallet.owner,
        actor=actor,
    )
    return journal
