"""Demo data of the payments app for the demo traders of ``accounts.demo``.

One time line over the last five months, posted in time order with the
clock set back (entries are append-only, so a past is posted, not edited),
so that balances, balances after, events and statuses are what real use
would produce:

- **Wallet history.** Alice, Bruno and Chen get USD, EUR and BTC wallets and
  about a hundred adjustments (by the demo Finance user) and transfers
  between them, so that the history pages, their filters and paging have
  something to show.
- **Money.** Manual exchange rates between the demo currencies; deposits
  (card and crypto through the sandbox PSP and its signed webhook, a bank
  wire matched by the demo Finance user, one wire waiting to be matched, one
  flagged for an amount mismatch, one card payment declined); withdrawals
  (one waiting for approval, one above the two-approver threshold with one
  approval of two, two paid: by the sandbox at once, by bank wire recorded
  by Finance; one rejected); a conversion and a transfer across currencies.
  All of it through the services, called as the pages and the admin call
  them; the demo data is what a Finance user finds to do on a Monday.

Every outflow of a demo wallet (a withdrawal, a conversion, a transfer)
follows a demo deposit into the same wallet that covers it, so that the
wallet-history plan never runs out of money.

Idempotent: each history posting has a fixed idempotency key (``demo:...``)
and a fixed amount (a seeded random generator); deposits have fixed
references, withdrawals and the transfer fixed idempotency keys, and the
conversion is looked up; each later step (a webhook, a match, an approval,
a payout) runs only while its deposit or withdrawal is still in the state
the step expects. A second run adds nothing, and leaves alone what people
did with the demo data meanwhile (a wire Finance matched stays matched).

Exchange rates: the manual source refuses rates older than its maximum age
(7 days), and ``make run`` seeds on every start; so each run sets again the
demo pairs' manual rates older than a day (:data:`RATES_REFRESH_AFTER`), at
the rate they hold (Finance may have changed it). A demo database a week old
still converts offline, and two runs in a row change nothing.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from functools import partial
from unittest import mock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from backoffice.demo import clock
from backoffice.money import from_minor, to_minor

from . import services
from .exceptions import InsufficientFunds, LedgerError
from .models import (
    Conversion,
    Currency,
    Deposit,
    JournalTransaction,
    LedgerAccount,
    PaymentMethod,
    Rate,
    Transfer,
    Withdrawal,
)
from .providers import sandbox
from .providers.base import ProviderError, WebhookRejected
from .selectors.withdrawals import approvals_required
from .services import Line
from .services import conversions as conversion_services
from .services import deposits as deposit_services
from .services import withdrawals as withdrawal_services
from .services.rates import manual_source, rate_set_manual

TRADERS = ("alice@demo.test", "bruno@demo.test", "chen@demo.test")
FINANCE = "finance@demo.test"
CURRENCIES = ("USD", "EUR", "BTC")
DAYS = 150

# Opening credit and the range of later adjustments, in minor units.
OPENING = {"USD": 500_000, "EUR": 250_000, "BTC": 35_000_000}
ADJUSTMENT_RANGE = {"USD": (500, 40_000), "EUR": (500, 25_000), "BTC": (20_000, 1_500_000)}
# Alice's USD wallet gets more than a page of history, to show the paging.
ADJUSTMENTS = {("alice@demo.test", "USD"): 34}
DEFAULT_ADJUSTMENTS = 7

CREDITS = [
    "Welcome bonus",
    "Refund of card processing fee",
    "Compensation for slippage",
    "Deposit correction",
    "Trading competition prize",
    "Volume cashback",
]
DEBITS = [
    "Inactivity fee",
    "Chargeback fee",
    "Correction of a double credit",
    "Bank wire fee",
    "Swap charge correction",
]
# (from, to, currency, how many)
TRANSFERS = [
    ("alice@demo.test", "bruno@demo.test", "USD", 4),
    ("bruno@demo.test", "alice@demo.test", "EUR", 3),
    ("chen@demo.test", "alice@demo.test", "BTC", 3),
    ("alice@demo.test", "chen@demo.test", "USD", 2),
    ("chen@demo.test", "bruno@demo.test", "EUR", 2),
]


@dataclass(frozen=True)
class Planned:
    minute: int  # minutes after the start of the demo period
    key: str
    kind: str  # "adjustment" or "transfer"
    currency: str
    owner: str
    counterparty: str = ""
    minor: int = 0  # adjustments: signed; transfers: the amount moved
    text: str = ""


def plan() -> list[Planned]:
    """The demo postings in time order. Deterministic: no clock, a seeded
    generator, and amounts that never take a wallet below zero."""
    rng = random.Random("payments-demo-v1")  # noqa: S311 - demo data, not security
    span = DAYS * 24 * 60
    drafts: list[Planned] = []
    for email in TRADERS:
        for code in CURRENCIES:
            drafts.append(
                Planned(
                    rng.randrange(0, 3 * 24 * 60),
                    f"demo:opening:{email}:{code}",
                    "adjustment",
                    code,
                    email,
                    minor=OPENING[code],
                    text="Opening balance",
                )
            )
            low, high = ADJUSTMENT_RANGE[code]
            for i in range(ADJUSTMENTS.get((email, code), DEFAULT_ADJUSTMENTS)):
                credit = rng.random() < 0.55
                drafts.append(
                    Planned(
                        rng.randrange(4 * 24 * 60, span),
                        f"demo:adjustment:{email}:{code}:{i}",
                        "adjustment",
                        code,
                        email,
                        minor=rng.randrange(low, high) * (1 if credit else -1),
                        text=rng.choice(CREDITS if credit else DEBITS),
                    )
                )
    for sender, receiver, code, count in TRANSFERS:
        low, high = ADJUSTMENT_RANGE[code]
        for i in range(count):
            drafts.append(
                Planned(
                    rng.randrange(4 * 24 * 60, span),
                    f"demo:transfer:{sender}:{receiver}:{code}:{i}",
                    "transfer",
                    code,
                    sender,
                    counterparty=receiver,
                    minor=rng.randrange(low, high) * 2,
                )
            )
    drafts.sort(key=lambda p: (p.minute, p.key))
    # Keep every wallet non-negative: a debit larger than the balance by
    # then becomes a credit.
    balances: dict[tuple[str, str], int] = {}
    planned = []
    for p in drafts:
        mine = balances.get((p.owner, p.currency), 0)
        if p.kind == "adjustment" and mine + p.minor < 0:
            p = replace(p, minor=-p.minor, text=CREDITS[3])
        if p.kind == "transfer" and mine < p.minor:
            continue
        balances[(p.owner, p.currency)] = mine + (p.minor if p.kind == "adjustment" else -p.minor)
        if p.kind == "transfer":
            other = (p.counterparty, p.currency)
            balances[other] = balances.get(other, 0) + p.minor
        planned.append(p)
    return planned


# --- Money: rates, deposits, withdrawals, a conversion, a transfer ------------------

ALICE, BRUNO, CHEN = TRADERS
ADMINISTRATOR = "administrator@demo.test"
WIRE, CARD, CRYPTO = "Bank wire", "Card (sandbox)", "Crypto (sandbox)"

# Late-2026-ish mid rates, each demo currency against USD (conversions
# between two others go through USD: payments.selectors.rates.RATE_PIVOTS).
MANUAL_RATES = [
    ("EUR", "USD", "1.1650"),
    ("GBP", "USD", "1.3350"),
    ("USD", "JPY", "151.20"),
    ("USD", "CHF", "0.8050"),
    ("BTC", "USD", "96500"),
    ("ETH", "USD", "3450"),
    ("USDT", "USD", "1.0002"),
]
RATES_REFRESH_AFTER = timedelta(days=1)
# Withdrawals above this need two different approvers; set when blank.
TWO_APPROVERS_ABOVE = {"USD": Decimal("10000"), "EUR": Decimal("10000")}

# Deposit outcomes.
PAID = "paid"  # the sandbox PSP's "payment.succeeded" webhook
DECLINED = "declined"  # its "payment.failed" webhook
MATCHED = "matched"  # Finance matched the incoming wire
MISMATCH = "mismatch"  # Finance matched a wire of another amount: flagged
WAITING = "waiting"  # nothing yet (a wire not matched, a withdrawal not approved)
# Withdrawal outcomes (and WAITING, PAID).
ONE_OF_TWO = "one of two"  # approved by the Administrator, waits for a second approver
REJECTED = "rejected"


def _ago(days: float) -> int:
    """The time line's minute ``days`` before now."""
    return DAYS * 24 * 60 - round(days * 24 * 60)


