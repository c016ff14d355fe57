"""Money between wallets and trading accounts: the ledger and the platform
must agree whatever the platform does (refuse, time out before or after
applying, answer twice) and whenever a worker dies.

The platform here is the built-in demo platform (its own tables), wrapped by
a scripted gateway that injects the failures at the network boundary.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.test import TestCase

from accounts.models import DemoPlatformAccount, DemoPlatformOperation, Platform, TradingAccount
from accounts.platforms import GATEWAYS
from accounts.platforms.base import OutcomeUnknown, PlatformError
from accounts.platforms.demo import DemoGateway
from backoffice import policies
from backoffice.models import Event
from payments import services
from payments.models import LedgerAccount, TradingTransfer
from payments.selectors.wallets import ledger_check, system_account_balance
from payments.services.rates import rate_set_manual
from payments.services.trading import (
    TradingTransferError,
    TradingTransferKeyReused,
    trading_transfer_in,
    trading_transfer_out,
    trading_transfer_process,
    trading_transfers_sweep,
)
from tests.factories import TraderFactory, open_trading_account

pytestmark = pytest.mark.django_db


class WorkerDied(BaseException):
    """Stands for the worker process being killed mid-task."""


class ScriptedGateway(DemoGateway):
    """The demo platform behind a network edge that misbehaves on cue.

    ``script`` is a list of what the next balance operations do:
    ``"ok"``, ``"refuse"``, ``"unreachable"`` (not applied, temporary),
    ``"timeout-before"`` (not applied, outcome unknown), ``"timeout-after"``
    (applied, outcome unknown), ``"die-after"`` (applied, then the worker
    dies), ``"twice"`` (applied, and applied again: a platform that answers
    twice to one request)."""

    script: list[str] = []
    calls: list[str] = []
    lookups: list[str] = []

    def balance_operation(self, *, login, amount, comment, key):
        step = ScriptedGateway.script.pop(0) if ScriptedGateway.script else "ok"
        ScriptedGateway.calls.append(step)
        if step == "refuse":
            raise PlatformError("Account disabled for trading", permanent=True)
        if step == "unreachable":
            raise PlatformError("Connection refused")
        if step == "timeout-before":
            raise OutcomeUnknown()
        ticket = super().balance_operation(login=login, amount=amount, comment=comment, key=key)
        if step == "twice":
            # A second application under another key: what a platform without
            # deduplication does when a request is replayed blindly.
            super().balance_operation(login=login, amount=amount, comment=comment, key=key + "#2")
        if step == "timeout-after":
            raise OutcomeUnknown()
        if step == "die-after":
            raise WorkerDied()
        return ticket

    def balance_operation_find(self, *, login, key):
        ScriptedGateway.lookups.append(key)
        return super().balance_operation_find(login=login, key=key)


@pytest.fixture
def scripted(monkeypatch, settings):
    monkeypatch.setitem(GATEWAYS._paths, "scripted", f"{__name__}.ScriptedGateway")
    monkeypatch.setitem(GATEWAYS._loaded, "scripted", ScriptedGateway)
    ScriptedGateway.script, ScriptedGateway.calls, ScriptedGateway.lookups = [], [], []
    Platform.objects.filter(identifier="demo").update(kind="scripted")
    settings.TRADING_TRANSFER_STALE_AFTER = 0
    settings.TRADING_TRANSFER_RETRY_AFTER = 0
    return ScriptedGateway


def fund(wallet: LedgerAccount, minor: int) -> LedgerAccount:
    services.ledger_post(
        kind="test_funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
        lines=[
            services.Line(wallet, minor),
            services.Line(services.system_account("funding", wallet.currency_id), -minor),
        ],
    )
    wallet.refresh_from_db()
    return wallet


@pytest.fixture
def trader():
    return TraderFactory()


@pytest.fixture
def usd(trader):
    return fund(services.wallet_open(user=trader, currency="USD"), 500_000)


@pytest.fixture
def account(trader):
    return open_trading_account(trader)


def platform_balance(account: TradingAccount) -> int:
    return DemoPlatformAccount.objects.get(login=account.login).balance


def clearing(account: TradingAccount) -> int:
    acc = services.system_account(f"platform:{account.platform.identifier}", account.currency)
    return system_account_balance(account=acc)


def balance(wallet) -> int:
    wallet.refresh_from_db()
    return wallet.balance


def transfer_in(trader, account, wallet, amount="250.00", key=None):
    # As in production: the platform is called by a task after commit.
    with TestCase.captureOnCommitCallbacks(execute=True):
        return trading_transfer_in(
            user=trader,
            account=account,
            wallet=wallet,
            amount=Decimal(amount),
            idempotency_key=key or str(uuid.uuid4()),
        )


def transfer_out(trader, account, wallet, amount="100.00", key=None):
    account.refresh_from_db()
    with TestCase.captureOnCommitCallbacks(execute=True):
        return trading_transfer_out(
            user=trader,
            account=account,
            wallet=wallet,
            amount=Decimal(amount),
            idempotency_key=key or str(uuid.uuid4()),
        )


def reload(transfer) -> TradingTransfer:
    return TradingTransfer.objects.get(pk=transfer.pk)


def assert_consistent(account, wallet, *, wallet_minor, platform_minor):
    """The ledger balances, and the clearing account holds what the platform does."""
    assert ledger_check().ok
    assert balance(wallet) == wallet_minor
    assert platform_balance(account) == platform_minor
    assert clearing(account) == platform_minor


# --- the happy paths ---------------------------------------------------------------


def test_transfer_in_debits_the_wallet_and_credits_the_platform(trader, usd, account):
    transfer = transfer_in(trader, account, usd, "250.00")
    transfer = reload(transfer)
    assert transfer.status == TradingTransfer.COMPLETED and transfer.platform_ticket
    assert_consistent(account, usd, wallet_minor=475_000, platform_minor=25_000)
    account.refresh_from_db()
    assert account.balance == 25_000 and account.state_updated_at is not None
    names = list(Event.objects.filter(client=trader).values_list("name", flat=True))
    assert "trading_account.transfer_requested" in names
    assert "trading_account.transfer_in" in names


def test_transfer_out_debits_the_platform_then_credits_the_wallet(trader, usd, account):
    transfer_in(trader, account, usd, "250.00")
    transfer = reload(transfer_out(trader, account, usd, "100.00"))
    assert transfer.status == TradingTransfer.COMPLETED and transfer.journal_id
    assert_consistent(account, usd, wallet_minor=485_000, platform_minor=15_000)
    assert Event.objects.filter(name="trading_account.transfer_out", client=trader).exists()


def test_transfer_in_converts_between_currencies(trader, account):
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0800"))
    eur = fund(services.wallet_open(user=trader, currency="EUR"), 100_000)
    transfer = reload(transfer_in(trader, account, eur, "200.00"))
    assert transfer.status == TradingTransfer.COMPLETED
    assert transfer.rate is not None and transfer.rate < Decimal("1.08")  # the markup
    # 200 EUR at 1.08 less the 0.5 % markup, rounded down to the cent.
    assert transfer.account_amount == 21_492
    assert platform_balance(account) == 21_492 == clearing(account)
    assert balance(eur) == 80_000
    assert ledger_check().ok


def test_transfer_out_converts_at_the_rate_of_the_request(trader, usd, account):
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0800"))
    eur = services.wallet_open(user=trader, currency="EUR")
    transfer_in(trader, account, usd, "300.00")
    transfer = reload(transfer_out(trader, account, eur, "108.00"))
    assert transfer.status == TradingTransfer.COMPLETED
    assert platform_balance(account) == 19_200 == clearing(account)
    assert 0 < balance(eur) < 10_000  # about 99.5 EUR after the markup
    assert ledger_check().ok


# --- refusals: nothing moves -------------------------------------------------------


def test_insufficient_funds_moves_nothing(trader, usd, account):
    with pytest.raises(TradingTransferError, match="Insufficient funds"):
        transfer_in(trader, account, usd, "6000.00")
    assert not TradingTransfer.objects.exists()
    assert_consistent(account, usd, wallet_minor=500_000, platform_minor=0)


@pytest.mark.parametrize(
    "amount, message",
    [
        ("0", "greater than zero"),
        ("-5", "greater than zero"),
        ("1.001", "at most 2 decimal places"),
        ("NaN", "as a number"),
        ("1e30", "too large"),
    ],
)
def test_bad_amounts_are_refused_in_words(trader, usd, account, amount, message):
    with pytest.raises(TradingTransferError, match=message):
        transfer_in(trader, account, usd, amount)
    assert not TradingTransfer.objects.exists()


def test_the_first_transfer_must_reach_the_types_minimum(trader, usd, account):
    with pytest.raises(TradingTransferError, match="at least 100"):
        transfer_in(trader, account, usd, "50.00")
    transfer_in(trader, account, usd, "100.00")
    transfer_in(trader, account, usd, "10.00")  # later ones may be smaller
    assert platform_balance(account) == 11_000


def test_another_traders_account_or_wallet_is_refused(trader, usd, account):
    other = TraderFactory()
    other_account = open_trading_account(other)
    other_wallet = fund(services.wallet_open(user=other, currency="USD"), 100_000)
    with pytest.raises(TradingTransferError, match="your own trading accounts"):
        transfer_in(trader, other_account, usd)
    with pytest.raises(TradingTransferError, match="your own wallets"):
        transfer_in(trader, account, other_wallet)
    with pytest.raises(TradingTransferError):
        transfer_out(trader, other_account, usd)
    assert not TradingTransfer.objects.exists()


def test_demo_accounts_take_no_transfers(trader, usd):
    demo = open_trading_account(trader, type_name="Demo USD")
    with pytest.raises(TradingTransferError, match="demo account"):
        transfer_in(trader, demo, usd)
    with pytest.raises(TradingTransferError, match="demo account"):
        transfer_out(trader, demo, usd)


def test_a_policy_refusal_is_given_with_its_reason(trader, usd, account):
    asked = []

    def refuse(user, **context):
        asked.append(context)
        return policies.Decision(False, "Trading transfers are blocked while we review.")

    policies.register(policies.TRANSFER, "test-refuse", refuse)
    try:
        with pytest.raises(TradingTransferError, match="blocked while we review") as exc:
            transfer_in(trader, account, usd)
    finally:
        policies.unregister(policies.TRANSFER, "test-refuse")
    assert exc.value.decision is not None
    assert asked[0]["trading_account"] == account and asked[0]["direction"] == "in"
    assert not TradingTransfer.objects.exists()


def test_transfer_out_beyond_the_free_margin_is_refused(trader, usd, account):
    transfer_in(trader, account, usd, "200.00")
    with pytest.raises(TradingTransferError, match="free margin"):
        transfer_out(trader, account, usd, "500.00")


def test_the_platform_refusing_a_debit_leaves_the_ledger_alone(trader, usd, account, scripted):
    transfer_in(trader, account, usd, "200.00")
    scripted.script = ["refuse"]
    transfer = reload(transfer_out(trader, account, usd, "50.00"))
    assert transfer.status == TradingTransfer.FAILED
    assert "disabled" in transfer.error and transfer.journal_id is None
    assert_consistent(account, usd, wallet_minor=480_000, platform_minor=20_000)


# --- idempotency ------------------------------------------------------------------


def test_the_same_key_returns_the_same_transfer(trader, usd, account):
    first = transfer_in(trader, account, usd, "150.00", key="k-1")
    again = transfer_in(trader, account, usd, "150.00", key="k-1")
    assert again.pk == first.pk
    with pytest.raises(TradingTransferKeyReused):
        transfer_in(trader, account, usd, "151.00", key="k-1")
    assert TradingTransfer.objects.count() == 1
    assert_consistent(account, usd, wallet_minor=485_000, platform_minor=15_000)


def test_keys_are_per_client(trader, usd, account):
    other = TraderFactory()
    other_account = open_trading_account(other)
    other_usd = fund(services.wallet_open(user=other, currency="USD"), 100_000)
    transfer_in(trader, account, usd, "150.00", key="same")
    transfer_in(other, other_account, other_usd, "150.00", key="same")
    assert TradingTransfer.objects.count() == 2


# --- the platform misbehaves --------------------------------------------------------


def test_a_refusal_reverses_the_posting_and_says_why(trader, usd, account, scripted):
    scripted.script = ["refuse"]
    transfer = reload(transfer_in(trader, account, usd, "250.00"))
    assert transfer.status == TradingTransfer.FAILED
    assert "Account disabled for trading" in transfer.error
    assert transfer.reversal_journal_id is not None
    assert_consistent(account, usd, wallet_minor=500_000, platform_minor=0)
    failed = Event.objects.get(name="trading_account.transfer_failed")
    assert "disabled" in failed.payload["reason"]


def test_timeout_before_applying_is_looked_up_then_sent_again(trader, usd, account, scripted):
    scripted.script = ["timeout-before"]
    transfer = reload(transfer_in(trader, account, usd, "250.00"))
    assert transfer.status == TradingTransfer.UNKNOWN
    assert platform_balance(account) == 0 and balance(usd) == 475_000  # money in clearing
    assert trading_transfers_sweep() == 1
    transfer = reload(transfer)
    assert transfer.status == TradingTransfer.COMPLETED
    assert scripted.lookups == [transfer.reference]  # asked before sending again
    assert scripted.calls == ["timeout-before", "ok"]
    assert_consistent(account, usd, wallet_minor=475_000, platform_minor=25_000)


def test_timeout_after_applying_is_found_and_never_sent_twice(trader, usd, account, scripted):
    scripted.script = ["timeout-after"]
    transfer = reload(transfer_in(trader, account, usd, "250.00"))
    assert transfer.status == TradingTransfer.UNKNOWN
    trading_transfers_sweep()
    transfer = reload(transfer)
    assert transfer.status == TradingTransfer.COMPLETED and transfer.platform_ticket
    assert scripted.calls == ["timeout-after"]  # found by its key: no second call
    assert DemoPlatformOperation.objects.filter(login=account.login).count() == 1
    assert_consistent(account, usd, wallet_minor=475_000, platform_minor=25_000)


def test_an_uncertain_call_is_not_settled_while_it_may_still_land(
    trader, usd, account, scripted, settings
):
    scripted.script = ["timeout-before"]
    transfer = transfer_in(trader, account, usd, "250.00")
    settings.TRADING_TRANSFER_STALE_AFTER = 600
    assert trading_transfers_sweep() == 0
    assert trading_transfer_process(transfer_id=transfer.pk) is None
    assert scripted.lookups == [] and scripted.calls == ["timeout-before"]
    assert reload(transfer).status == TradingTransfer.UNKNOWN


def test_timeout_on_a_transfer_out_then_found(trader, usd, account, scripted):
    transfer_in(trader, account, usd, "200.00")
    scripted.script = ["timeout-after"]
    transfer = reload(transfer_out(trader, account, usd, "50.00"))
    assert transfer.status == TradingTransfer.UNKNOWN
    assert balance(usd) == 480_000  # not credited before the platform says so
    trading_transfers_sweep()
    assert reload(transfer).status == TradingTransfer.COMPLETED
    assert_consistent(account, usd, wallet_minor=485_000, platform_minor=15_000)


def test_unreachable_platform_is_retried_by_the_sweeper(trader, usd, account, scripted):
    scripted.script = ["unreachable", "unreachable"]
    transfer = reload(transfer_in(trader, account, usd, "250.00"))
    assert transfer.status == TradingTransfer.PENDING and "refused" in transfer.error
    trading_transfers_sweep()
    assert reload(transfer).status == TradingTransfer.PENDING
    trading_transfers_sweep()
    assert reload(transfer).status == TradingTransfer.COMPLETED
    assert scripted.lookups == []  # never sent: nothing to look up
    assert_consistent(account, usd, wallet_minor=475_000, platform_minor=25_000)


def test_gives_up_after_max_attempts_and_reverses(trader, usd, account, scripted):
    scripted.script = ["unreachable"] * 10
    transfer = transfer_in(trader, account, usd, "250.00")
    for _ in range(6):
        trading_transfers_sweep()
    transfer = reload(transfer)
    assert transfer.status == TradingTransfer.FAILED and "5 attempts" in transfer.error
    assert_consistent(account, usd, wallet_minor=500_000, platform_minor=0)


def test_a_task_delivered_twice_credits_once(trader, usd, account, scripted):
    transfer = reload(transfer_in(trader, account, usd, "250.00"))
    assert transfer.status == TradingTransfer.COMPLETED
    assert trading_transfer_process(transfer_id=transfer.pk) is None
    trading_transfers_sweep()
    assert scripted.calls == ["ok"]
    assert Event.objects.filter(name="trading_account.transfer_in").count() == 1
    assert_consistent(account, usd, wallet_minor=475_000, platform_minor=25_000)


def test_a_platform_that_answers_twice_shows_as_a_mismatch(trader, usd, account, scripted):
    """A platform applying one request twice is the platform's fault; our side
    moves the money once, and the clearing account then differs from the
    platform by exactly the extra credit (what reconciliation looks for)."""
    scripted.script = ["twice"]
    transfer = reload(transfer_in(trader, account, usd, "250.00"))
    assert transfer.status == TradingTransfer.COMPLETED
    assert balance(usd) == 475_000 and clearing(account) == 25_000
    assert platform_balance(account) == 50_000


# --- a worker dies between the two steps ---------------------------------------------


def test_worker_dies_after_posting_before_calling(trader, usd, account, scripted, monkeypatch):
    from payments.services import trading

    monkeypatch.setattr(trading, "_enqueue", lambda pk: None)  # the task never runs
    transfer = transfer_in(trader, account, usd, "250.00")
    assert reload(transfer).status == TradingTransfer.PENDING
    assert balance(usd) == 475_000 and platform_balance(account) == 0
    trading_transfers_sweep()
    assert reload(transfer).status == TradingTransfer.COMPLETED
    assert scripted.lookups == []  # never sent before: sent without a lookup
    assert_consistent(account, usd, wallet_minor=475_000, platform_minor=25_000)


def test_worker_dies_after_the_platform_applied_a_transfer_in(trader, usd, account, scripted):
    scripted.script = ["die-after"]
    with pytest.raises(WorkerDied):
        transfer_in(trader, account, usd, "250.00")
    transfer = TradingTransfer.objects.get()
    assert transfer.status == TradingTransfer.SENDING
    trading_transfers_sweep()
    assert reload(transfer).status == TradingTransfer.COMPLETED
    assert scripted.calls == ["die-after"]
    assert_consistent(account, usd, wallet_minor=475_000, platform_minor=25_000)


def test_worker_dies_between_the_platform_debit_and_the_wallet_credit(
    trader, usd, account, scripted
):
    transfer_in(trader, account, usd, "200.00")
    scripted.script = ["die-after"]
    with pytest.raises(WorkerDied):
        transfer_out(trader, account, usd, "50.00")
    transfer = TradingTransfer.objects.filter(direction="out").get()
    assert transfer.status == TradingTransfer.SENDING and transfer.journal_id is None
    assert platform_balance(account) == 15_000 and balance(usd) == 480_000
    trading_transfers_sweep()
    transfer = reload(transfer)
    assert transfer.status == TradingTransfer.COMPLETED and transfer.journal_id
    assert scripted.calls == ["ok", "die-after"]
    assert_consistent(account, usd, wallet_minor=485_000, platform_minor=15_000)
