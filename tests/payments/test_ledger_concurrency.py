"""The ledger under real concurrency, on PostgreSQL: threads with their own
connections post at once on a few shared wallets.

What is proven: wallets locked in a fixed order never deadlock, even with
transfers both ways between the same pair and multi-wallet postings given in
any line order; no wallet goes negative; double entry holds; money is
conserved (wallets + pending withdrawals = deposits - payouts); one
idempotency key gives one transaction however many callers race for it, and a
transaction is reversed once however many reversals race.
"""

from __future__ import annotations

import contextlib
import importlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.apps import apps as django_apps
from django.db import connection, connections

from payments import services
from payments.exceptions import IdempotencyConflict, InsufficientFunds, LedgerError
from payments.models import JournalTransaction, LedgerAccount
from payments.selectors import ledger_check, system_account_balance
from payments.services import Line
from tests.conftest import require_or_skip
from tests.factories import TraderFactory

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8
OPERATIONS_PER_THREAD = 150
TIME_LIMIT_S = 20  # each thread stops early past this, whatever it has done
WALLETS = 4
OPENING_BALANCE = 50_000


@pytest.fixture(autouse=True)
def _postgresql_only():
    require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")


@pytest.fixture(autouse=True)
def _currencies(_postgresql_only):
    """The flush after any transactional test empties every table, also the
    currencies a data migration adds: put them back (idempotent)."""
    migration = importlib.import_module("payments.migrations.0002_currencies_and_ledger_triggers")
    migration.add_currencies(django_apps, None)