@dataclass(frozen=True)
class DemoDeposit:
    reference: str  # fixed: what makes a second run find it
    owner: str
    currency: str  # the wallet's (the methods here are paid in it)
    method: str
    amount: str
    days_ago: float
    outcome: str
    after_minutes: int = 0  # from creation to the webhook or Finance's match
    bank_reference: str = ""
    arrived: str = ""  # what Finance found on the bank statement (MISMATCH)


DEPOSITS = [
    DemoDeposit("DEP-DEM2CARD", ALICE, "USD", CARD, "2000.00", 12.6, PAID, after_minutes=3),
    DemoDeposit(
        "DEP-DEM5BANK",
        BRUNO,
        "USD",
        WIRE,
        "15000.00",
        11.2,
        MATCHED,
        after_minutes=26 * 60,
        bank_reference="BARC-TRN-4578812",
    ),
    DemoDeposit("DEP-DEM3CARD", BRUNO, "EUR", CARD, "800.00", 9.4, PAID, after_minutes=2),
    DemoDeposit("DEP-DEM8CRYP", CHEN, "BTC", CRYPTO, "0.25", 8.8, PAID, after_minutes=14),
    DemoDeposit(
        "DEP-DEM7BANK",
        ALICE,
        "EUR",
        WIRE,
        "1500.00",
        6.3,
        MISMATCH,
        after_minutes=22 * 60,
        bank_reference="NWBK-TRN-0993412",
        arrived="1450.00",
    ),
    DemoDeposit("DEP-DEM4CARD", BRUNO, "EUR", CARD, "250.00", 5.1, DECLINED, after_minutes=1),
    DemoDeposit("DEP-DEM6BANK", CHEN, "GBP", WIRE, "2000.00", 0.9, WAITING),
]


