"""The ledger service: balanced postings, idempotency, wallets never negative."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from payments import services
from payments.exceptions import (
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    UnbalancedTransaction,
)
from payments.models import Entry, LedgerAccount
from payments.selectors import ledger_check, system_account_balance
from payments.services import Line
from tests.factories import TraderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def usd_wallets(db):
    a = services.wallet_open(user=TraderFactory(), currency="USD")
    b = services.wallet_open(user=TraderFactory(), currency="USD")
    return a, b


def fund(wallet, minor: int, key: str = "fund") -> None:
    services.ledger_post(
        kind="test_funding",
        idempotency_key=f"{key}:{wallet.pk}",
        lines=[
            Line(wallet, minor),
            Line(services.system_account("funding", wallet.currency_id), -minor),
        ],
    )


def test_a_transfer_moves_money_and_keeps_invariants(usd_wallets):
    a, b = usd_wallets
    fund(a, 10_000)
    journal = services.ledger_post(
        kind="transfer", idempotency_key="t1", lines=[Line(a, -2_550), Line(b, 2_550)]
    )
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance) == (7_450, 2_550)
    assert journal.entries.count() == 2
    assert ledger_check().ok
    funding = services.system_account("funding", "USD")
    assert system_account_balance(account=funding) == -10_000
    funding.refresh_from_db()
    assert funding.balance == 0  # no running balance on system accounts


def test_unbalanced_postings_are_refused(usd_wallets):
    a, b = usd_wallets
    fund(a, 100)
    with pytest.raises(UnbalancedTransaction):
        services.ledger_post(kind="x", idempotency_key="u", lines=[Line(a, -100), Line(b, 99)])
    with pytest.raises(UnbalancedTransaction):
        services.ledger_post(kind="x", idempotency_key="u1", lines=[Line(a, -100)])
    eur = services.wallet_open(user=a.owner, currency="EUR")
    with pytest.raises(UnbalancedTransaction):  # zero in total, but across currencies
        services.ledger_post(kind="x", idempotency_key="u2", lines=[Line(a, -100), Line(eur, 100)])
    assert Entry.objects.filter(transaction__kind="x").count() == 0


def test_a_wallet_cannot_go_negative_and_nothing_is_written(usd_wallets):
    a, b = usd_wallets
    fund(a, 500)
    with pytest.raises(InsufficientFunds):
        services.ledger_post(
            kind="transfer", idempotency_key="t", lines=[Line(a, -501), Line(b, 501)]
        )
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance) == (500, 0)
    assert not Entry.objects.filter(transaction__idempotency_key="t").exists()


def test_the_database_refuses_a_negative_wallet_balance(usd_wallets):
    a, _ = usd_wallets
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerAccount.objects.filter(pk=a.pk).update(balance=-1)


def test_same_key_same_request_returns_the_first_result(usd_wallets):
    a, b = usd_wallets
    fund(a, 1_000)
    first = services.ledger_post(
        kind="transfer", idempotency_key="k", lines=[Line(a, -10), Line(b, 10)]
    )
    again = services.ledger_post(
        kind="transfer", idempotency_key="k", lines=[Line(a, -10), Line(b, 10)]
    )
    assert again.pk == first.pk and again.replayed and not first.replayed
    a.refresh_from_db()
    assert a.balance == 990


def test_same_key_different_request_is_a_conflict(usd_wallets):
    a, b = usd_wallets
    fund(a, 1_000)
    services.ledger_post(kind="transfer", idempotency_key="k", lines=[Line(a, -10), Line(b, 10)])
    with pytest.raises(IdempotencyConflict):
        services.ledger_post(
            kind="transfer", idempotency_key="k", lines=[Line(a, -11), Line(b, 11)]
        )


def test_reversal_mirrors_once(usd_wallets):
    a, b = usd_wallets
    fund(a, 1_000)
    journal = services.ledger_post(
        kind="transfer", idempotency_key="r", lines=[Line(a, -300), Line(b, 300)]
    )
    reversal = services.ledger_reverse(journal=journal, actor=None, reason="mistake")
    assert reversal.reverses_id == journal.pk
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance, b.balance) == (1_000, 0)
    assert services.ledger_reverse(journal=journal, actor=None, reason="mistake").pk == reversal.pk
    with pytest.raises(LedgerError):
        services.ledger_reverse(
            journal=journal, actor=None, reason="again", idempotency_key="other"
        )
    with pytest.raises(LedgerError):
        services.ledger_reverse(journal=reversal, actor=None, reason="undo the undo")
    assert ledger_check().ok


def test_reversal_of_spent_money_is_refused(usd_wallets):
    a, b = usd_wallets
    fund(a, 1_000)
    journal = services.ledger_post(
        kind="transfer", idempotency_key="s", lines=[Line(a, -1_000), Line(b, 1_000)]
    )
    services.ledger_post(
        kind="transfer", idempotency_key="s2", lines=[Line(b, -1_000), Line(a, 1_000)]
    )
    services.ledger_post(
        kind="transfer", idempotency_key="s3", lines=[Line(a, -1_000), Line(b, 1_000)]
    )
    services.ledger_post(kind="transfer", idempotency_key="s4", lines=[Line(b, -600), Line(a, 600)])
    with pytest.raises(InsufficientFunds):
        services.ledger_reverse(journal=journal, actor=None, reason="b spent it")


def test_wallet_adjustment_by_finance(usd_wallets):
    a, _ = usd_wallets
    staff = TraderFactory(is_staff=True)
    services.wallet_adjust(
        actor=staff, wallet=a, amount=Decimal("12.34"), reason="goodwill", idempotency_key="adj1"
    )
    a.refresh_from_db()
    assert a.balance == 1_234
    with pytest.raises(LedgerError):
        services.wallet_adjust(
            actor=staff, wallet=a, amount=Decimal("0.001"), reason="x", idempotency_key="adj2"
        )
    with pytest.raises(LedgerError):
        services.wallet_adjust(
            actor=staff, wallet=a, amount=Decimal("1"), reason=" ", idempotency_key="adj3"
        )


def test_wallet_open_is_idempotent_and_one_per_currency(usd_wallets):
    a, _ = usd_wallets
    assert services.wallet_open(user=a.owner, currency="USD").pk == a.pk
    with pytest.raises(LedgerError):
        services.wallet_open(user=a.owner, currency="XYZ")


@pytest.mark.django_db(transaction=True)
def test_postgres_refuses_unbalanced_entries_written_by_hand():
    if connection.vendor != "postgresql":
        pytest.skip("the database trigger is PostgreSQL's")
    a = services.wallet_open(user=TraderFactory(), currency="USD")
    fund(a, 100)
    journal = a.entries.first().transaction
    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.create(transaction=journal, account=a, currency_id="USD", amount=5)
    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.filter(account=a).update(amount=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Entry.objects.filter(account=a).delete()
    with pytest.raises(IntegrityError), transaction.atomic():  # currency must match the account
        Entry.objects.bulk_create(
            [
                Entry(transaction=journal, account=a, currency_id="EUR", amount=5),
                Entry(transaction=journal, account=a, currency_id="EUR", amount=-5),
            ]
        )
    assert ledger_check().ok


def test_a_reversal_is_an_event_in_the_client_timeline(usd_wallets):
    from backoffice.models import Event

    a, b = usd_wallets
    fund(a, 1_000)
    journal = services.ledger_post(
        kind="transfer", idempotency_key="ev", lines=[Line(a, -100), Line(b, 100)]
    )
    services.ledger_reverse(journal=journal, actor=None, reason="wrong client")
    services.ledger_reverse(journal=journal, actor=None, reason="wrong client")  # replay
    events = Event.objects.filter(name="ledger.reversed")
    assert {e.client_id for e in events} == {a.owner_id, b.owner_id}
    assert events.count() == 2
