"""Property-based test of the money services: any sequence of deposits,
transfers, conversions, withdrawals, approvals, rejections and reversals
keeps every transaction balanced, no client wallet negative, each wallet's
balance equal to the sum of its entries, and the money where the domain
rows say it is.

Unlike ``test_ledger_properties.py`` (raw postings), this hypothesis state
machine drives the REAL services, called as the pages and the admin call
them: ``deposit_create`` + ``deposit_start`` and then the sandbox's
confirmation (``deposit_confirm``, what its webhook applies) or Finance's
``deposit_match_wire``, amount mismatches and ``deposit_resolve_flagged``,
``deposit_fail``; ``withdrawal_request`` (clients without 2FA),
``withdrawal_cancel``, ``withdrawal_approve`` (two Finance users, a trader
who is in Finance too, the two-approver threshold; the sandbox pays at
once), ``withdrawal_reject``, ``withdrawal_mark_paid`` (bank wire);
``conversion_quote`` + ``conversion_execute`` at manual rates (a quote may be
executed after the money was spent); ``transfer_execute`` to another client
and across one's own currencies; ``ledger_reverse`` of a deposit's journal.

The machine predicts each outcome from the states it knows (a deposit's
status, a withdrawal's status and approvers, a wallet's balance): an
operation that must succeed moves exactly the amounts its row states; one
the services refuse (a ``LedgerError``, or ``PermissionDenied``) changes
nothing at all (balances, journals, statuses, approvals).

The conservation law, per currency ``c``:

    Σ wallets(c) + pending(c)
        = Σ credits of completed deposits into c-wallets, not reversed
        − Σ (amount + fee) of paid withdrawals in c
        − Σ sold by executed conversions from c + Σ bought into c

(transfers between clients cancel out), where ``pending(c)`` is the
``withdrawals_pending`` account, which must hold exactly the amount + fee of
the withdrawals pending or approved. Every system account is likewise what
the domain rows say (``psp:<provider>``: paid withdrawals − deposits paid in;
``fees``: deposit, payout and conversion fees; ``conversion``: sold − bought,
by conversions and by deposits paid in EUR into USD or JPY wallets), and the
ledger sums to zero per currency:

    Σ wallets(c) + pending(c) + Σ psp:*(c) + fees(c) + conversion(c) = 0.

Each example runs in a savepoint rolled back at its end, so that every
example starts from the same empty wallets made once per test.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone
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

from backoffice.money import from_minor
from payments import services
from payments.exceptions import LedgerError
from payments.models import (
    Conversion,
    Currency,
    Deposit,
    Entry,
    JournalTransaction,
    LedgerAccount,
    Markup,
    PaymentMethod,
    Transfer,
    Withdrawal,
    WithdrawalApproval,
)
from payments.selectors import ledger_check
from payments.services.conversions import conversion_execute, conversion_quote, transfer_execute
from payments.services.deposits import (
    deposit_confirm,
    deposit_create,
    deposit_fail,
    deposit_match_wire,
    deposit_resolve_flagged,
    deposit_start,
)
from payments.services.rates import rate_set_manual
from payments.services.withdrawals import (
    withdrawal_approve,
    withdrawal_cancel,
    withdrawal_fee,
    withdrawal_mark_paid,
    withdrawal_reject,
    withdrawal_request,
)
from tests.factories import StaffFactory, TraderFactory

pytestmark = pytest.mark.django_db

CURRENCIES = ("USD", "EUR", "JPY")  # JPY: no minor unit, fees round to whole yen
TRADERS = 3
# Above these (major units), two different approvers.
TWO_APPROVERS_ABOVE = {"USD": Decimal("200"), "EUR": Decimal("200"), "JPY": Decimal("30000")}
CARD, WIRE = "Card (sandbox)", "Bank wire"  # sandbox: automatic payouts; wire: by hand
CARD_EUR = "Card in EUR (sandbox)"  # deposits paid in EUR, credited converted
DESTINATION = {
    CARD: {"card_last4": "4242"},
    WIRE: {"iban": "GB29NWBK60161331926819", "account_holder": "Test Trader"},
}
SYSTEM_CODES = {"psp:sandbox", "psp:bank-wire", "fees", "withdrawals_pending", "conversion"}
RETURN_URL = "http://testserver/room/wallets/"

DECISION = st.sampled_from(
    [
        "approve by finance0",
        "approve by finance1",
        "approve by trader0",  # in Finance too (and a client)
        "approve by trader1",  # no permission
        "reject",
        "cancel by owner",
        "cancel by another",
        "mark paid",
    ]
)
# What happens to a withdrawal right after the request: a few steps drawn
# from these life cycles (each step may be refused, as the machine predicts).
LIFE_CYCLES = st.sampled_from(
    [
        # The whole way (two approvers above the threshold), then too late.
        ("approve by finance0", "approve by finance1", "mark paid", "reject", "cancel by owner"),
        ("approve by finance0",),
        (),
        ("approve by trader0", "approve by finance1", "mark paid", "reject"),
        ("approve by finance1", "mark paid", "approve by finance0"),
        ("approve by finance0", "approve by finance0"),
        ("approve by finance0", "reject", "mark paid", "approve by finance1"),
        ("approve by finance0", "cancel by owner", "reject"),
        ("approve by trader1", "cancel by another"),
        ("cancel by owner", "approve by finance0", "cancel by owner"),
        ("reject", "approve by finance0", "reject"),
        ("mark paid",),
    ]
)
ALLOWED_MOVES = {
    ("pending", "approved"),
    ("pending", "paid"),  # the last approval, and the sandbox pays at once
    ("pending", "rejected"),
    ("pending", "cancelled"),
    ("approved", "paid"),
    ("approved", "rejected"),
}
TRADER = st.integers(0, TRADERS - 1)
CURRENCY = st.sampled_from(CURRENCIES)
METHOD = st.sampled_from([CARD, WIRE])
DEPOSIT_METHOD = st.sampled_from([CARD, WIRE, CARD_EUR])
# Minor units; most of them a share (%) of the wallet's balance, to hit the
# edges: exactly all of it, one unit more.
AMOUNT = st.one_of(
    st.integers(1, 100).map(lambda percent: ("share", percent)),
    st.sampled_from(["all", "all+1"]),
    st.integers(1, 400_000),
)
OPENING = st.lists(
    st.integers(10_000, 500_000),
    min_size=TRADERS * len(CURRENCIES),
    max_size=TRADERS * len(CURRENCIES),
)
BAD_AMOUNT = st.sampled_from([Decimal("0"), Decimal("-5"), Decimal("0.001"), Decimal("NaN")])

# 25 examples of up to 20 steps: about 25 s on PostgreSQL here.
MACHINE_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class World:
    """Made once per test, shared by all examples (each rolls back)."""

    traders: list
    finance: list  # two Finance users; traders[0] is in Finance too
    wallets: dict[tuple[int, str], LedgerAccount]
    methods: dict[str, PaymentMethod]
    exponents: dict[str, int]


@pytest.fixture
def world(db, settings) -> World:
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    traders = [TraderFactory(first_name=f"Trader{i}") for i in range(TRADERS)]
    traders[0].groups.add(Group.objects.get(name="Finance"))
    finance = [StaffFactory(roles=["Finance"]) for _ in range(2)]
    wallets = {
        (index, code): services.wallet_open(user=trader, currency=code)
        for index, trader in enumerate(traders)
        for code in CURRENCIES
    }
    for code, threshold in TWO_APPROVERS_ABOVE.items():
        Currency.objects.filter(code=code).update(withdrawal_two_approvers_above=threshold)
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.165"))
    rate_set_manual(actor=None, base="USD", quote="JPY", rate=Decimal("151.2"))
    Markup.objects.update(fee_percent=Decimal("0.25"))  # and the default 0.5 % markup
    card = PaymentMethod.objects.get(name=CARD)
    card_eur = PaymentMethod.objects.create(
        provider=card.provider,
        name=CARD_EUR,
        direction=PaymentMethod.DEPOSIT,
        provider_currency=Currency.objects.get(code="EUR"),
        fee_percent=Decimal("1"),
    )
    card_eur.currencies.set(Currency.objects.filter(code__in=["USD", "JPY"]))
    methods = {
        name: PaymentMethod.objects.select_related("provider", "provider_currency").get(name=name)
        for name in (CARD, WIRE, CARD_EUR)
    }
    exponents = dict(Currency.objects.filter(code__in=CURRENCIES).values_list("code", "exponent"))
    return World(traders, finance, wallets, methods, exponents)


class MoneyMachine(RuleBasedStateMachine):
    world: World  # set by the test

    def __init__(self) -> None:
        super().__init__()
        # The TestCase pattern per example: a savepoint rolled back in teardown.
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.balance = {wallet.pk: 0 for wallet in self.world.wallets.values()}
        self.deposits: list[Deposit] = []
        self.reversed: set[int] = set()  # deposits whose journal was reversed
        self.withdrawals: list[Withdrawal] = []
        self.quotes: list[Conversion] = []
        self.transfers: list[tuple] = []  # (user, from, to, amount, key, quote id, transfer)
        self.keys = itertools.count()

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    # --- helpers ------------------------------------------------------------------------

    def wallet(self, trader: int, currency: str) -> LedgerAccount:
        # Fresh: the services read the balance of the row they are given.
        return LedgerAccount.objects.select_related("currency").get(
            pk=self.world.wallets[(trader, currency)].pk
        )

    def minor(self, amount, available: int) -> int:
        if isinstance(amount, tuple):
            return max(available * amount[1] // 100, 1)
        if amount == "all":
            return max(available, 1)
        if amount == "all+1":
            return available + 1
        return amount

    def major(self, minor: int, currency: str) -> Decimal:
        return from_minor(minor, self.world.exponents[currency])

    @staticmethod
    def quotable(sell: int, available: int) -> bool | None:
        """Whether a quote must be given: never beyond the balance; always
        from 100 minor units (at these rates they buy at least one minor
        unit of any other currency); below that, it depends on the rate."""
        if sell > available:
            return False
        return True if sell >= 100 else None

    @staticmethod
    def fresh(quote: Conversion) -> bool:
        """Well within its 30 s (a slow step may let one expire: then refused)."""
        return timezone.now() + timedelta(seconds=5) <= quote.expires_at

    def key(self) -> str:
        return f"k{next(self.keys)}"

    def snapshot(self) -> tuple:
        """Everything a refusal must leave as it was."""
        return (
            JournalTransaction.objects.count(),
            Entry.objects.count(),
            sorted(LedgerAccount.objects.values_list("pk", "balance")),
            sorted(Deposit.objects.values_list("pk", "status")),
            sorted(Withdrawal.objects.values_list("pk", "status")),
            WithdrawalApproval.objects.count(),
            sorted(Conversion.objects.filter(status="executed").values_list("pk", flat=True)),
            Transfer.objects.count(),
        )

    def refused(self, call, *, allowed=(LedgerError,)):
        """``call`` must be refused and change nothing."""
        before = self.snapshot()
        with pytest.raises(allowed):
            call()
        assert self.snapshot() == before

    def attempt(self, call, *, must: bool | None):
        """Run ``call``; ``must`` says whether it has to succeed (True), be
        refused (False) or either (None). A refusal changes nothing. Returns
        the result, or None when refused."""
        before = self.snapshot()
        try:
            result = call()
        except (LedgerError, PermissionDenied) as exc:
            assert must is not True, f"refused, but it had to succeed: {exc}"
            assert self.snapshot() == before
            return None
        assert must is not False, "succeeded, but it had to be refused"
        return result

    def moved(self, deltas: dict[int, int]) -> None:
        for wallet_id, amount in deltas.items():
            self.balance[wallet_id] += amount

    def pick(self, data, items, label):
        return data.draw(st.sampled_from(items), label=label)

    def pick_in(self, data, items: list, model, statuses: tuple, label: str):
        """Mostly one of ``items`` in one of ``statuses`` (where the action
        has something to do), sometimes any (where it must be refused)."""
        ids = set(
            model.objects.filter(pk__in=[i.pk for i in items], status__in=statuses).values_list(
                "pk", flat=True
            )
        )
        candidates = [i for i in items if i.pk in ids]
        if candidates and data.draw(st.integers(0, 3), label="prefer") > 0:
            return self.pick(data, candidates, label)
        return self.pick(data, items, label)

    # --- deposits -----------------------------------------------------------------------

    @initialize(amounts=OPENING)
    def opening_deposits(self, amounts):
        """A paid card deposit into every wallet, so that money can move from
        the first step."""
        for (trader, currency), minor in zip(self.world.wallets, amounts, strict=True):
            self.deposit(trader, currency, CARD, minor, "paid")

    @rule(
        trader=TRADER,
        currency=CURRENCY,
        method=DEPOSIT_METHOD,
        minor=st.integers(1, 600_000),
        then=st.sampled_from(["paid", "wait"]),
    )
    def deposit(self, trader, currency, method, minor, then):
        """A client deposits; the provider (or Finance) confirms it at once,
        or later (``deposit_settle``)."""
        wallet = self.wallet(trader, currency)
        config = self.world.methods[method]
        paid = config.provider_currency_id or currency  # the currency paid to the PSP
        amount = self.major(minor, paid)
        # The EUR card takes only USD and JPY wallets (a EUR wallet: refused).
        must = amount >= config.min_amount and (config.provider_currency_id != currency)
        deposit = self.attempt(
            lambda: deposit_create(
                user=self.world.traders[trader], wallet=wallet, method=config, amount=amount
            ),
            must=must,
        )
        if deposit is None:
            return
        assert deposit.status == Deposit.CREATED and deposit.amount == minor
        if paid == currency:
            assert deposit.credit_amount == deposit.amount - deposit.fee > 0
        else:
            assert deposit.rate > 0 and deposit.credit_amount > 0
        before = self.snapshot()
        deposit_start(deposit=deposit, return_url=RETURN_URL)
        assert deposit.status == Deposit.PENDING
        assert self.snapshot()[:3] == before[:3]  # no money moves when it starts
        self.deposits.append(deposit)
        if then == "paid":
            self.settle(deposit, "paid")

    @precondition(lambda self: self.deposits)
    @rule(
        data=st.data(),
        event=st.sampled_from(["paid", "paid another amount", "failed", "credit", "fail"]),
    )
    def deposit_settle(self, data, event):
        """What the provider or Finance says about a deposit, in any order and
        any number of times: credited once, and only as the rules say."""
        waiting = (Deposit.CREATED, Deposit.PENDING, Deposit.FAILED, Deposit.FLAGGED)
        self.settle(self.pick_in(data, self.deposits, Deposit, waiting, "deposit"), event)

    def settle(self, deposit: Deposit, event: str) -> None:
        deposit.refresh_from_db()
        was = deposit.status
        wire = deposit.provider.kind == "manual"
        finance = self.world.finance[0]
        paid = deposit.amount + (7 if event == "paid another amount" else 0)
        credited = False
        if event in ("paid", "paid another amount"):

            def call():
                if wire:
                    return deposit_match_wire(
                        actor=finance,
                        deposit=deposit,
                        amount=self.major(paid, deposit.currency_id),
                        currency=deposit.currency_id,
                        bank_reference=f"BANK-{self.key()}",
                    )
                return deposit_confirm(
                    deposit=deposit,
                    amount=self.major(paid, deposit.currency_id),
                    currency=deposit.currency_id,
                    provider_reference=deposit.provider_reference,
                )

            # A wire is matched only while it waits (else refused); a card
            # payment completes also after a failure (out of order), and is
            # ignored once completed or flagged.
            open_states = [Deposit.CREATED, Deposit.PENDING] + ([] if wire else [Deposit.FAILED])
            self.attempt(call, must=was in open_states if wire else True)
            if was in open_states:
                expected = Deposit.FLAGGED if event == "paid another amount" else Deposit.COMPLETED
                credited = expected == Deposit.COMPLETED
            else:
                expected = was
        elif event == "failed":
            self.attempt(lambda: deposit_fail(deposit=deposit, reason="declined"), must=True)
            expected = Deposit.FAILED if was in (Deposit.CREATED, Deposit.PENDING) else was
        else:
            self.attempt(
                lambda: deposit_resolve_flagged(
                    actor=finance, deposit=deposit, credit=event == "credit", note="checked"
                ),
                must=was == Deposit.FLAGGED,
            )
            if was == Deposit.FLAGGED:
                expected = Deposit.COMPLETED if event == "credit" else Deposit.FAILED
                credited = event == "credit"
            else:
                expected = was
        deposit.refresh_from_db()
        assert deposit.status == expected, (was, event)
        if credited:
            self.moved({deposit.wallet_id: deposit.credit_amount})

    @precondition(lambda self: any(d.status == Deposit.COMPLETED for d in self.deposits))
    @rule(data=st.data())
    def deposit_reverse(self, data):
        """Finance reverses a completed deposit's journal (a chargeback): the
        wallet gives the credit back, unless it was spent: then refused."""
        completed = [d for d in self.deposits if d.status == Deposit.COMPLETED]
        deposit = self.pick(data, completed, "deposit")
        deposit.refresh_from_db()
        again = deposit.pk in self.reversed
        spent = self.balance[deposit.wallet_id] < deposit.credit_amount
        reversal = self.attempt(
            lambda: services.ledger_reverse(
                journal=deposit.journal,
                actor=self.world.finance[1],
                reason="chargeback",
                idempotency_key=f"chargeback:{self.key()}",
            ),
            must=not (again or spent),
        )
        if reversal is not None:
            assert reversal.reverses_id == deposit.journal_id
            self.reversed.add(deposit.pk)
            # The deposit row still says "completed" (ledger_reverse knows
            # journals, not deposits); the invariants count it as reversed.
            self.moved({deposit.wallet_id: -deposit.credit_amount})

    # --- withdrawals --------------------------------------------------------------------

    @rule(
        trader=TRADER,
        currency=CURRENCY,
        method=METHOD,
        amount=AMOUNT,
        then=LIFE_CYCLES,
    )
    def withdrawal_request(self, trader, currency, method, amount, then):
        """A client asks to withdraw; then, at once, what Finance or the
        client do with it (later: the rules below)."""
        wallet = self.wallet(trader, currency)
        config = self.world.methods[method]
        minor = self.minor(amount, self.balance[wallet.pk])
        value = self.major(minor, currency)
        fee = withdrawal_fee(method=config, amount=value, exponent=wallet.currency.exponent)
        must = value >= config.min_amount and minor + fee <= self.balance[wallet.pk]
        withdrawal = self.attempt(
            lambda: withdrawal_request(
                user=self.world.traders[trader],
                wallet=wallet,
                method=config,
                amount=value,
                destination=DESTINATION[method],
                otp_code=None,
                idempotency_key=self.key(),
            ),
            must=must,
        )
        if withdrawal is None:
            return
        assert withdrawal.status == Withdrawal.PENDING and not withdrawal.replayed
        self.moved({wallet.pk: -(withdrawal.amount + withdrawal.fee)})
        self.withdrawals.append(withdrawal)
        for decision in then:
            self.decide(withdrawal, decision)

    @precondition(lambda self: self.withdrawals)
    @rule(data=st.data())
    def withdrawal_request_again(self, data):
        """The same form sent twice: the first withdrawal, nothing reserved again."""
        withdrawal = self.pick(data, self.withdrawals, "withdrawal")
        key = withdrawal.reserve_journal.idempotency_key.rsplit(":", 1)[1]
        before = self.snapshot()
        again = withdrawal_request(
            user=withdrawal.user,
            wallet=withdrawal.wallet,
            method=withdrawal.method,
            amount=self.major(withdrawal.amount, withdrawal.wallet.currency_id),
            destination=DESTINATION[withdrawal.method.name],
            otp_code=None,
            idempotency_key=key,
        )
        assert again.replayed and again.pk == withdrawal.pk
        assert self.snapshot() == before

    @precondition(lambda self: self.withdrawals)
    @rule(data=st.data(), decision=DECISION)
    def withdrawal_decide(self, data, decision):
        """Finance (or the client) acts on a withdrawal, mostly one where the
        action has something to do."""
        where = {
            "cancel": (Withdrawal.PENDING,),
            "approve": (Withdrawal.PENDING,),
            "reject": (Withdrawal.PENDING, Withdrawal.APPROVED),
            "mark paid": (Withdrawal.APPROVED,),
        }[decision.split(" by ")[0]]
        withdrawal = self.pick_in(data, self.withdrawals, Withdrawal, where, "withdrawal")
        self.decide(withdrawal, decision)

    def decide(self, withdrawal: Withdrawal, decision: str) -> None:
        withdrawal.refresh_from_db()
        was = withdrawal.status
        action, _, who = decision.partition(" by ")
        if action == "cancel":
            owner = who == "owner"
            user = (
                withdrawal.user
                if owner
                else next(t for t in self.world.traders if t.pk != withdrawal.user_id)
            )
            done = self.attempt(
                lambda: withdrawal_cancel(user=user, withdrawal=withdrawal),
                must=owner and was == Withdrawal.PENDING,
            )
            if done is not None:
                assert done.status == Withdrawal.CANCELLED
                self.moved({withdrawal.wallet_id: withdrawal.amount + withdrawal.fee})
        elif action == "approve":
            self.approve(withdrawal, who)
        elif action == "reject":
            done = self.attempt(
                lambda: withdrawal_reject(
                    actor=self.world.finance[1], withdrawal=withdrawal, reason="Not your account."
                ),
                must=was in (Withdrawal.PENDING, Withdrawal.APPROVED),
            )
            if done is not None:
                assert done.status == Withdrawal.REJECTED
                self.moved({withdrawal.wallet_id: withdrawal.amount + withdrawal.fee})
        else:
            done = self.attempt(
                lambda: withdrawal_mark_paid(
                    actor=self.world.finance[0], withdrawal=withdrawal, payout_reference="PAY-1"
                ),
                must=was == Withdrawal.APPROVED,
            )
            if done is not None:
                assert done.status == Withdrawal.PAID and done.settle_journal_id is not None
        withdrawal.refresh_from_db()
        if withdrawal.status != was:
            assert (was, withdrawal.status) in ALLOWED_MOVES, (was, withdrawal.status)

    def approve(self, withdrawal: Withdrawal, who: str) -> None:
        was = withdrawal.status
        actor = {
            "finance0": self.world.finance[0],
            "finance1": self.world.finance[1],
            "trader0": self.world.traders[0],  # in Finance too, and a client
            "trader1": self.world.traders[1],  # no permission
        }[who]
        given = set(withdrawal.approvals.values_list("approver_id", flat=True))
        currency = withdrawal.wallet.currency
        above = (
            from_minor(withdrawal.amount, currency.exponent) > TWO_APPROVERS_ABOVE[currency.code]
        )
        must = (
            who != "trader1"
            and was == Withdrawal.PENDING
            and actor.pk != withdrawal.user_id  # never one's own
            and actor.pk not in given  # two different approvers
        )
        outcome = self.attempt(
            lambda: withdrawal_approve(actor=actor, withdrawal=withdrawal), must=must
        )
        if outcome is None:
            return
        withdrawal.refresh_from_db()
        assert (outcome.approvals, outcome.required) == (len(given) + 1, 2 if above else 1)
        assert outcome.payout_error is None
        if outcome.approvals < outcome.required:
            assert withdrawal.status == Withdrawal.PENDING
        elif withdrawal.method.provider.kind == "sandbox":
            assert withdrawal.status == Withdrawal.PAID  # the sandbox pays at once
            assert withdrawal.settle_journal_id is not None
        else:
            assert withdrawal.status == Withdrawal.APPROVED  # paid by hand later

    # --- hostile input ------------------------------------------------------------------

    @rule(trader=TRADER, currency=CURRENCY, other=CURRENCY, method=METHOD, amount=BAD_AMOUNT)
    def bad_amounts(self, trader, currency, other, method, amount):
        """Zero, negative, too precise, not a number: every service refuses,
        nothing changes."""
        user, wallet = self.world.traders[trader], self.wallet(trader, currency)
        config = self.world.methods[method]
        self.refused(lambda: deposit_create(user=user, wallet=wallet, method=config, amount=amount))
        self.refused(
            lambda: withdrawal_request(
                user=user,
                wallet=wallet,
                method=config,
                amount=amount,
                destination=DESTINATION[method],
                otp_code=None,
                idempotency_key=self.key(),
            )
        )
        if other != currency:
            target = self.wallet(trader, other)
            self.refused(
                lambda: conversion_quote(
                    user=user, from_wallet=wallet, to_wallet=target, sell_amount=amount
                )
            )
        receiver = self.world.traders[(trader + 1) % TRADERS]
        self.refused(
            lambda: transfer_execute(
                user=user,
                from_wallet=wallet,
                to_wallet=None,
                to_user_email=receiver.email,
                amount=amount,
                idempotency_key=self.key(),
            )
        )

    # --- conversions and transfers ------------------------------------------------------

    @rule(trader=TRADER, pair=st.permutations(CURRENCIES), amount=AMOUNT, execute=st.booleans())
    def convert(self, trader, pair, amount, execute):
        """Quote (and execute at once, or keep the quote for later)."""
        source, target = self.wallet(trader, pair[0]), self.wallet(trader, pair[1])
        sell = self.minor(amount, self.balance[source.pk])
        quote = self.attempt(
            lambda: conversion_quote(
                user=self.world.traders[trader],
                from_wallet=source,
                to_wallet=target,
                sell_amount=self.major(sell, pair[0]),
            ),
            must=self.quotable(sell, self.balance[source.pk]),
        )
        if quote is None:
            return
        assert quote.sell_amount == sell and quote.buy_amount > 0 and quote.fee >= 0
        self.quotes.append(quote)
        if execute:
            self.execute(quote)

    @precondition(lambda self: any(q.status == Conversion.QUOTED for q in self.quotes))
    @rule(data=st.data())
    def convert_later(self, data):
        """Execute a quote kept while other things happened (money may be gone)."""
        quote = self.pick(data, [q for q in self.quotes if q.status == Conversion.QUOTED], "quote")
        self.execute(quote)

    def execute(self, quote: Conversion) -> None:
        quote.refresh_from_db()
        if quote.status == Conversion.EXECUTED:
            before = self.snapshot()
            again = conversion_execute(user=quote.user, public_id=quote.public_id)
            assert again.replayed and self.snapshot() == before
            return
        covered = self.balance[quote.from_wallet_id] >= quote.sell_amount
        done = self.attempt(
            lambda: conversion_execute(user=quote.user, public_id=quote.public_id),
            must=(self.fresh(quote) or None) if covered else False,
        )
        if done is not None:
            assert done.status == Conversion.EXECUTED and not done.replayed
            self.moved(
                {quote.from_wallet_id: -quote.sell_amount, quote.to_wallet_id: quote.buy_amount}
            )
            quote.status = Conversion.EXECUTED

    @rule(
        pair=st.permutations(range(TRADERS)),
        currency=CURRENCY,
        other=CURRENCY,
        to_client=st.booleans(),
        amount=AMOUNT,
    )
    def transfer(self, pair, currency, other, to_client, amount):
        """To another client (same currency), or to one's own wallet in
        another currency through a quote."""
        sender = self.world.traders[pair[0]]
        source = self.wallet(pair[0], currency)
        minor = self.minor(amount, self.balance[source.pk])
        value = self.major(minor, currency)
        key = self.key()
        covered = minor <= self.balance[source.pk]
        if to_client or other == currency:
            receiver = self.world.traders[pair[1]]
            target = self.wallet(pair[1], currency)
            done = self.attempt(
                lambda: transfer_execute(
                    user=sender,
                    from_wallet=source,
                    to_wallet=None,
                    to_user_email=receiver.email,
                    amount=value,
                    idempotency_key=key,
                ),
                must=covered,
            )
            if done is not None:
                assert done.amount == done.credited == minor
                self.moved({source.pk: -minor, target.pk: minor})
                self.transfers.append((sender, source, None, receiver.email, value, key, done))
            return
        target = self.wallet(pair[0], other)
        quote = self.attempt(
            lambda: conversion_quote(
                user=sender, from_wallet=source, to_wallet=target, sell_amount=value
            ),
            must=self.quotable(minor, self.balance[source.pk]),
        )
        if quote is None:
            return
        done = self.attempt(
            lambda: transfer_execute(
                user=sender,
                from_wallet=source,
                to_wallet=target,
                amount=value,
                idempotency_key=key,
                quote_id=quote.public_id,
            ),
            must=self.fresh(quote) or None,
        )
        if done is not None:
            assert (done.amount, done.credited) == (quote.sell_amount, quote.buy_amount)
            self.moved({source.pk: -quote.sell_amount, target.pk: quote.buy_amount})
            self.transfers.append((sender, source, target, None, value, key, done))

    @precondition(lambda self: self.transfers)
    @rule(data=st.data())
    def transfer_again(self, data):
        """The same transfer form sent again: the first transfer, nothing moves."""
        sender, source, target, email, value, key, done = self.pick(
            data, self.transfers, "transfer"
        )
        before = self.snapshot()
        again = transfer_execute(
            user=sender,
            from_wallet=source,
            to_wallet=target,
            to_user_email=email,
            amount=value,
            idempotency_key=key,
            quote_id=done.conversion.public_id if done.conversion else None,
        )
        assert again.replayed and again.pk == done.pk
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
    def wallets_are_what_the_machine_predicted(self):
        stored = dict(LedgerAccount.objects.filter(kind="wallet").values_list("pk", "balance"))
        sums = dict(
            Entry.objects.filter(account__kind="wallet")
            .order_by()
            .values_list("account_id")
            .annotate(total=Sum("amount"))
        )
        for wallet_id, expected in self.balance.items():
            assert stored[wallet_id] == sums.get(wallet_id, 0) == expected >= 0

    @invariant()
    def money_is_where_the_rows_say(self):
        ledger: dict[tuple[str, str], int] = defaultdict(int)  # (code or "wallets", currency)
        for code, kind, currency, total in (
            Entry.objects.order_by()
            .values_list("account__code", "account__kind", "currency_id")
            .annotate(total=Sum("amount"))
        ):
            ledger[(code if kind == "system" else "wallets", currency)] += total
        assert {code for code, _ in ledger} <= SYSTEM_CODES | {"wallets"}

        rows: dict[tuple[str, str], int] = defaultdict(int)
        client: dict[str, int] = defaultdict(int)  # what the clients hold, wallets + pending
        for deposit in Deposit.objects.filter(status=Deposit.COMPLETED).select_related(
            "provider", "wallet"
        ):
            if deposit.pk in self.reversed:
                continue
            paid, credited = deposit.currency_id, deposit.wallet.currency_id
            rows[(f"psp:{deposit.provider.identifier}", paid)] -= deposit.amount
            rows[("fees", paid)] += deposit.fee
            if paid != credited:  # converted at the rate of the moment
                rows[("conversion", paid)] += deposit.amount - deposit.fee
                rows[("conversion", credited)] -= deposit.credit_amount
            client[credited] += deposit.credit_amount
        for w in Withdrawal.objects.select_related("wallet", "method__provider"):
            c, total = w.wallet.currency_id, w.amount + w.fee
            if w.status in (Withdrawal.PENDING, Withdrawal.APPROVED):
                rows[("withdrawals_pending", c)] += total
            elif w.status == Withdrawal.PAID:
                rows[(f"psp:{w.method.provider.identifier}", c)] += w.amount
                rows[("fees", c)] += w.fee
                client[c] -= total
        for conv in Conversion.objects.filter(status=Conversion.EXECUTED).select_related(
            "from_wallet", "to_wallet"
        ):
            sold, bought = conv.from_wallet.currency_id, conv.to_wallet.currency_id
            rows[("fees", sold)] += conv.fee
            rows[("conversion", sold)] += conv.sell_amount - conv.fee
            rows[("conversion", bought)] -= conv.buy_amount
            client[sold] -= conv.sell_amount
            client[bought] += conv.buy_amount

        for currency in CURRENCIES:
            for code in SYSTEM_CODES:
                assert ledger[(code, currency)] == rows[(code, currency)], (code, currency)
            pending = ledger[("withdrawals_pending", currency)]
            assert ledger[("wallets", currency)] + pending == client[currency], currency
            # The ledger sums to zero: client money is what the system accounts owe.
            assert ledger[("wallets", currency)] + pending == -sum(
                ledger[(code, currency)] for code in SYSTEM_CODES - {"withdrawals_pending"}
            )


def test_any_sequence_of_money_operations_keeps_the_money_where_it_belongs(world):
    MoneyMachine.world = world
    run_state_machine_as_test(MoneyMachine, settings=MACHINE_SETTINGS)