@dataclass(frozen=True)
class DemoWithdrawal:
    key: str  # the request's idempotency key: what makes a second run find it
    owner: str
    currency: str
    method: str
    amount: str
    destination: dict
    days_ago: float
    outcome: str
    decided_after: int = 0  # minutes from the request to the approval or rejection
    paid_after: int = 0  # minutes from the approval to Finance's payout record (manual)
    note: str = ""  # the rejection's reason, or the payout's reference


BRUNO_BANK = {"iban": "IT60X0542811101000000123456", "account_holder": "Bruno Rossi"}
WITHDRAWALS = [
    DemoWithdrawal(
        "demo:withdrawal:chen:btc",
        CHEN,
        "BTC",
        CRYPTO,
        "0.05",
        {"address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"},
        6.2,
        PAID,
        decided_after=95,  # the sandbox pays at once
    ),
    DemoWithdrawal(
        "demo:withdrawal:bruno:eur-rejected",
        BRUNO,
        "EUR",
        WIRE,
        "400.00",
        {"iban": "DE89370400440532013000", "account_holder": "Rossi Import Srl"},
        4.4,
        REJECTED,
        decided_after=180,
        note="The bank account is not in your name. Withdraw to an account you hold.",
    ),
    DemoWithdrawal(
        "demo:withdrawal:bruno:eur",
        BRUNO,
        "EUR",
        WIRE,
        "300.00",
        BRUNO_BANK,
        3.6,
        PAID,
        decided_after=150,
        paid_after=20 * 60,
        note="SEPA-OUT-7719204",
    ),
    DemoWithdrawal(
        "demo:withdrawal:bruno:usd-large",
        BRUNO,
        "USD",
        WIRE,
        "12000.00",
        BRUNO_BANK,
        2.9,
        ONE_OF_TWO,
        decided_after=140,
    ),
    DemoWithdrawal(
        "demo:withdrawal:alice:usd",
        ALICE,
        "USD",
        WIRE,
        "600.00",
        {"iban": "GB29NWBK60161331926819", "account_holder": "Alice Martin"},
        1.7,
        WAITING,
    ),
]