def run_in_threads(work: Callable[[int], None], threads: int = THREADS) -> list[BaseException]:
    """Run ``work(i)`` in ``threads`` threads started together, each on its own
    database connection (closed at the end); return what they raised."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def body(index: int) -> None:
        try:
            start.wait()
            work(index)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    pool = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in pool), "a thread hangs (lock wait?)"
    return errors


def funded_wallets(count: int, amount: int) -> list[LedgerAccount]:
    funding = services.system_account("funding", "USD")
    wallets = []
    for index in range(count):
        wallet = services.wallet_open(user=TraderFactory(), currency="USD")
        services.ledger_post(
            kind="deposit",
            idempotency_key=f"deposit:{index}",
            lines=[Line(wallet, amount), Line(funding, -amount)],
        )
        wallets.append(wallet)
    return wallets


def test_concurrent_transfers_and_withdrawals_keep_the_ledger_consistent():
    wallets = funded_wallets(WALLETS, OPENING_BALANCE)
    funding = services.system_account("funding", "USD")
    pending = services.system_account("withdrawals_pending", "USD")
    payout = services.system_account("psp_clearing:x", "USD")
    reserved: list[tuple[int, LedgerAccount, int]] = []  # (reserve journal id, wallet, amount)
    reserved_lock = threading.Lock()
    outcomes: Counter[str] = Counter()

    def work(index: int) -> None:
        rng = random.Random(index)
        deadline = time.monotonic() + TIME_LIMIT_S
        for n in range(OPERATIONS_PER_THREAD):
            if time.monotonic() > deadline:
                break
            key = f"t{index}:{n}"
            operation = rng.choice(["transfer", "transfer", "split", "gather", "reserve", "settle"])
            a, b, c = rng.sample(wallets, 3)
            amount = rng.randint(1, 8_000)
            try:
                if operation == "transfer":  # both directions between each pair happen
                    lines = [Line(a, -amount), Line(b, amount)]
                elif operation == "split":  # one wallet pays two
                    lines = [Line(a, -2 * amount), Line(b, amount), Line(c, amount)]
                elif operation == "gather":  # two wallets pay one
                    lines = [Line(a, -amount), Line(b, -amount), Line(c, 2 * amount)]
                elif operation == "reserve":
                    lines = [Line(a, -amount), Line(pending, amount)]
                else:
                    settle(rng)
                    outcomes["settle"] += 1
                    continue
                rng.shuffle(lines)  # the service, not the caller, orders the locks
                journal = services.ledger_post(kind=operation, idempotency_key=key, lines=lines)
                if operation == "reserve":
                    with reserved_lock:
                        reserved.append((journal.pk, a, amount))
                outcomes[operation] += 1
            except InsufficientFunds:
                outcomes["insufficient funds"] += 1

    def settle(rng: random.Random) -> None:
        """Pay or reject a pending withdrawal. Two threads may pick the same
        one: its key lets it be settled once, a different decision conflicts."""
        with reserved_lock:
            if not reserved:
                return
            reserve_id, wallet, amount = rng.choice(reserved)
        pay = rng.random() < 0.5
        try:
            services.ledger_post(
                kind="withdrawal_pay" if pay else "withdrawal_reject",
                idempotency_key=f"settle:{reserve_id}",
                lines=[Line(pending, -amount), Line(payout if pay else wallet, amount)],
            )
        except IdempotencyConflict:
            outcomes["settle raced, other decision"] += 1
        with reserved_lock:
            if (reserve_id, wallet, amount) in reserved:
                reserved.remove((reserve_id, wallet, amount))

    errors = run_in_threads(work)

    assert not errors, errors  # among them: no "deadlock detected"
    assert outcomes["transfer"] and outcomes["split"] and outcomes["gather"], outcomes
    assert not LedgerAccount.objects.filter(kind=LedgerAccount.WALLET, balance__lt=0).exists()
    check = ledger_check()
    assert check.ok, check
    in_wallets = sum(
        LedgerAccount.objects.filter(pk__in=[w.pk for w in wallets]).values_list(
            "balance", flat=True
        )
    )
    deposited = -system_account_balance(account=funding)
    paid_out = system_account_balance(account=payout)
    assert deposited == WALLETS * OPENING_BALANCE
    assert in_wallets + system_account_balance(account=pending) == deposited - paid_out
    # Each withdrawal was settled at most once, and what is pending is exactly
    # the reserves not settled.
    settled = set(
        JournalTransaction.objects.filter(idempotency_key__startswith="settle:").values_list(
            "idempotency_key", flat=True
        )
    )
    unsettled = [
        journal.entries.get(account=pending).amount
        for journal in JournalTransaction.objects.filter(kind="reserve")
        if f"settle:{journal.pk}" not in settled
    ]
    assert system_account_balance(account=pending) == sum(unsettled)


def test_one_idempotency_key_from_many_threads_posts_once():
    a, b = funded_wallets(2, 10_000)
    results: list[JournalTransaction] = []

    def work(index: int) -> None:
        results.append(
            services.ledger_post(
                kind="transfer", idempotency_key="same", lines=[Line(a, -100), Line(b, 100)]
            )
        )

    assert run_in_threads(work) == []
    assert JournalTransaction.objects.filter(idempotency_key="same").count() == 1
    assert len({journal.pk for journal in results}) == 1
    assert sorted(journal.replayed for journal in results) == [False] + [True] * (THREADS - 1)
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance) == (9_900, 10_100)
    assert ledger_check().ok


def test_one_idempotency_key_with_different_requests_posts_one_of_them():
    a, b = funded_wallets(2, 10_000)
    results: dict[int, JournalTransaction] = {}

    def amount(index: int) -> int:
        return 100 if index % 2 else 200

    def work(index: int) -> None:
        lines = [Line(a, -amount(index)), Line(b, amount(index))]
        with contextlib.suppress(IdempotencyConflict):
            results[index] = services.ledger_post(
                kind="transfer", idempotency_key="same", lines=lines
            )

    assert run_in_threads(work) == []
    journal = JournalTransaction.objects.get(idempotency_key="same")
    posted = journal.entries.get(account=b).amount
    # Every caller who sent the request that won got its transaction; every
    # other caller got a conflict, never a second transaction.
    assert sorted(results) == [i for i in range(THREADS) if amount(i) == posted]
    assert {j.pk for j in results.values()} == {journal.pk}
    b.refresh_from_db()
    assert b.balance == 10_000 + posted
    assert ledger_check().ok


def test_a_transaction_is_reversed_once_when_reversals_race():
    a, b = funded_wallets(2, 10_000)
    journal = services.ledger_post(
        kind="transfer", idempotency_key="t", lines=[Line(a, -700), Line(b, 700)]
    )
    outcomes: list[str] = []

    def work(index: int) -> None:
        # Half the callers retry with the default key, half use their own key.
        key = None if index % 2 else f"reverse:{index}"
        try:
            reversal = services.ledger_reverse(
                journal=journal, actor=None, reason="race", idempotency_key=key
            )
            outcomes.append("replayed" if reversal.replayed else "reversed")
        except LedgerError:
            outcomes.append("refused")

    assert run_in_threads(work) == []
    assert outcomes.count("reversed") == 1, outcomes
    assert JournalTransaction.objects.filter(reverses=journal).count() == 1
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance) == (10_000, 10_000)
    assert ledger_check().ok
