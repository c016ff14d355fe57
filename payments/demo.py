"""Demo wallets and history for the demo traders of ``accounts.demo``.

Alice, Bruno and Chen get USD, EUR and BTC wallets and about a hundred
adjustments (by the demo Finance user) and transfers between them, spread
over the last five months, so that the history pages, their filters and
paging have something to show. Everything is posted through the ledger
services, in time order, so balances, balances after and events are what
real use would produce.

Idempotent: each posting has a fixed idempotency key (``demo:...``) and a
fixed amount (a seeded random generator), so a second run replays every
posting and adds nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from unittest import mock

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from backoffice.money import from_minor

from . import services
from .exceptions import InsufficientFunds
from .models import Currency, LedgerAccount
from .services import Line

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


@contextmanager
def _clock(at: datetime) -> Iterator[None]:
    # The ledger stamps postings with the current time and entries are
    # append-only, so a history "over the last months" is posted with the
    # clock set back rather than edited afterwards.
    with mock.patch.object(timezone, "now", return_value=at):
        yield


@transaction.atomic
def seed() -> list[str]:
    """The payments seeder for ``manage.py seed_demo``: lines to print."""
    users = {u.email: u for u in get_user_model().objects.filter(email__in=TRADERS)}
    if not users:
        return ["Demo wallets: no demo traders (run the accounts seeder first)."]
    finance = get_user_model().objects.filter(email=FINANCE).first()
    currencies = {c.code: c for c in Currency.objects.filter(code__in=CURRENCIES)}
    wallets: dict[tuple[str, str], LedgerAccount] = {}
    for email, user in users.items():
        for code in CURRENCIES:
            wallets[(email, code)] = services.wallet_open(user=user, currency=currencies[code])

    start = timezone.now().replace(second=0, microsecond=0) - timedelta(days=DAYS)
    added = replayed = skipped = 0
    for p in plan():
        if (p.owner, p.currency) not in wallets or (
            p.counterparty and (p.counterparty, p.currency) not in wallets
        ):
            continue
        with _clock(start + timedelta(minutes=p.minute)):
            try:
                journal = _post(p, wallets, users, finance)
            except InsufficientFunds:  # someone spent the demo money meanwhile
                skipped += 1
                continue
        if journal.replayed:
            replayed += 1
        else:
            added += 1
    lines = [
        "",
        f"Demo wallets: USD, EUR and BTC for {len(users)} traders; "
        f"{added} transactions added, {replayed} already there"
        + (f", {skipped} skipped (not enough money)" if skipped else "")
        + ".",
        "  Wallets and their history: /room/wallets/",
    ]
    return lines


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