# (owner, sold, bought, amount sold, days ago)
CONVERSION = (ALICE, "USD", "EUR", "500.00", 2.2)
# (owner, from, to, amount, idempotency key): a transfer between own wallets
# across currencies, made last, with the clock as it is (Transfer rows are
# stamped by their model's default, which a set-back clock does not reach).
TRANSFER = (CHEN, "BTC", "USD", "0.02", "demo:transfer:chen:btc-usd")
RATES_DAYS_AGO = 7.5  # Finance sets the rates before the first conversion


@dataclass(frozen=True)
class Step:
    minute: int | None  # on the time line; None: after it, with the clock as it is
    key: str
    run: Callable[[], None]
    guarded: bool = True  # refusals skip the step (money); history postings count their own


class _Money:
    """The money part of the demo: its steps on the time line, and what they
    found or made (for the printed summary)."""

    def __init__(self, users: dict, staff: dict) -> None:
        self.users = users
        self.finance = staff.get(FINANCE)
        self.administrator = staff.get(ADMINISTRATOR)
        self.deposits: dict[str, Deposit] = {}
        self.withdrawals: dict[str, Withdrawal] = {}
        self.conversion: Conversion | None = None
        self.transfer: Transfer | None = None
        self.rates_set = 0
        self.skipped: list[str] = []

    # --- the steps ------------------------------------------------------------------

    def steps(self) -> list[Step]:
        if self.finance is None:
            return []
        steps = [Step(_ago(RATES_DAYS_AGO), "money:rates", self.rates)]
        for d in DEPOSITS:
            if d.owner not in self.users:
                continue
            created = _ago(d.days_ago)
            steps.append(Step(created, f"money:{d.reference}", partial(self.deposit_create, d)))
            if d.outcome != WAITING:
                steps.append(
                    Step(
                        created + d.after_minutes,
                        f"money:{d.reference}:settle",
                        partial(self.deposit_settle, d),
                    )
                )
        for w in WITHDRAWALS:
            if w.owner not in self.users:
                continue
            requested = _ago(w.days_ago)
            steps.append(Step(requested, w.key, partial(self.withdrawal_request, w)))
            if w.outcome != WAITING:
                decided = requested + w.decided_after
                steps.append(Step(decided, f"{w.key}:decide", partial(self.withdrawal_decide, w)))
                if w.paid_after:
                    steps.append(
                        Step(
                            decided + w.paid_after, f"{w.key}:pay", partial(self.withdrawal_pay, w)
                        )
                    )
        if CONVERSION[0] in self.users:
            steps.append(Step(_ago(CONVERSION[4]), "money:conversion", self.convert))
        if TRANSFER[0] in self.users:
            steps.append(Step(None, "money:transfer", self.transfer_across))
        return steps

    def attempt(self, step: Step) -> None:
        """Run a step in a savepoint; a refusal (methods switched off, money
        spent meanwhile, ...) skips it, with the reason, instead of stopping
        ``make run``."""
        try:
            with transaction.atomic():
                step.run()
        except (LedgerError, PermissionDenied, ProviderError, WebhookRejected) as exc:
            self.skipped.append(f"{step.key}: {exc}")

    def rates(self) -> None:
        """Set the manual rates missing or older than :data:`RATES_REFRESH_AFTER`."""
        self.rates_set = 0
        source = manual_source()
        now = timezone.now()
        held = {
            (row.base_id, row.quote_id): row
            for row in Rate.objects.filter(source=source).only("base", "quote", "rate", "as_of")
        }
        for base, quote, value in MANUAL_RATES:
            row = held.get((base, quote))
            if row is not None and now - row.as_of <= RATES_REFRESH_AFTER:
                continue
            try:
                with transaction.atomic():
                    rate_set_manual(
                        actor=self.finance,
                        base=base,
                        quote=quote,
                        rate=row.rate if row is not None else Decimal(value),
                    )
            except LedgerError as exc:  # a currency switched off
                self.skipped.append(f"rate {base}/{quote}: {exc}")
                continue
            self.rates_set += 1

    def deposit_create(self, d: DemoDeposit) -> None:
        deposit = Deposit.objects.filter(reference=d.reference).first()
        if deposit is None:
            user = self.users[d.owner]
            wallet = services.wallet_open(user=user, currency=d.currency)
            # A fixed reference instead of a drawn one: a second run finds it.
            with mock.patch.object(deposit_services, "new_reference", return_value=d.reference):
                deposit = deposit_services.deposit_create(
                    user=user, wallet=wallet, method=_method(d.method), amount=Decimal(d.amount)
                )
            detail = reverse("payments:deposit_detail", args=[deposit.reference])
            deposit_services.deposit_start(deposit=deposit, return_url=settings.SITE_URL + detail)
        self.deposits[d.reference] = deposit

    def deposit_settle(self, d: DemoDeposit) -> None:
        deposit = self.deposits.get(d.reference)
        if deposit is None or deposit.status != Deposit.PENDING:
            return
        if d.outcome in (PAID, DECLINED):
            _sandbox_webhook(deposit, succeeded=d.outcome == PAID)
        else:
            deposit_services.deposit_match_wire(
                actor=self.finance,
                deposit=deposit,
                amount=Decimal(d.arrived or d.amount),
                currency=deposit.currency_id,
                bank_reference=d.bank_reference,
            )
        deposit.refresh_from_db()

    def withdrawal_request(self, w: DemoWithdrawal) -> None:
        user = self.users[w.owner]
        withdrawal = withdrawal_services.withdrawal_request(
            user=user,
            wallet=services.wallet_open(user=user, currency=w.currency),
            method=_method(w.method),
            amount=Decimal(w.amount),
            destination=w.destination,
            otp_code=None,
            idempotency_key=w.key,
        )
        self.withdrawals[w.key] = withdrawal

    def withdrawal_decide(self, w: DemoWithdrawal) -> None:
        withdrawal = self.withdrawals.get(w.key)
        if withdrawal is None:
            return
        withdrawal.refresh_from_db()
        if withdrawal.status != Withdrawal.PENDING or withdrawal.approvals.exists():
            return
        if w.outcome == REJECTED:
            withdrawal_services.withdrawal_reject(
                actor=self.finance, withdrawal=withdrawal, reason=w.note
            )
        elif w.outcome == ONE_OF_TWO:
            if self.administrator is not None:
                withdrawal_services.withdrawal_approve(
                    actor=self.administrator, withdrawal=withdrawal
                )
        else:
            withdrawal_services.withdrawal_approve(actor=self.finance, withdrawal=withdrawal)

    def withdrawal_pay(self, w: DemoWithdrawal) -> None:
        withdrawal = self.withdrawals.get(w.key)
        if withdrawal is None:
            return
        withdrawal.refresh_from_db()
        if withdrawal.status != Withdrawal.APPROVED:
            return
        withdrawal_services.withdrawal_mark_paid(
            actor=self.finance, withdrawal=withdrawal, payout_reference=w.note
        )

    def convert(self) -> None:
        owner, sold, bought, amount, _days = CONVERSION
        user = self.users[owner]
        source = services.wallet_open(user=user, currency=sold)
        target = services.wallet_open(user=user, currency=bought)
        done = Conversion.objects.filter(
            user=user,
            from_wallet=source,
            to_wallet=target,
            sell_amount=to_minor(Decimal(amount), source.currency.exponent),
            status=Conversion.EXECUTED,
            transfer__isnull=True,
        ).first()
        if done is None:
            quote = conversion_services.conversion_quote(
                user=user, from_wallet=source, to_wallet=target, sell_amount=Decimal(amount)
            )
            done = conversion_services.conversion_execute(user=user, public_id=quote.public_id)
        self.conversion = done

    def transfer_across(self) -> None:
        owner, sold, bought, amount, key = TRANSFER
        user = self.users[owner]
        # The service's own key (payments.services.conversions): looked up
        # first, so that a second run asks for no quote.
        done = Transfer.objects.filter(
            user=user, journal__idempotency_key=f"transfer:{user.pk}:{key}"
        ).first()
        if done is None:
            source = services.wallet_open(user=user, currency=sold)
            target = services.wallet_open(user=user, currency=bought)
            quote = conversion_services.conversion_quote(
                user=user, from_wallet=source, to_wallet=target, sell_amount=Decimal(amount)
            )
            done = conversion_services.transfer_execute(
                user=user,
                from_wallet=source,
                to_wallet=target,
                amount=Decimal(amount),
                idempotency_key=key,
                quote_id=quote.public_id,
            )
        self.transfer = done

    # --- the summary ----------------------------------------------------------------

    def journal_ids(self) -> set[int]:
        """The journals of the demo's deposits, withdrawals, conversion and transfer."""
        ids: set[int] = set(
            Deposit.objects.filter(reference__in=self.deposits).values_list("journal", flat=True)
        )
        for row in Withdrawal.objects.filter(
            pk__in=[w.pk for w in self.withdrawals.values()]
        ).values_list("reserve_journal", "settle_journal", "release_journal"):
            ids.update(row)
        for done in (self.conversion, self.transfer):
            if done is not None:
                ids.add(done.journal_id)
        ids.discard(None)
        return ids

    def lines(self) -> list[str]:
        if self.finance is None:
            return ["Demo money: no demo Finance user (run the accounts seeder first)."]
        deposits = Deposit.objects.filter(reference__in=self.deposits).select_related(
            "user", "currency"
        )
        withdrawals = (
            Withdrawal.objects.filter(pk__in=[w.pk for w in self.withdrawals.values()])
            .select_related("user", "wallet__currency")
            .prefetch_related("approvals__approver")
        )
        lines = [
            "",
            f"Demo money: {len(deposits)} deposits, {len(withdrawals)} withdrawals, "
            f"{'a' if self.conversion else 'no'} conversion and "
            f"{'a' if self.transfer else 'no'} transfer.",
            f"  Manual exchange rates for {len(MANUAL_RATES)} pairs against USD; each run renews "
            f"those older than a day ({self.rates_set} now).",
        ]
        todo = []
        for deposit in deposits:
            amount = _amount(deposit.amount, deposit.currency)
            if deposit.status == Deposit.PENDING and deposit.provider.kind == "manual":
                todo.append(
                    f"match the bank wire {deposit.reference} "
                    f"({amount} from {deposit.user.get_full_name()})"
                )
            elif deposit.status == Deposit.FLAGGED:
                todo.append(
                    f"resolve the flagged deposit {deposit.reference} "
                    f"({deposit.flag_reason.splitlines()[0]})"
                )
        for withdrawal in withdrawals:
            amount = _amount(withdrawal.amount, withdrawal.wallet.currency)
            if withdrawal.status == Withdrawal.PENDING:
                given = [a.approver.get_full_name() for a in withdrawal.approvals.all()]
                if approvals_required(withdrawal) < 2:
                    todo.append(f"approve the withdrawal {withdrawal.reference} ({amount})")
                elif given:
                    todo.append(
                        f"give the second approval of {withdrawal.reference} ({amount}, above "
                        f"the two-approver threshold; approved by {given[0]})"
                    )
                else:
                    todo.append(
                        f"approve the withdrawal {withdrawal.reference} ({amount}, above the "
                        "two-approver threshold: two approvers)"
                    )
            elif withdrawal.status == Withdrawal.APPROVED:
                todo.append(f"record the payout of {withdrawal.reference} ({amount})")
        if todo:
            lines.append(f"  For Finance ({FINANCE}) at /admin/payments/:")
            lines += [f"    {item}" for item in todo]
        lines += [f"  Skipped {item}" for item in self.skipped]
        return lines


