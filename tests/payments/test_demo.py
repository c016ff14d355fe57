"""The payments demo data (``payments.demo``, run by ``manage.py seed_demo``
on every ``make run``): every case a Finance user and a trader should find,
made through the services; idempotent; still converting offline when the
demo database is a week old."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from auditlog.models import LogEntry
from django.utils import timezone

from accounts.demo import seed_demo
from accounts.models import User
from backoffice.models import Event
from kyc import demo as kyc_demo
from payments import demo, services
from payments.models import (
    Conversion,
    Currency,
    Deposit,
    Entry,
    JournalTransaction,
    LedgerAccount,
    PaymentMethod,
    Rate,
    Transfer,
    WebhookEvent,
    Withdrawal,
    WithdrawalApproval,
)
from payments.selectors import ledger_check
from payments.selectors.rates import RateTooOld, rate_for
from payments.selectors.withdrawals import approvals_required
from payments.services.conversions import conversion_execute, conversion_quote
from payments.services.deposits import deposit_match_wire, deposit_resolve_flagged
from payments.services.withdrawals import withdrawal_approve

pytestmark = pytest.mark.django_db

DEMO_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "BTC", "ETH", "USDT")


def seed() -> str:
    seed_demo()
    kyc_demo.seed()  # the levels the demo money moves within
    return "\n".join(demo.seed())


def counts() -> dict[str, int]:
    models = [
        JournalTransaction,
        Entry,
        LedgerAccount,
        Deposit,
        WebhookEvent,
        Withdrawal,
        WithdrawalApproval,
        Conversion,
        Transfer,
        Rate,
        Event,
        LogEntry,
    ]
    return {model.__name__: model.objects.count() for model in models}


def user(email: str) -> User:
    return User.objects.get(email=email)


def withdrawal(key: str) -> Withdrawal:
    owner = next(w.owner for w in demo.WITHDRAWALS if w.key == key)
    return Withdrawal.objects.get(
        reserve_journal__idempotency_key=f"withdrawal-request:{user(owner).pk}:{key}"
    )


def test_a_fresh_database_gets_every_case_through_the_services():
    lines = seed()

    status = dict(Deposit.objects.values_list("reference", "status"))
    assert status == {
        "DEP-DEM2CARD": "completed",
        "DEP-DEM5BANK": "completed",
        "DEP-DEM3CARD": "completed",
        "DEP-DEM8CRYP": "completed",
        "DEP-DEM7BANK": "flagged",
        "DEP-DEM4CARD": "failed",
        "DEP-DEM6BANK": "pending",
    }
    finance = user(demo.FINANCE)
    wire = Deposit.objects.get(reference="DEP-DEM5BANK")
    assert wire.provider_reference == "BARC-TRN-4578812" and wire.journal.actor == finance
    assert "1450.00 EUR" in Deposit.objects.get(reference="DEP-DEM7BANK").flag_reason
    # The sandbox's signed webhooks were verified, recorded and applied.
    assert sorted(WebhookEvent.objects.values_list("event_type", "result")) == [
        ("payment.failed", "applied"),
        *[("payment.succeeded", "applied")] * 3,
    ]
    card = Deposit.objects.get(reference="DEP-DEM2CARD")
    assert (card.amount, card.fee, card.credit_amount) == (200_000, 5_030, 194_970)

    chen_btc = withdrawal("demo:withdrawal:chen:btc")
    assert chen_btc.status == "paid" and chen_btc.payout_reference.startswith("sbx_po_")
    bruno_eur = withdrawal("demo:withdrawal:bruno:eur")
    assert (bruno_eur.status, bruno_eur.payout_reference) == ("paid", "SEPA-OUT-7719204")
    assert bruno_eur.decided_by == finance and bruno_eur.settle_journal is not None
    rejected = withdrawal("demo:withdrawal:bruno:eur-rejected")
    assert rejected.status == "rejected" and rejected.release_journal is not None
    assert "not in your name" in rejected.decision_reason
    large = withdrawal("demo:withdrawal:bruno:usd-large")
    assert large.status == "pending" and approvals_required(large) == 2
    assert [a.approver.email for a in large.approvals.all()] == [demo.ADMINISTRATOR]
    waiting = withdrawal("demo:withdrawal:alice:usd")
    assert waiting.status == "pending" and not waiting.approvals.exists()
    assert Currency.objects.get(code="USD").withdrawal_two_approvers_above == Decimal("10000")

    conversion = Conversion.objects.get(transfer__isnull=True)
    assert conversion.status == "executed" and conversion.user.email == "alice@demo.test"
    assert conversion.rate_as_of <= conversion.created_at  # set before it was used
    transfer = Transfer.objects.get()
    assert transfer.conversion is not None and transfer.journal == transfer.conversion.journal

    assert ledger_check().ok
    # Posted in time order: each wallet's entries by id are in time order, and
    # every balance after is the running sum (what the history pages show).
    for wallet in LedgerAccount.objects.filter(kind="wallet"):
        entries = list(wallet.entries.order_by("id"))
        assert [e.created_at for e in entries] == sorted(e.created_at for e in entries)
        running = list(itertools.accumulate(e.amount for e in entries))
        assert [e.balance_after for e in entries] == running
        assert wallet.balance == (running[-1] if running else 0)

    assert "match the bank wire DEP-DEM6BANK" in lines
    assert "resolve the flagged deposit DEP-DEM7BANK" in lines
    assert f"approve the withdrawal {waiting.reference}" in lines
    assert f"give the second approval of {large.reference}" in lines
    assert "Skipped" not in lines


def test_a_second_run_adds_nothing():
    seed()
    before = counts()
    rates = sorted(Rate.objects.values_list("base", "quote", "rate", "as_of"))
    journals = JournalTransaction.objects.count()

    again = seed()

    assert counts() == before
    assert sorted(Rate.objects.values_list("base", "quote", "rate", "as_of")) == rates
    assert f"0 transactions added, {journals} already there" in again
    assert "(0 now)" in again


def test_a_conversion_quote_works_right_after_seeding():
    seed()
    for base, quote in itertools.permutations(DEMO_CURRENCIES, 2):
        assert rate_for(base, quote).rate > 0, (base, quote)
    alice = user("alice@demo.test")
    eur = services.wallet_open(user=alice, currency="EUR")
    yen = services.wallet_open(user=alice, currency="JPY")
    quote = conversion_quote(user=alice, from_wallet=eur, to_wallet=yen, sell_amount=Decimal("100"))
    # 100 EUR at about 1.165 × 151.2 less the 0.5 % markup: about 17,500 yen.
    assert 17_000 < quote.buy_amount < 18_000
    conversion_execute(user=alice, public_id=quote.public_id)
    assert ledger_check().ok


def test_a_week_old_demo_database_gets_fresh_rates_and_nothing_else():
    seed()
    Rate.objects.filter(base="EUR", quote="USD").update(rate=Decimal("1.2"))  # by Finance
    before = counts()
    rates = dict(((b, q), r) for b, q, r in Rate.objects.values_list("base", "quote", "rate"))
    later = timezone.now() + timedelta(days=8)
    with mock.patch.object(timezone, "now", return_value=later):
        with pytest.raises(RateTooOld):
            rate_for("EUR", "USD")
        lines = seed()
        assert rate_for("EUR", "USD").as_of == later
        alice = user("alice@demo.test")
        quote = conversion_quote(
            user=alice,
            from_wallet=services.wallet_open(user=alice, currency="USD"),
            to_wallet=services.wallet_open(user=alice, currency="EUR"),
            sell_amount=Decimal("10"),
        )
    assert quote.rate_as_of == later
    assert f"({len(demo.MANUAL_RATES)} now)" in lines
    after = counts()
    # Renewed in place at the rate they held (Finance's EUR/USD too), each
    # renewal in the audit log; nothing else changed.
    assert after.pop("LogEntry") == before.pop("LogEntry") + len(demo.MANUAL_RATES)
    assert after.pop("Conversion") == before.pop("Conversion") + 1  # the quote above
    assert after == before
    assert {(b, q): r for b, q, r in Rate.objects.values_list("base", "quote", "rate")} == rates


def test_what_finance_did_with_the_demo_is_left_alone():
    seed()
    finance = user(demo.FINANCE)
    deposit_match_wire(
        actor=finance,
        deposit=Deposit.objects.get(reference="DEP-DEM6BANK"),
        amount=Decimal("2000.00"),
        currency="GBP",
        bank_reference="HSBC-TRN-1",
    )
    deposit_resolve_flagged(
        actor=finance,
        deposit=Deposit.objects.get(reference="DEP-DEM7BANK"),
        credit=True,
        note="The client paid the bank's fee; credited as created.",
    )
    withdrawal_approve(actor=finance, withdrawal=withdrawal("demo:withdrawal:alice:usd"))
    withdrawal_approve(actor=finance, withdrawal=withdrawal("demo:withdrawal:bruno:usd-large"))
    before = counts()
    statuses = sorted(Withdrawal.objects.values_list("reference", "status"))

    lines = seed()

    assert counts() == before
    assert sorted(Withdrawal.objects.values_list("reference", "status")) == statuses
    assert set(Deposit.objects.values_list("status", flat=True)) == {"completed", "failed"}
    assert "record the payout of" in lines and "match the bank wire" not in lines
    assert ledger_check().ok


def test_a_method_switched_off_skips_its_cases_and_the_rest_is_seeded():
    seed_demo()
    kyc_demo.seed()
    PaymentMethod.objects.filter(name=demo.CARD).update(enabled=False)

    lines = "\n".join(demo.seed())

    assert "Skipped money:DEP-DEM2CARD" in lines
    assert not Deposit.objects.filter(reference__endswith="CARD").exists()
    assert Deposit.objects.get(reference="DEP-DEM5BANK").status == "completed"
    assert Transfer.objects.exists()
    assert ledger_check().ok


def test_no_demo_traders_no_demo_money():
    assert demo.seed() == ["Demo wallets: no demo traders (run the accounts seeder first)."]
    assert not Deposit.objects.exists() and not Rate.objects.filter(source__kind="manual").exists()
