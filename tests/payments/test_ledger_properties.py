"""Property-based tests of the ledger: any sequence of money movements keeps
double entry, wallets non-negative and the balances a simple model predicts.

A hypothesis state machine drives the real services (``ledger_post`` and
``ledger_reverse``) with deposits (funding from a system account), transfers
between client wallets, conversions (four lines, two currencies, one
transaction), withdrawals (reserve to ``withdrawals_pending``, then pay to
``psp_clearing:x`` or reject back to the wallet), reversals, idempotent
replays and key conflicts. A plain-Python model predicts every balance and
which operations must be refused; a refused operation must change nothing.

Each hypothesis example runs inside its own savepoint that is rolled back at
the end (the TestCase pattern), so every example starts from the same empty
wallets, created once per test.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from django.db import connection, transaction
from django.db.models import Sum
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from payments import services
from payments.exceptions import IdempotencyConflict, InsufficientFunds, LedgerError
from payments.models import Entry, JournalTransaction, LedgerAccount
from payments.selectors import ledger_check, system_account_balance
from payments.services import Line
from tests.factories import TraderFactory

pytestmark = pytest.mark.django_db

CURRENCIES = ("USD", "EUR")
TRADERS = 3
FUNDING = "funding"
CONVERSION = "conversion"
PENDING = "withdrawals_pending"
PAYOUT = "psp_clearing:x"
# Rates as (numerator, denominator): to_minor = from_minor * num // den.
RATES = st.sampled_from([(1, 1), (92, 100), (108, 100), (3, 7), (7, 3), (1, 1000)])
WALLETS = TRADERS * len(CURRENCIES)
OPENING_DEPOSITS = st.lists(st.integers(0, 100_000), min_size=WALLETS, max_size=WALLETS)
TRADER = st.integers(0, TRADERS - 1)
CURRENCY = st.sampled_from(CURRENCIES)
DIRECTION = st.sampled_from([CURRENCIES, CURRENCIES[::-1]])
# Most amounts are a share (in %) of what the wallet holds; "all" and "all+1"
# probe the edge; absolute amounts are often more than the wallet holds.
AMOUNTS = st.one_of(
    st.integers(1, 100).map(lambda percent: ("share", percent)),
    st.sampled_from(["all", "all+1"]),
    st.integers(1, 20_000),
)

# 50 examples of up to 30 steps: about 12-14 s on PostgreSQL or SQLite here.
MACHINE_SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Accounts:
    """Wallets and system accounts made once per test, shared by all examples."""

    wallets: dict[tuple[int, str], LedgerAccount]  # (trader index, currency) -> wallet
    system: dict[tuple[str, str], LedgerAccount]  # (code, currency) -> account

    @property
    def all(self) -> list[LedgerAccount]:
        return [*self.wallets.values(), *self.system.values()]


@dataclass
class Posted:
    """A transaction the model knows: its lines as (account id, amount)."""

    journal: JournalTransaction
    key: str
    kind: str
    lines: list[tuple[int, int]]
    reversible: bool = True
    reversed: bool = False
    withdrawal: Withdrawal | None = None


@dataclass
class Withdrawal:
    wallet: LedgerAccount
    amount: int
    reserve: Posted | None = None
    state: str = "pending"  # pending, paid, rejected, cancelled (its reserve reversed)


@pytest.fixture
def accounts(db) -> Accounts:
    wallets = {}
    for index in range(TRADERS):
        trader = TraderFactory()
        for code in CURRENCIES:
            wallets[(index, code)] = services.wallet_open(user=trader, currency=code)
    system = {
        (code, currency): services.system_account(code, currency)
        for code in (FUNDING, CONVERSION, PENDING, PAYOUT)
        for currency in CURRENCIES
    }
    return Accounts(wallets, system)


class LedgerMachine(RuleBasedStateMachine):
    accounts: Accounts  # set by the test

    def __init__(self) -> None:
        super().__init__()
        # The TestCase pattern per example: a savepoint rolled back in teardown.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.balance = {account.pk: 0 for account in self.accounts.all}
        self.wallet_ids = {wallet.pk for wallet in self.accounts.wallets.values()}
        self.posted: list[Posted] = []
        self.withdrawals: list[Withdrawal] = []
        self.keys = itertools.count()

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers ------------------------------------------------------------------

    def sys(self, code: str, currency: str) -> LedgerAccount:
        return self.accounts.system[(code, currency)]

    def wallet(self, trader: int, currency: str) -> LedgerAccount:
        return self.accounts.wallets[(trader, currency)]

    def resolve(self, amount: int | str | tuple[str, int], available: int) -> int:
        if isinstance(amount, tuple):
            return max(available * amount[1] // 100, 1)
        if amount == "all":
            return max(available, 1)
        if amount == "all+1":
            return available + 1
        return amount

    def would_overdraw(self, lines: list[tuple[int, int]]) -> bool:
        after = dict(self.balance)
        for account_id, amount in lines:
            after[account_id] += amount
        return any(after[account_id] < 0 for account_id in self.wallet_ids)

    def snapshot(self) -> tuple:
        return (
            JournalTransaction.objects.count(),
            Entry.objects.count(),
            sorted(LedgerAccount.objects.values_list("pk", "balance")),
        )

    def post(self, kind: str, lines: list[Line], **extra) -> Posted | None:
        """Post through the service; the model says beforehand whether it must
        be refused (then nothing may change) or accepted (then apply it)."""
        key = f"{kind}:{next(self.keys)}"
        pairs = [(line.account.pk, line.amount) for line in lines]
        if self.would_overdraw(pairs):
            before = self.snapshot()
            with pytest.raises(InsufficientFunds):
                services.ledger_post(kind=kind, idempotency_key=key, lines=lines, **extra)
            assert self.snapshot() == before
            return None
        journal = services.ledger_post(kind=kind, idempotency_key=key, lines=lines, **extra)
        assert not journal.replayed
        self.apply(pairs)
        posted = Posted(journal, key, kind, pairs)
        self.posted.append(posted)
        return posted

    def apply(self, pairs: list[tuple[int, int]]) -> None:
        for account_id, amount in pairs:
            self.balance[account_id] += amount

    # --- operations ---------------------------------------------------------------

    @initialize(amounts=OPENING_DEPOSITS)
    def opening_deposits(self, amounts):
        for wallet, amount in zip(self.accounts.wallets.values(), amounts, strict=True):
            if amount:
                self.deposit_into(wallet, amount)

    def deposit_into(self, wallet: LedgerAccount, amount: int) -> None:
        funding = self.sys(FUNDING, wallet.currency_id)
        self.post("deposit", [Line(wallet, amount), Line(funding, -amount)])

    @rule(trader=TRADER, currency=CURRENCY, amount=st.integers(1, 50_000))
    def deposit(self, trader, currency, amount):
        self.deposit_into(self.wallet(trader, currency), amount)

    @rule(pair=st.permutations(range(TRADERS)), currency=CURRENCY, amount=AMOUNTS)
    def transfer(self, pair, currency, amount):
        source, target = self.wallet(pair[0], currency), self.wallet(pair[1], currency)
        minor = self.resolve(amount, self.balance[source.pk])
        self.post("transfer", [Line(source, -minor), Line(target, minor)])

    @rule(trader=TRADER, direction=DIRECTION, amount=AMOUNTS, rate=RATES)
    def convert(self, trader, direction, amount, rate):
        sell, buy = direction
        source, target = self.wallet(trader, sell), self.wallet(trader, buy)
        minor = self.resolve(amount, self.balance[source.pk])
        bought = minor * rate[0] // rate[1]
        lines = [
            Line(source, -minor),
            Line(self.sys(CONVERSION, sell), minor),
            Line(self.sys(CONVERSION, buy), -bought),
            Line(target, bought),
        ]
        if bought == 0:  # rounds to nothing: a zero entry is refused before any write
            before = self.snapshot()
            with pytest.raises(LedgerError):
                services.ledger_post(kind="conversion", idempotency_key="c0", lines=lines)
            assert self.snapshot() == before
            return
        self.post("conversion", lines, metadata={"rate": f"{rate[0]}/{rate[1]}"})

    @rule(trader=TRADER, currency=CURRENCY, amount=AMOUNTS)
    def withdrawal_reserve(self, trader, currency, amount):
        wallet = self.wallet(trader, currency)
        minor = self.resolve(amount, self.balance[wallet.pk])
        posted = self.post(
            "withdrawal_reserve", [Line(wallet, -minor), Line(self.sys(PENDING, currency), minor)]
        )
        if posted is not None:
            withdrawal = Withdrawal(wallet, minor, reserve=posted)
            posted.withdrawal = withdrawal
            self.withdrawals.append(withdrawal)

    def pending(self) -> list[Withdrawal]:
        return [w for w in self.withdrawals if w.state == "pending"]

    @precondition(lambda self: self.pending())
    @rule(data=st.data(), pay=st.booleans())
    def withdrawal_settle(self, data, pay):
        withdrawal = data.draw(st.sampled_from(self.pending()), label="withdrawal")
        currency = withdrawal.wallet.currency_id
        back_to = self.sys(PAYOUT, currency) if pay else withdrawal.wallet
        lines = [
            Line(self.sys(PENDING, currency), -withdrawal.amount),
            Line(back_to, withdrawal.amount),
        ]
        posted = self.post("withdrawal_pay" if pay else "withdrawal_reject", lines)
        assert posted is not None  # moving out of a system account never overdraws
        # A settled withdrawal is corrected by a new posting, not by a reversal.
        posted.reversible = withdrawal.reserve.reversible = False
        withdrawal.state = "paid" if pay else "rejected"

    def reversible(self) -> list[Posted]:
        return [p for p in self.posted if p.reversible and not p.reversed]

    @precondition(lambda self: self.reversible())
    @rule(data=st.data())
    def reverse(self, data):
        posted = data.draw(st.sampled_from(self.reversible()), label="transaction")
        mirror = [(account_id, -amount) for account_id, amount in posted.lines]
        if self.would_overdraw(mirror):  # the money was spent meanwhile
            before = self.snapshot()
            with pytest.raises(InsufficientFunds):
                services.ledger_reverse(journal=posted.journal, actor=None, reason="test")
            assert self.snapshot() == before
            return
        reversal = services.ledger_reverse(journal=posted.journal, actor=None, reason="test")
        assert reversal.reverses_id == posted.journal.pk and not reversal.replayed
        self.apply(mirror)
        posted.reversed = True
        self.posted.append(
            Posted(reversal, reversal.idempotency_key, "reversal", mirror, reversible=False)
        )
        if posted.withdrawal is not None:  # reversing a reserve cancels the withdrawal
            posted.withdrawal.state = "cancelled"

    # --- what must change nothing ------------------------------------------------------

    @precondition(lambda self: any(p.reversed or p.kind == "reversal" for p in self.posted))
    @rule(data=st.data(), same_key=st.booleans())
    def reverse_again(self, data, same_key):
        """Reversing twice: with the first reversal's key it is a replay, with
        another key (or reversing a reversal) it is refused; nothing changes."""
        posted = data.draw(
            st.sampled_from([p for p in self.posted if p.reversed or p.kind == "reversal"]),
            label="transaction",
        )
        before = self.snapshot()
        if posted.kind == "reversal":
            with pytest.raises(LedgerError):
                services.ledger_reverse(journal=posted.journal, actor=None, reason="undo")
        elif same_key:
            again = services.ledger_reverse(journal=posted.journal, actor=None, reason="test")
            assert again.replayed and again.reverses_id == posted.journal.pk
        else:
            with pytest.raises(LedgerError):
                services.ledger_reverse(
                    journal=posted.journal, actor=None, reason="test", idempotency_key="other"
                )
        assert self.snapshot() == before

    @precondition(lambda self: self.posted)
    @rule(data=st.data(), change=st.booleans())
    def repeat_a_key(self, data, change):
        """The same key again: the same request is a replay of the first
        result, a different one a conflict; neither writes anything."""
        posted = data.draw(st.sampled_from(self.posted), label="transaction")
        accounts = {account.pk: account for account in self.accounts.all}
        lines = [Line(accounts[account_id], amount) for account_id, amount in posted.lines]
        if change:
            lines = [Line(line.account, line.amount * 2) for line in lines]
        metadata = posted.journal.metadata
        before = self.snapshot()
        if change:
            with pytest.raises(IdempotencyConflict):
                services.ledger_post(
                    kind=posted.kind, idempotency_key=posted.key, lines=lines, metadata=metadata
                )
        else:
            again = services.ledger_post(
                kind=posted.kind,
                idempotency_key=posted.key,
                lines=lines,
                metadata=metadata,
                reverses=posted.journal.reverses,
            )
            assert again.replayed and again.pk == posted.journal.pk
        assert self.snapshot() == before

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self):
        check = ledger_check()
        assert check.ok, check
        if connection.vendor == "postgresql":
            # Fire the deferred balance trigger now: the example never commits.
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")

    @invariant()
    def balances_match_the_model(self):
        stored = dict(LedgerAccount.objects.values_list("pk", "balance"))
        # One GROUP BY instead of system_account_balance() per account: the
        # same sum, and this runs after every step.
        sums = dict(
            Entry.objects.order_by().values_list("account_id").annotate(total=Sum("amount"))
        )
        for account_id, expected in self.balance.items():
            assert sums.get(account_id, 0) == expected
            if account_id in self.wallet_ids:
                assert stored[account_id] == expected >= 0
            else:
                assert stored[account_id] == 0  # system accounts keep no running balance
        # Money is conserved per currency: what the wallets and pending withdrawals
        # hold is what was deposited, less what was paid out, plus conversions' net.
        for currency in CURRENCIES:
            in_wallets = sum(
                self.balance[w.pk] for (_, c), w in self.accounts.wallets.items() if c == currency
            )
            held = in_wallets + self.balance[self.sys(PENDING, currency).pk]
            assert held == (
                -self.balance[self.sys(FUNDING, currency).pk]
                - self.balance[self.sys(PAYOUT, currency).pk]
                - self.balance[self.sys(CONVERSION, currency).pk]
            )


def test_any_sequence_of_operations_keeps_the_ledger_consistent(accounts):
    LedgerMachine.accounts = accounts
    run_state_machine_as_test(LedgerMachine, settings=MACHINE_SETTINGS)


def test_system_account_balance_is_the_sum_of_its_entries(accounts):
    """The selector the invariant above replaces by one GROUP BY, checked once."""
    wallet = accounts.wallets[(0, "USD")]
    pending = accounts.system[(PENDING, "USD")]
    services.ledger_post(
        kind="deposit",
        idempotency_key="d",
        lines=[Line(wallet, 500), Line(accounts.system[(FUNDING, "USD")], -500)],
    )
    for key, amount in (("w1", 120), ("w2", 80)):
        services.ledger_post(
            kind="withdrawal_reserve",
            idempotency_key=key,
            lines=[Line(wallet, -amount), Line(pending, amount)],
        )
    assert system_account_balance(account=pending) == 200
    assert system_account_balance(account=accounts.system[(FUNDING, "USD")]) == -500