def _method(name: str) -> PaymentMethod:
    method = PaymentMethod.objects.select_related("provider").filter(name=name).first()
    if method is None:
        raise LedgerError(f"there is no payment method {name!r}.")
    return method


def _amount(minor: int, currency: Currency) -> str:
    return f"{from_minor(minor, currency.exponent):,} {currency.code}"


def _sandbox_webhook(deposit: Deposit, *, succeeded: bool) -> None:
    """What the sandbox PSP's hosted checkout does when the client presses
    Pay or Decline: a signed webhook. Handed in-process to the service the
    webhook view calls (no server runs while seeding), so that it is
    verified, recorded and applied like one that came over HTTP."""
    provider = deposit.provider
    event = sandbox.webhook_event(
        succeeded=succeeded,
        reference=deposit.reference,
        amount=str(from_minor(deposit.amount, deposit.currency.exponent)),
        currency=deposit.currency_id,
    )
    body = json.dumps(event, separators=(",", ":")).encode()
    request = RequestFactory().post(
        reverse("payments_webhook", args=[provider.identifier]),
        data=body,
        content_type="application/json",
        headers={
            sandbox.SIGNATURE_HEADER: sandbox.sign(body, sandbox.webhook_secret_for(provider))
        },
    )
    deposit_services.webhook_receive(provider=provider, request=request)


def _two_approvers_above() -> None:
    """The demo's two-approver thresholds, where none is set (as Finance
    would in the admin; one set there is kept)."""
    for currency in Currency.objects.filter(
        code__in=TWO_APPROVERS_ABOVE, withdrawal_two_approvers_above__isnull=True
    ):
        currency.withdrawal_two_approvers_above = TWO_APPROVERS_ABOVE[currency.code]
        currency.save(update_fields=["withdrawal_two_approvers_above"])


# --- The seeder ---------------------------------------------------------------------


@transaction.atomic
def seed() -> list[str]:
    """The payments seeder for ``manage.py seed_demo``: lines to print."""
    users = {u.email: u for u in get_user_model().objects.filter(email__in=TRADERS)}
    if not users:
        return ["Demo wallets: no demo traders (run the accounts seeder first)."]
    staff = {
        u.email: u for u in get_user_model().objects.filter(email__in=(FINANCE, ADMINISTRATOR))
    }
    finance = staff.get(FINANCE)
    currencies = {c.code: c for c in Currency.objects.filter(code__in=CURRENCIES)}
    wallets: dict[tuple[str, str], LedgerAccount] = {}
    for email, user in users.items():
        for code in CURRENCIES:
            wallets[(email, code)] = services.wallet_open(user=user, currency=currencies[code])
    if finance is not None:
        _two_approvers_above()

    journals_before = JournalTransaction.objects.count()
    history = {"added": 0, "replayed": 0, "skipped": 0}

    def posting(p: Planned) -> None:
        try:
            journal = _post(p, wallets, users, finance)
        except InsufficientFunds:  # someone spent the demo money meanwhile
            history["skipped"] += 1
            return
        history["replayed" if journal.replayed else "added"] += 1

    money = _Money(users, staff)
    timeline = [
        Step(p.minute, p.key, partial(posting, p), guarded=False)
        for p in plan()
        if (p.owner, p.currency) in wallets
        and (not p.counterparty or (p.counterparty, p.currency) in wallets)
    ]
    timeline += money.steps()
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(days=DAYS)
    past = sorted((s for s in timeline if s.minute is not None), key=lambda s: (s.minute, s.key))
    for step in past:
        with clock(start + timedelta(minutes=step.minute)):
            if step.guarded:
                money.attempt(step)
            else:
                step.run()
    if finance is not None:
        money.attempt(Step(None, "money:rates", money.rates))  # fresh as of now
    for step in timeline:
        if step.minute is None:
            money.attempt(step)

    # Every journal of the demo is either added now or already there.
    added = JournalTransaction.objects.count() - journals_before
    money_added = added - history["added"]
    already = history["replayed"] + len(money.journal_ids()) - money_added
    lines = [
        "",
        f"Demo wallets: USD, EUR and BTC for {len(users)} traders; "
        f"{added} transactions added, {already} already there"
        + (f", {history['skipped']} skipped (not enough money)" if history["skipped"] else "")
        + ".",
        "  Wallets and their history: /room/wallets/",
    ]
    return lines + money.lines()


def _post(p: Planned, wallets, users, finance):
    wallet = wallets[(p.owner, p.currency)]
    if p.kind == "adjustment":
        return services.wallet_adjust(
            actor=finance,
            wallet=wallet,
            amount=_major(p.minor, wallet),
            reason=p.text,
            idempotency_key=p.key,
        )
    sender, receiver = users[p.owner], users[p.counterparty]
    return services.ledger_post(
        kind="transfer",
        idempotency_key=p.key,
        lines=[Line(wallet, -p.minor), Line(wallets[(p.counterparty, p.currency)], p.minor)],
        actor=sender,
        description=f"Transfer from {sender.get_full_name()} to {receiver.get_full_name()}",
    )


def _major(minor: int, wallet: LedgerAccount) -> Decimal:
    return from_minor(minor, wallet.currency.exponent)


# --- Trading accounts: live accounts funded from wallets ---------------------------

# (trader, account type, wallet currency, amount): Bruno funds his EUR account
# from his USD wallet, so the demo shows a converted transfer too.
TRADING_FUNDING = [
    (ALICE, "Standard USD", "USD", Decimal("2000")),
    (BRUNO, "Standard EUR", "USD", Decimal("1500")),
]


def seed_trading_funding() -> list[str]:
    """Fund the demo traders' live trading accounts from their wallets,
    through the same transfer a trader makes (ledger first, the platform by
    the task after commit), once per account; then, after commit, give them
    a simulated history (``accounts.demo.seed_trading_history``)."""
    from accounts.demo import seed_trading_history
    from accounts.models import TradingAccount

    from .models import TradingTransfer
    from .services.trading import trading_transfer_in

    lines = []
    emails = []
    for email, type_name, code, amount in TRADING_FUNDING:
        account = (
            TradingAccount.objects.filter(
                user__email=email, account_type__name=type_name, platform__identifier="demo"
            )
            .select_related("user", "platform", "account_type")
            .first()
        )
        wallet = LedgerAccount.objects.filter(
            kind=LedgerAccount.WALLET, owner__email=email, currency_id=code
        ).first()
        if account is None or wallet is None:
            continue
        emails.append(email)
        if TradingTransfer.objects.filter(trading_account=account).exists():
            continue
        try:
            transfer = trading_transfer_in(
                user=account.user,
                account=account,
                wallet=wallet,
                amount=min(amount, _major(wallet.balance, wallet)),
                idempotency_key=f"demo:trading:{account.login}",
            )
        except LedgerError as exc:  # a rate missing, a policy's refusal, ...
            lines.append(f"  Trading account {account.login} not funded: {exc}")
            continue
        lines.append(
            f"  {email} moved {_major(transfer.amount, wallet)} {code} to trading account "
            f"{account.login} ({transfer.reference})"
        )
    if emails:
        # The platform is credited after commit (the transfer's task); the
        # history needs the money there, so it comes after that.
        transaction.on_commit(lambda: seed_trading_history(emails=emails))
    return (["", "Demo trading transfers:"] + lines) if lines else []
