"""Withdrawals: the request (reserved at once, fee, 2FA, the can_withdraw
policy, idempotency, double spending), cancel, four-eyes approval, payout
through the provider (the real sandbox and manual adapters; a test-only
adapter for provider errors), rejection; the trader's pages, another
trader's withdrawal; query counts; and the races, on PostgreSQL, with threads.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, connections
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.roles import COMPLIANCE, FINANCE, SUPPORT
from backoffice import policies
from backoffice.models import Event
from payments import services
from payments.models import (
    Currency,
    JournalTransaction,
    LedgerAccount,
    PaymentMethod,
    PaymentProvider,
    Withdrawal,
    WithdrawalApproval,
)
from payments.providers import PSPS
from payments.providers.base import PaymentProviderBase, PayoutResult, ProviderError
from payments.selectors import ledger_check, system_account_balance
from payments.selectors import withdrawals as selectors
from payments.services import withdrawals as wd
from payments.services.withdrawals import WithdrawalError
from tests.conftest import require_or_skip
from tests.factories import StaffFactory, TraderFactory, enable_totp, set_kyc_level, totp_code

pytestmark = pytest.mark.django_db

IBAN = "DE89370400440532013000"
DESTINATIONS = {
    "bank": {"iban": "DE89 3704 0044 0532 0130 00", "account_holder": "Alice Trader"},
    "card": {"card_last4": "4242"},
    "crypto": {"address": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"},
    "wallet": {},
}


# --- Helpers and fixtures ----------------------------------------------------------------


def fund(wallet: LedgerAccount, amount: str = "1000") -> None:
    services.wallet_adjust(
        actor=None,
        wallet=wallet,
        amount=Decimal(amount),
        reason="test funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
    )


def method(name: str) -> PaymentMethod:
    return PaymentMethod.objects.select_related("provider").get(name=name)


def bank() -> PaymentMethod:
    return method("Bank wire")  # manual provider: Finance pays by hand


def card() -> PaymentMethod:
    return method("Card (sandbox)")  # sandbox provider: pays automatically; 2.5 % + 0.30


def withdraw(user, wallet, via: PaymentMethod, amount: str = "100", **kwargs) -> Withdrawal:
    return wd.withdrawal_request(
        user=user,
        wallet=wallet,
        method=via,
        amount=Decimal(amount),
        destination=kwargs.get("destination", DESTINATIONS[via.icon]),
        otp_code=kwargs.get("otp"),
        idempotency_key=kwargs.get("key") or str(uuid.uuid4()),
    )


def balance(wallet: LedgerAccount) -> int:
    return LedgerAccount.objects.get(pk=wallet.pk).balance


def system(code: str, currency: str = "USD") -> int:
    return system_account_balance(account=services.system_account(code, currency))


def pending_total() -> int:
    return system("withdrawals_pending")


def events(name: str) -> list[Event]:
    return list(Event.objects.filter(name=name).order_by("id"))


def reload(withdrawal: Withdrawal) -> Withdrawal:
    return Withdrawal.objects.select_related("wallet__currency", "method__provider").get(
        pk=withdrawal.pk
    )


@pytest.fixture
def usd(trader) -> LedgerAccount:
    wallet = services.wallet_open(user=trader, currency="USD")
    fund(wallet)
    wallet.refresh_from_db()
    return wallet


@pytest.fixture
def finance(db):
    return StaffFactory(roles=[FINANCE])


@pytest.fixture
def finance2(db):
    return StaffFactory(roles=[FINANCE])


class FlakyPayouts(PaymentProviderBase):
    """A test-only PSP adapter whose payouts fail as told (``error``), or pay."""

    automatic_payouts = True
    error: Exception | None = None
    calls: list[str] = []

    def payout(self, withdrawal) -> PayoutResult:
        FlakyPayouts.calls.append(withdrawal.reference)
        if FlakyPayouts.error is not None:
            raise FlakyPayouts.error
        return PayoutResult(paid=True, reference=f"flaky-{withdrawal.reference}")


@pytest.fixture
def flaky(monkeypatch) -> PaymentMethod:
    return install_flaky(monkeypatch)


def install_flaky(monkeypatch) -> PaymentMethod:
    """A method on a provider of kind "test-flaky", registered into PSPS for the test."""
    monkeypatch.setitem(PSPS._paths, "test-flaky", "tests.payments.test_withdrawals.FlakyPayouts")
    monkeypatch.setitem(PSPS._loaded, "test-flaky", FlakyPayouts)
    monkeypatch.setattr(FlakyPayouts, "error", None)
    monkeypatch.setattr(FlakyPayouts, "calls", [])
    provider = PaymentProvider.objects.create(identifier="flaky", kind="test-flaky", name="Flaky")
    flaky = PaymentMethod.objects.create(provider=provider, name="Flaky card", icon="wallet")
    flaky.currencies.set(Currency.objects.filter(code="USD"))
    return flaky


# --- The request ---------------------------------------------------------------------------


def test_a_request_reserves_amount_and_fee_at_once(trader, usd):
    withdrawal = withdraw(trader, usd, card(), "100")

    assert re.fullmatch(r"WD-[A-HJ-NP-Z2-9]{8}", withdrawal.reference)
    assert (withdrawal.amount, withdrawal.fee) == (10_000, 280)  # 2.5 % of 100 + 0.30
    assert withdrawal.status == Withdrawal.PENDING and not withdrawal.replayed
    assert withdrawal.destination == {"card_last4": "4242"}
    assert balance(usd) == 100_000 - 10_280
    assert pending_total() == 10_280
    journal = withdrawal.reserve_journal
    assert journal.kind == "withdrawal_reserve" and journal.actor == trader
    assert withdrawal.reference in journal.description
    assert sorted(journal.entries.values_list("amount", flat=True)) == [-10_280, 10_280]
    [event] = events("withdrawal.requested")
    assert (event.client, event.actor) == (trader, trader)
    assert event.payload == {
        "reference": withdrawal.reference,
        "amount": "100.00",
        "fee": "2.80",
        "currency": "USD",
        "method": "Card (sandbox)",
    }
    assert ledger_check().ok


@pytest.mark.parametrize(
    ("percent", "fixed", "amount", "exponent", "fee"),
    [
        ("1", "0", "10.50", 2, 11),  # 0.105 → 0.11 (half up, not half even)
        ("2.5", "0.30", "100", 2, 280),
        ("0", "0", "100", 2, 0),
        ("1.5", "0", "333", 0, 5),  # JPY: 4.995 → 5
        ("0.1", "0.00001", "0.12345678", 8, 13_346),  # BTC: 0.00012345678 + 0.00001
    ],
)
def test_the_fee_is_percent_plus_fixed_rounded_half_up(percent, fixed, amount, exponent, fee):
    method = PaymentMethod(fee_percent=Decimal(percent), fee_fixed=Decimal(fixed))
    assert wd.withdrawal_fee(method=method, amount=Decimal(amount), exponent=exponent) == fee


def test_a_double_submit_returns_the_same_withdrawal(trader, usd):
    first = withdraw(trader, usd, bank(), "100", key="form-1")
    again = withdraw(trader, usd, bank(), "100", key="form-1")
    assert again.pk == first.pk and again.replayed
    assert balance(usd) == 90_000
    assert Withdrawal.objects.count() == 1 and len(events("withdrawal.requested")) == 1
    # The same form sent back with another amount is refused, not reserved.
    with pytest.raises(WithdrawalError, match="already sent with other details"):
        withdraw(trader, usd, bank(), "150", key="form-1")
    # Another client's key of the same text is theirs: scoped per user.
    other = TraderFactory()
    other_usd = services.wallet_open(user=other, currency="USD")
    fund(other_usd)
    assert withdraw(other, other_usd, bank(), "100", key="form-1").pk != first.pk
    assert balance(usd) == 90_000


def test_the_wallet_cannot_be_spent_twice(trader, usd):
    withdraw(trader, usd, bank(), "900")
    with pytest.raises(WithdrawalError, match="Insufficient funds") as refused:
        withdraw(trader, usd, bank(), "900")
    assert refused.value.field == "amount"
    assert "holds 100.00 USD; this withdrawal needs 900.00 USD" in str(refused.value)
    assert Withdrawal.objects.count() == 1
    assert balance(usd) == 10_000 and pending_total() == 90_000


def test_the_ledger_decides_under_the_lock_when_the_balance_changed_meanwhile(trader, usd):
    # The courtesy check saw enough money; under the wallet's lock there is not.
    with (
        mock.patch.object(wd, "wallet_balance", return_value=10**9),
        pytest.raises(WithdrawalError, match="Insufficient funds.*Nothing was reserved"),
    ):
        withdraw(trader, usd, bank(), "1000.01")
    assert Withdrawal.objects.count() == 0
    assert not JournalTransaction.objects.filter(kind="withdrawal_reserve").exists()
    assert balance(usd) == 100_000 and ledger_check().ok


@pytest.mark.parametrize(
    ("change", "amount", "message"),
    [
        ({"enabled": False}, "100", "not available for withdrawals"),
        ({"direction": PaymentMethod.DEPOSIT}, "100", "not available for withdrawals"),
        ({"countries": ["US", "CA"]}, "100", "not available in your country"),
        ({}, "49.99", "The minimum with Bank wire is 50.00 USD"),
        ({"max_amount": Decimal("200")}, "200.01", "The maximum with Bank wire is 200.00 USD"),
        ({}, "100.001", "at most 2 decimal places"),
        ({}, "0", "above zero"),
        ({}, "-5", "above zero"),
    ],
)
def test_a_request_outside_the_methods_rules_is_refused(trader, usd, change, amount, message):
    wire = bank()
    for name, value in change.items():
        setattr(wire, name, value)
    wire.save()
    with pytest.raises(WithdrawalError, match=message):
        withdraw(trader, usd, method("Bank wire"), amount)
    assert Withdrawal.objects.count() == 0 and balance(usd) == 100_000


def test_a_method_that_does_not_serve_the_currency_or_a_disabled_provider_is_refused(trader, usd):
    with pytest.raises(WithdrawalError, match="Crypto \\(sandbox\\) does not pay out USD"):
        withdraw(trader, usd, method("Crypto (sandbox)"), "100")
    PaymentProvider.objects.filter(identifier="sandbox").update(enabled=False)
    with pytest.raises(WithdrawalError, match="not available for withdrawals"):
        withdraw(trader, usd, card(), "100")
    # The method's country list includes the client's: allowed.
    wire = bank()
    wire.countries = ["GB"]
    wire.save()
    assert withdraw(trader, usd, method("Bank wire"), "100").status == Withdrawal.PENDING


def test_another_users_wallet_is_refused_by_the_service(trader, usd):
    thief = TraderFactory()
    with pytest.raises(WithdrawalError, match="Choose one of your wallets"):
        withdraw(thief, usd, bank(), "100")
    assert balance(usd) == 100_000


@pytest.mark.parametrize(
    ("via", "destination", "field", "message"),
    [
        ("Bank wire", {"account_holder": "Alice"}, "iban", "Enter the IBAN"),
        (
            "Bank wire",
            {"iban": "DE89370400440532013001", "account_holder": "A B"},
            "iban",
            "check digits",
        ),
        ("Bank wire", {"iban": "hello", "account_holder": "Alice"}, "iban", "not an IBAN"),
        ("Bank wire", {"iban": IBAN, "account_holder": " "}, "account_holder", "name on the bank"),
        ("Card (sandbox)", {"card_last4": "42a2"}, "card_last4", "last 4 digits"),
    ],
)
def test_bad_destination_details_are_refused(trader, usd, via, destination, field, message):
    with pytest.raises(WithdrawalError, match=message) as refused:
        withdraw(trader, usd, method(via), "100", destination=destination)
    assert refused.value.field == field
    assert Withdrawal.objects.count() == 0


def test_destination_details_are_normalised_and_limited_to_the_methods(trader, usd):
    withdrawal = withdraw(
        trader,
        usd,
        bank(),
        "100",
        destination={
            "iban": "de89 3704 0044 0532 0130 00",
            "account_holder": "  Alice   Trader ",
            "address": "ignored",
        },
    )
    assert withdrawal.destination == {"iban": IBAN, "account_holder": "Alice Trader"}
    btc = services.wallet_open(user=trader, currency="BTC")
    fund(btc, "1")
    crypto = withdraw(trader, btc, method("Crypto (sandbox)"), "0.5")
    assert crypto.destination == DESTINATIONS["crypto"]
    assert crypto.fee == 500_000  # 1 % of 0.5 BTC in satoshi
    with pytest.raises(WithdrawalError, match="address") as refused:
        withdraw(trader, btc, method("Crypto (sandbox)"), "0.1", destination={"address": "x y"})
    assert refused.value.field == "address"


# --- Two-factor authentication -----------------------------------------------------------


def test_two_factor_code_required_when_on(trader, usd):
    device = enable_totp(trader)

    with pytest.raises(WithdrawalError, match="Enter the code") as missing:
        withdraw(trader, usd, bank(), "100")
    assert missing.value.field == "otp_code"
    with pytest.raises(WithdrawalError, match="That code is not valid. .*Nothing was reserved"):
        withdraw(trader, usd, bank(), "100", otp="000000")
    assert Withdrawal.objects.count() == 0 and balance(usd) == 100_000
    # The wrong code counted against the device's throttle (committed,
    # though the request failed): a right code at once is refused too.
    device.refresh_from_db()
    assert device.throttling_failure_count == 1
    with pytest.raises(WithdrawalError, match="Too many wrong codes"):
        withdraw(trader, usd, bank(), "100", otp=totp_code(device))

    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(minutes=1)
    )
    device.refresh_from_db()
    code = totp_code(device)
    withdrawal = withdraw(trader, usd, bank(), "100", otp=code, key="k1")
    assert withdrawal.status == Withdrawal.PENDING and balance(usd) == 90_000
    # A double submit of that form needs no fresh code; a new request does
    # not accept the used one.
    assert withdraw(trader, usd, bank(), "100", otp=code, key="k1").pk == withdrawal.pk
    with pytest.raises(WithdrawalError, match="not valid"):
        withdraw(trader, usd, bank(), "100", otp=code, key="k2")
    assert Withdrawal.objects.count() == 1


def test_no_code_is_asked_when_two_factor_is_off(trader, usd):
    assert not wd.two_factor_required(trader)
    assert withdraw(trader, usd, bank(), "100", otp=None).status == Withdrawal.PENDING


# --- The can_withdraw policy ----------------------------------------------------------------


@pytest.fixture
def kyc_policy():
    """A policy registered as the KYC issue will: refuse above 500 of anything."""
    asked: list[tuple] = []

    def policy(user, *, amount, currency, **context):
        asked.append((user, amount, currency))
        if amount > 500:
            return policies.Decision(
                False,
                reason="Your verification level allows withdrawals up to 500.",
                unlock="Verify your identity",
                unlock_url="room:profile",
            )
        return None

    policies.register(policies.WITHDRAW, "test-kyc-limit", policy)
    yield asked
    policies.unregister(policies.WITHDRAW, "test-kyc-limit")


def test_can_withdraw_allows_everything_with_no_policy(trader):
    from payments.policies import can_withdraw

    assert can_withdraw(trader, Decimal("1000000"), "USD").allowed


def test_a_registered_policy_refuses_with_its_reason(trader, usd, kyc_policy):
    with pytest.raises(WithdrawalError, match="allows withdrawals up to 500") as refused:
        withdraw(trader, usd, bank(), "600")
    assert (refused.value.unlock, refused.value.unlock_url) == (
        "Verify your identity",
        "room:profile",
    )
    assert kyc_policy == [(trader, Decimal("600.00"), "USD")]
    assert Withdrawal.objects.count() == 0 and balance(usd) == 100_000
    assert withdraw(trader, usd, bank(), "500").status == Withdrawal.PENDING


def test_the_policy_is_gone_once_unregistered(trader, usd, kyc_policy):
    policies.unregister(policies.WITHDRAW, "test-kyc-limit")
    assert withdraw(trader, usd, bank(), "600").status == Withdrawal.PENDING


# --- Cancel -------------------------------------------------------------------------------


def test_cancel_releases_the_reserve(trader, usd):
    withdrawal = withdraw(trader, usd, card(), "100")
    cancelled = wd.withdrawal_cancel(user=trader, withdrawal=withdrawal)
    assert cancelled.status == Withdrawal.CANCELLED and cancelled.decided_by == trader
    assert balance(usd) == 100_000 and pending_total() == 0
    release = cancelled.release_journal
    assert release.kind == "withdrawal_release"
    assert release.idempotency_key == f"withdrawal:{withdrawal.pk}:release"
    [event] = events("withdrawal.cancelled")
    assert (event.client, event.actor, event.payload["reference"]) == (
        trader,
        trader,
        withdrawal.reference,
    )
    with pytest.raises(WithdrawalError, match="is cancelled: it can no longer be cancelled"):
        wd.withdrawal_cancel(user=trader, withdrawal=withdrawal)
    assert balance(usd) == 100_000 and ledger_check().ok


def test_only_the_owner_cancels(trader, usd):
    withdrawal = withdraw(trader, usd, bank(), "100")
    with pytest.raises(WithdrawalError, match="No such withdrawal"):
        wd.withdrawal_cancel(user=TraderFactory(), withdrawal=withdrawal)
    assert reload(withdrawal).status == Withdrawal.PENDING and balance(usd) == 90_000


def test_cancel_is_allowed_with_one_of_two_approvals_but_not_once_approved(
    trader, usd, finance, finance2
):
    Currency.objects.filter(code="USD").update(withdrawal_two_approvers_above=Decimal("50"))
    first = withdraw(trader, usd, bank(), "100")
    assert not wd.withdrawal_approve(actor=finance, withdrawal=first).approved
    assert wd.withdrawal_cancel(user=trader, withdrawal=first).status == Withdrawal.CANCELLED

    second = withdraw(trader, usd, bank(), "100")
    wd.withdrawal_approve(actor=finance, withdrawal=second)
    wd.withdrawal_approve(actor=finance2, withdrawal=second)
    with pytest.raises(WithdrawalError, match="is approved: it can no longer be cancelled"):
        wd.withdrawal_cancel(user=trader, withdrawal=second)
    assert reload(second).status == Withdrawal.APPROVED
    assert balance(usd) == 90_000 and pending_total() == 10_000


# --- Approval -----------------------------------------------------------------------------


def test_one_approval_below_the_threshold_and_a_manual_payout_waits_for_finance(
    trader, usd, finance
):
    withdrawal = withdraw(trader, usd, bank(), "100")
    outcome = wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    assert (outcome.approvals, outcome.required, outcome.approved) == (1, 1, True)
    assert outcome.payout_error is None
    approved = reload(withdrawal)
    assert approved.status == Withdrawal.APPROVED and approved.decided_by == finance
    assert approved.settle_journal is None  # the manual adapter does not pay by itself
    [event] = events("withdrawal.approved")
    assert (event.client, event.actor) == (trader, finance)
    assert pending_total() == 10_000


def test_the_approver_is_never_the_requester(usd, finance):
    # A member of Finance who is also a client asks to withdraw their own money.
    set_kyc_level(finance, 3)
    own = services.wallet_open(user=finance, currency="USD")
    fund(own)
    withdrawal = withdraw(finance, own, bank(), "100")
    with pytest.raises(WithdrawalError, match="cannot approve your own withdrawal"):
        wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    assert reload(withdrawal).status == Withdrawal.PENDING
    assert not WithdrawalApproval.objects.exists()
    assert not events("withdrawal.approved")


def test_the_same_approver_cannot_approve_twice(trader, usd, finance):
    Currency.objects.filter(code="USD").update(withdrawal_two_approvers_above=Decimal("50"))
    withdrawal = withdraw(trader, usd, bank(), "100")
    wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    with pytest.raises(WithdrawalError, match="already approved .*someone else"):
        wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    assert reload(withdrawal).status == Withdrawal.PENDING
    assert WithdrawalApproval.objects.filter(withdrawal=withdrawal).count() == 1


def test_two_different_approvers_above_the_threshold(trader, usd, finance, finance2):
    Currency.objects.filter(code="USD").update(withdrawal_two_approvers_above=Decimal("500"))
    at_threshold = withdraw(trader, usd, card(), "500")
    assert wd.withdrawal_approve(actor=finance, withdrawal=at_threshold).approved  # not above

    above = withdraw(trader, usd, card(), "300.01")
    Currency.objects.filter(code="USD").update(withdrawal_two_approvers_above=Decimal("300"))
    first = wd.withdrawal_approve(actor=finance, withdrawal=above)
    assert (first.approvals, first.required, first.approved) == (1, 2, False)
    assert reload(above).status == Withdrawal.PENDING
    [recorded] = events("withdrawal.approval_recorded")
    assert recorded.payload["approvals"] == 1 and recorded.payload["required"] == 2
    assert len(events("withdrawal.approved")) == 1  # only the first withdrawal's

    second = wd.withdrawal_approve(actor=finance2, withdrawal=above)
    assert (second.approvals, second.approved) == (2, True)
    paid = reload(above)
    assert paid.status == Withdrawal.PAID  # the sandbox pays at once
    assert paid.decided_by == finance2
    assert set(paid.approvals.values_list("approver", flat=True)) == {finance.pk, finance2.pk}
    assert ledger_check().ok


def test_the_sandbox_pays_automatically_on_approval(trader, usd, finance):
    withdrawal = withdraw(trader, usd, card(), "100")
    outcome = wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    paid = reload(withdrawal)
    assert outcome.withdrawal.status == paid.status == Withdrawal.PAID
    assert paid.payout_reference.startswith("sbx_po_")
    assert paid.settle_journal.kind == "withdrawal_payout"
    assert paid.settle_journal.idempotency_key == f"withdrawal:{paid.pk}:payout"
    assert pending_total() == 0
    assert system("psp:sandbox") == 10_000 and system("fees") == 280
    assert balance(usd) == 100_000 - 10_280
    [event] = events("withdrawal.paid")
    assert (event.actor, event.payload["payout_reference"]) == (finance, paid.payout_reference)
    assert ledger_check().ok


def test_finance_marks_a_manual_payout_paid(trader, usd, finance):
    wire = bank()
    wire.fee_fixed = Decimal("1.50")
    wire.save()
    withdrawal = withdraw(trader, usd, method("Bank wire"), "100")
    assert withdrawal.fee == 150
    with pytest.raises(WithdrawalError, match="is pending approval: it can no longer be marked"):
        wd.withdrawal_mark_paid(actor=finance, withdrawal=withdrawal, payout_reference="X")
    wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    with pytest.raises(WithdrawalError, match="Enter the payout reference"):
        wd.withdrawal_mark_paid(actor=finance, withdrawal=withdrawal, payout_reference="  ")

    paid = wd.withdrawal_mark_paid(
        actor=finance, withdrawal=withdrawal, payout_reference="  BANK-REF   42 "
    )
    assert paid.status == Withdrawal.PAID and paid.payout_reference == "BANK-REF 42"
    lines = {
        (entry.account.code, entry.amount)
        for entry in paid.settle_journal.entries.select_related("account")
    }
    assert lines == {("withdrawals_pending", -10_150), ("psp:bank-wire", 10_000), ("fees", 150)}
    with pytest.raises(WithdrawalError, match="is paid: it can no longer be marked paid"):
        wd.withdrawal_mark_paid(actor=finance, withdrawal=withdrawal, payout_reference="again")
    assert len(events("withdrawal.paid")) == 1
    assert pending_total() == 0 and ledger_check().ok


def test_a_provider_error_leaves_it_approved_and_a_retry_pays(trader, usd, finance, flaky):
    FlakyPayouts.error = ProviderError("The PSP is down for maintenance.", permanent=False)
    withdrawal = withdraw(trader, usd, flaky, "100")
    outcome = wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    assert outcome.approved and str(outcome.payout_error) == "The PSP is down for maintenance."
    assert reload(withdrawal).status == Withdrawal.APPROVED
    failure = selectors.withdrawal_payout_failure(withdrawal)
    assert failure.message == "The PSP is down for maintenance." and not failure.permanent
    [event] = events("withdrawal.payout_failed")
    assert event.payload["permanent"] is False and event.actor == finance
    assert pending_total() == 10_000

    # Something unexpected from the adapter is recorded the same way, never a crash.
    FlakyPayouts.error = RuntimeError("connection reset")
    _, error = wd.withdrawal_payout_retry(actor=finance, withdrawal=withdrawal)
    assert "connection reset" in str(error) and not error.permanent

    FlakyPayouts.error = None
    paid, error = wd.withdrawal_payout_retry(actor=finance, withdrawal=withdrawal)
    assert error is None and paid.status == Withdrawal.PAID
    assert paid.payout_reference == f"flaky-{withdrawal.reference}"
    assert FlakyPayouts.calls == [withdrawal.reference] * 3  # the same reference each time
    with pytest.raises(WithdrawalError, match="is paid"):
        wd.withdrawal_payout_retry(actor=finance, withdrawal=withdrawal)
    assert pending_total() == 0 and ledger_check().ok


def test_a_permanent_payout_error_is_resolved_by_rejecting(trader, usd, finance, flaky):
    FlakyPayouts.error = ProviderError("Account closed.", permanent=True)
    withdrawal = withdraw(trader, usd, flaky, "100")
    outcome = wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    assert outcome.payout_error.permanent
    assert selectors.withdrawal_payout_failure(withdrawal).permanent
    rejected = wd.withdrawal_reject(actor=finance, withdrawal=withdrawal, reason="Account closed")
    assert rejected.status == Withdrawal.REJECTED
    assert balance(usd) == 100_000 and pending_total() == 0 and ledger_check().ok


# --- Rejection -----------------------------------------------------------------------------


def test_reject_needs_a_reason_and_releases_the_reserve(trader, usd, finance):
    withdrawal = withdraw(trader, usd, card(), "100")
    with pytest.raises(WithdrawalError, match="Give the reason"):
        wd.withdrawal_reject(actor=finance, withdrawal=withdrawal, reason="   ")
    assert reload(withdrawal).status == Withdrawal.PENDING

    rejected = wd.withdrawal_reject(
        actor=finance, withdrawal=withdrawal, reason=" Name does not match "
    )
    assert rejected.status == Withdrawal.REJECTED
    assert (rejected.decided_by, rejected.decision_reason) == (finance, "Name does not match")
    assert rejected.release_journal.kind == "withdrawal_release"
    assert balance(usd) == 100_000 and pending_total() == 0
    [event] = events("withdrawal.rejected")
    assert (event.client, event.actor, event.payload["reason"]) == (
        trader,
        finance,
        "Name does not match",
    )
    for decide in (
        lambda: wd.withdrawal_approve(actor=finance, withdrawal=withdrawal),
        lambda: wd.withdrawal_reject(actor=finance, withdrawal=withdrawal, reason="again"),
        lambda: wd.withdrawal_cancel(user=trader, withdrawal=withdrawal),
    ):
        with pytest.raises(WithdrawalError, match="is rejected"):
            decide()
    assert balance(usd) == 100_000 and ledger_check().ok


def test_a_paid_withdrawal_cannot_be_rejected(trader, usd, finance):
    withdrawal = withdraw(trader, usd, card(), "100")
    wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    with pytest.raises(WithdrawalError, match="is paid: it can no longer be rejected"):
        wd.withdrawal_reject(actor=finance, withdrawal=withdrawal, reason="Too late")
    assert balance(usd) == 100_000 - 10_280


@pytest.mark.parametrize("role", [SUPPORT, COMPLIANCE])
def test_support_and_compliance_cannot_decide(trader, usd, finance, role):
    staff = StaffFactory(roles=[role])
    withdrawal = withdraw(trader, usd, bank(), "100")
    with pytest.raises(PermissionDenied):
        wd.withdrawal_approve(actor=staff, withdrawal=withdrawal)
    with pytest.raises(PermissionDenied):
        wd.withdrawal_reject(actor=staff, withdrawal=withdrawal, reason="No")
    wd.withdrawal_approve(actor=finance, withdrawal=withdrawal)
    with pytest.raises(PermissionDenied):
        wd.withdrawal_mark_paid(actor=staff, withdrawal=withdrawal, payout_reference="R")
    with pytest.raises(PermissionDenied):
        wd.withdrawal_payout_retry(actor=staff, withdrawal=withdrawal)
    assert reload(withdrawal).status == Withdrawal.APPROVED
    assert not WithdrawalApproval.objects.filter(approver=staff).exists()


# --- The trader's pages --------------------------------------------------------------------


@pytest.fixture
def signed_in(client, trader):
    client.force_login(trader)
    return client


def form_key(page: str) -> str:
    return re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page).group(1)


def post_data(page: str, wallet: LedgerAccount, via: PaymentMethod, amount: str, **extra):
    return {
        "wallet": wallet.pk,
        "method": via.pk,
        "amount": amount,
        "idempotency_key": form_key(page),
        **DESTINATIONS[via.icon],
        **extra,
    }


def test_the_withdraw_page_offers_the_traders_wallets_and_methods(signed_in, trader, usd):
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    assert (
        '<a href="/room/wallets/withdraw/" class="nav-link nav-withdraw" aria-current="page">'
        in page
    )
    assert f'<option value="{usd.pk}" selected>USD · $1,000.00 available</option>' in page
    assert "Bank wire · no fee" in page
    assert "Card (sandbox) · fee 2.5 % + $0.30" in page
    assert "Crypto (sandbox)" not in page  # does not pay out USD
    assert 'name="iban"' in page  # the first method (bank wire) is preselected
    assert 'name="otp_code"' not in page  # 2FA is off
    assert "No withdrawals yet" in page
    enable_totp(trader)
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    assert 'name="otp_code"' in page and 'autocomplete="one-time-code"' in page


def test_a_trader_with_no_wallet_is_told_what_to_do(client):
    client.force_login(TraderFactory())
    page = client.get("/room/wallets/withdraw/").content.decode()
    assert "No wallet to withdraw from" in page


def test_a_withdrawal_requested_through_the_page(signed_in, trader, usd):
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    data = post_data(page, usd, bank(), "250")
    response = signed_in.post("/room/wallets/withdraw/request/", data, follow=True)
    withdrawal = Withdrawal.objects.get()
    assert response.redirect_chain[-1][0] == f"/room/wallets/withdraw/{withdrawal.reference}/"
    detail = response.content.decode()
    assert f"Withdrawal {withdrawal.reference} requested: $250.00 is reserved" in detail
    assert (
        "Pending approval" in detail
        and "DE89 3704 0044 0532 0130 00" in detail
        and "Cancel this withdrawal" in detail
    )
    assert balance(usd) == 75_000
    # The same form sent again (a double click, the back button) reserves nothing more.
    again = signed_in.post("/room/wallets/withdraw/request/", data, follow=True)
    assert "was already requested; nothing more was reserved" in again.content.decode()
    assert Withdrawal.objects.count() == 1 and balance(usd) == 75_000
    listing = signed_in.get("/room/wallets/withdraw/").content.decode()
    assert withdrawal.reference in listing and "Cancel<span" in listing


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount": ""}, "Enter the amount to withdraw."),
        ({"amount": "ten"}, "Enter the amount as a number"),
        ({"amount": "2000"}, "Insufficient funds: your USD wallet holds 1,000.00 USD"),
        ({"amount": "10"}, "The minimum with Bank wire is 50.00 USD"),
        ({"iban": "DE00 1234"}, "not an IBAN"),
        ({"iban": ""}, "Enter the IBAN of your bank account."),
        ({"method": "999999"}, "Choose a method from the list."),
        ({"idempotency_key": ""}, "This form has expired."),
    ],
)
def test_bad_input_shows_an_error_and_reserves_nothing(signed_in, usd, change, message):
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    response = signed_in.post(
        "/room/wallets/withdraw/request/", {**post_data(page, usd, bank(), "100"), **change}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert Withdrawal.objects.count() == 0 and balance(usd) == 100_000


def test_a_method_not_serving_the_wallet_is_explained(signed_in, trader, usd):
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    data = post_data(page, usd, bank(), "100", method=method("Crypto (sandbox)").pk)
    response = signed_in.post("/room/wallets/withdraw/request/", data)
    assert "Crypto (sandbox) does not pay out USD. Choose another method." in (
        response.content.decode()
    )
    assert Withdrawal.objects.count() == 0


def test_the_code_is_asked_and_never_echoed_back(signed_in, trader, usd):
    device = enable_totp(trader)
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    data = post_data(page, usd, bank(), "100")
    missing = signed_in.post("/room/wallets/withdraw/request/", data).content.decode()
    assert "Enter the code from your authenticator app." in missing
    wrong = signed_in.post("/room/wallets/withdraw/request/", {**data, "otp_code": "123456"})
    assert wrong.status_code == 400
    text = wrong.content.decode()
    assert "That code is not valid." in text and 'value="123456"' not in text
    assert Withdrawal.objects.count() == 0
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_count=0)
    device.refresh_from_db()
    right = signed_in.post(
        "/room/wallets/withdraw/request/", {**data, "otp_code": totp_code(device)}
    )
    assert right.status_code == 302 and Withdrawal.objects.count() == 1


def test_a_policy_refusal_shows_its_reason_and_the_way_to_unlock(signed_in, usd, kyc_policy):
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    response = signed_in.post(
        "/room/wallets/withdraw/request/", post_data(page, usd, bank(), "600")
    )
    text = response.content.decode()
    assert response.status_code == 400
    assert "Your verification level allows withdrawals up to 500." in text
    assert '<a href="/room/profile/">Verify your identity</a>' in text
    assert Withdrawal.objects.count() == 0


def test_the_preview_shows_the_fee_and_total_reserved(signed_in, usd):
    htmx = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TRIGGER_NAME": "amount"}
    query = {"wallet": usd.pk, "method": card().pk, "amount": "100"}
    response = signed_in.get("/room/wallets/withdraw/preview/", query, **htmx)
    text = response.content.decode()
    assert response.status_code == 200 and 'id="withdraw-quote"' in text
    assert "$2.80" in text and "$102.80" in text and "$897.20" in text
    assert 'id="withdraw-method"' not in text and "hx-swap-oob" not in text

    # The wallet changed: the method menu and the destination come along, for that wallet.
    btc = services.wallet_open(user=usd.owner, currency="BTC")
    fund(btc, "1")
    query = {"wallet": btc.pk, "method": card().pk, "amount": "0.1"}
    text = signed_in.get(
        "/room/wallets/withdraw/preview/",
        query,
        HTTP_HX_REQUEST="true",
        HTTP_HX_TRIGGER_NAME="wallet",
    ).content.decode()
    assert 'id="withdraw-method" class="withdraw-method" hx-swap-oob="true"' in text
    assert "Crypto (sandbox) · fee 1 %" in text and "Card (sandbox)" not in text
    assert 'name="address"' in text
    assert "0.00100000\u00a0BTC" in text  # the crypto method's 1 % fee

    for amount, message in [("abc", "Enter the amount as a number"), ("5000", "More than")]:
        query = {"wallet": usd.pk, "method": card().pk, "amount": amount}
        text = signed_in.get("/room/wallets/withdraw/preview/", query, **htmx).content.decode()
        assert message in text
    text = signed_in.get(
        "/room/wallets/withdraw/preview/", {"wallet": usd.pk, "amount": ""}, **htmx
    ).content.decode()
    assert "Enter an amount to see the fee" in text
    # Without htmx, back to the page.
    assert signed_in.get("/room/wallets/withdraw/preview/", query).status_code == 302


def test_the_status_page_and_cancel_from_the_list(signed_in, trader, usd):
    withdrawal = withdraw(trader, usd, bank(), "100")
    response = signed_in.post(
        f"/room/wallets/withdraw/{withdrawal.reference}/cancel/", {"next": "list"}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/room/wallets/withdraw/"
    text = response.content.decode()
    assert f"Withdrawal {withdrawal.reference} cancelled: $100.00 is back" in text
    assert reload(withdrawal).status == Withdrawal.CANCELLED and balance(usd) == 100_000
    page = signed_in.get(f"/room/wallets/withdraw/{withdrawal.reference}/").content.decode()
    assert "Cancelled by you" in page and "Cancel this withdrawal" not in page
    again = signed_in.post(f"/room/wallets/withdraw/{withdrawal.reference}/cancel/", follow=True)
    assert "can no longer be cancelled" in again.content.decode()
    assert (
        signed_in.get(f"/room/wallets/withdraw/{withdrawal.reference}/cancel/").status_code == 405
    )


def test_a_rejected_withdrawal_shows_the_reason(signed_in, trader, usd, finance):
    withdrawal = withdraw(trader, usd, bank(), "100")
    wd.withdrawal_reject(actor=finance, withdrawal=withdrawal, reason="The IBAN is not yours")
    page = signed_in.get(f"/room/wallets/withdraw/{withdrawal.reference}/").content.decode()
    assert "Rejected: The IBAN is not yours" in page and "is back in your USD wallet" in page


def test_another_traders_withdrawal_is_a_404_and_nothing_changes(signed_in, trader, usd):
    victim = TraderFactory()
    victim_usd = services.wallet_open(user=victim, currency="USD")
    fund(victim_usd)
    theirs = withdraw(victim, victim_usd, bank(), "100")

    assert signed_in.get(f"/room/wallets/withdraw/{theirs.reference}/").status_code == 404
    assert signed_in.post(f"/room/wallets/withdraw/{theirs.reference}/cancel/").status_code == 404
    assert signed_in.get("/room/wallets/withdraw/WD-NOPE/").status_code == 404
    assert reload(theirs).status == Withdrawal.PENDING
    assert theirs.reference not in signed_in.get("/room/wallets/withdraw/").content.decode()

    # Their wallet id in the form: refused like any wrong choice; nothing reserved anywhere.
    page = signed_in.get("/room/wallets/withdraw/").content.decode()
    response = signed_in.post(
        "/room/wallets/withdraw/request/",
        {**post_data(page, usd, bank(), "100"), "wallet": victim_usd.pk},
    )
    assert (
        response.status_code == 400 and "Choose one of your wallets." in response.content.decode()
    )
    htmx = {"HTTP_HX_REQUEST": "true"}
    query = {"wallet": victim_usd.pk, "method": bank().pk, "amount": "100"}
    preview = signed_in.get("/room/wallets/withdraw/preview/", query, **htmx).content.decode()
    assert "$900.00" not in preview  # their balance after is never shown
    assert balance(victim_usd) == 90_000 and balance(usd) == 100_000
    assert Withdrawal.objects.count() == 1


def test_pages_need_sign_in(client):
    for url in ("/room/wallets/withdraw/", "/room/wallets/withdraw/WD-AAAA2222/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_page_query_counts_do_not_grow_with_withdrawals(
    signed_in, trader, usd, settings, django_assert_max_num_queries
):
    # Sessions come from the cache with Redis; from the database without it.
    session = 1 if settings.SESSION_ENGINE.endswith(".db") else 0
    withdrawal = withdraw(trader, usd, bank(), "50")
    signed_in.get("/room/wallets/withdraw/")  # warm the brand cache
    # User, profile, wallets, methods + their currencies, 2FA device, withdrawals.
    with django_assert_max_num_queries(7 + session):
        assert signed_in.get("/room/wallets/withdraw/").status_code == 200
    with django_assert_max_num_queries(2 + session):  # user, the withdrawal with relations
        signed_in.get(f"/room/wallets/withdraw/{withdrawal.reference}/")
    for _ in range(6):
        withdraw(trader, usd, card(), "20")
    with django_assert_max_num_queries(7 + session):
        page = signed_in.get("/room/wallets/withdraw/").content.decode()
    assert page.count("Cancel<span") == 7


def test_request_query_count(trader, usd, django_assert_max_num_queries):
    require_or_skip(connection.vendor == "postgresql", "the posting is one function on PostgreSQL")
    withdraw(trader, usd, bank(), "100")  # the pending system account now exists
    wire = bank()
    usd = LedgerAccount.objects.select_related("currency").get(pk=usd.pk)
    # Replay lookup, method currencies, the KYC level, balance, 2FA device;
    # then one savepoint with the client's row locked, the KYC level asked
    # again under the lock, the pending account, the posting, the row
    # (savepoint) and the event.
    with django_assert_max_num_queries(19):
        withdraw(trader, usd, wire, "100")


# --- Races, on PostgreSQL ---------------------------------------------------------------------


def run_in_threads(*work: Callable[[], object]) -> list[object]:
    """Run each callable in its own thread (own connection), started together;
    return what each returned or raised, in order."""
    start = threading.Barrier(len(work))
    results: list[object] = [None] * len(work)

    def body(index: int) -> None:
        try:
            start.wait()
            results[index] = work[index]()
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hangs (lock wait?)"
    return results


def invariants_hold(*wallets: LedgerAccount) -> None:
    """Double entry holds, and the pending account holds exactly the
    reserves of withdrawals still pending or approved."""
    assert ledger_check().ok
    open_ = Withdrawal.objects.filter(status__in=[Withdrawal.PENDING, Withdrawal.APPROVED])
    assert pending_total() == sum(w.amount + w.fee for w in open_)
    for wallet in wallets:
        assert balance(wallet) >= 0


@pytest.mark.django_db(transaction=True)
class TestRaces:
    @pytest.fixture(autouse=True)
    def _postgresql(self):
        require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")

    def test_approve_and_cancel_at_once_have_exactly_one_outcome(self):
        trader = TraderFactory()
        usd = services.wallet_open(user=trader, currency="USD")
        fund(usd, "10000")
        finance = StaffFactory(roles=[FINANCE])
        outcomes: Counter[str] = Counter()
        for via in [bank(), card()] * 4:
            withdrawal = withdraw(trader, usd, via, "100")
            approve, cancel = run_in_threads(
                lambda w=withdrawal: wd.withdrawal_approve(actor=finance, withdrawal=w),
                lambda w=withdrawal: wd.withdrawal_cancel(user=trader, withdrawal=w),
            )
            won = [r for r in (approve, cancel) if not isinstance(r, BaseException)]
            lost = [r for r in (approve, cancel) if isinstance(r, BaseException)]
            assert len(won) == 1 and len(lost) == 1, (approve, cancel)
            assert isinstance(lost[0], WithdrawalError), lost
            final = reload(withdrawal)
            if isinstance(cancel, BaseException):
                expected = Withdrawal.PAID if via.icon == "card" else Withdrawal.APPROVED
                assert final.status == expected and final.release_journal is None
                outcomes["approved"] += 1
            else:
                assert final.status == Withdrawal.CANCELLED and final.settle_journal is None
                assert not final.approvals.exists()
                outcomes["cancelled"] += 1
        invariants_hold(usd)
        assert sum(outcomes.values()) == 8
        paid = Withdrawal.objects.filter(status=Withdrawal.PAID)
        assert system("psp:sandbox") == sum(w.amount for w in paid)
        assert len(events("withdrawal.approved")) == outcomes["approved"]
        assert len(events("withdrawal.cancelled")) == outcomes["cancelled"]

    def test_two_approvers_at_once_make_one_approval_each_and_one_payout(self):
        Currency.objects.filter(code="USD").update(withdrawal_two_approvers_above=Decimal("10"))
        trader = TraderFactory()
        usd = services.wallet_open(user=trader, currency="USD")
        fund(usd, "10000")
        approvers = [StaffFactory(roles=[FINANCE]) for _ in range(3)]
        for _round in range(4):
            withdrawal = withdraw(trader, usd, card(), "100")
            results = run_in_threads(
                *[
                    (lambda a=a, w=withdrawal: wd.withdrawal_approve(actor=a, withdrawal=w))
                    for a in approvers
                ]
            )
            approved = [r for r in results if isinstance(r, wd.ApprovalOutcome) and r.approved]
            recorded = [r for r in results if isinstance(r, wd.ApprovalOutcome) and not r.approved]
            refused = [r for r in results if isinstance(r, WithdrawalError)]
            # One records the first approval, one makes it final, the third finds it decided.
            assert (len(recorded), len(approved), len(refused)) == (1, 1, 1), results
            final = reload(withdrawal)
            assert final.status == Withdrawal.PAID and final.approvals.count() == 2
        assert len(events("withdrawal.approved")) == len(events("withdrawal.paid")) == 4
        assert JournalTransaction.objects.filter(kind="withdrawal_payout").count() == 4
        invariants_hold(usd)

    def test_approve_with_automatic_payout_and_reject_at_once_never_both(self):
        trader = TraderFactory()
        usd = services.wallet_open(user=trader, currency="USD")
        fund(usd, "10000")
        approver, rejecter = StaffFactory(roles=[FINANCE]), StaffFactory(roles=[FINANCE])
        for _round in range(6):
            withdrawal = withdraw(trader, usd, card(), "100")
            approve, reject = run_in_threads(
                lambda w=withdrawal: wd.withdrawal_approve(actor=approver, withdrawal=w),
                lambda w=withdrawal: wd.withdrawal_reject(actor=rejecter, withdrawal=w, reason="r"),
            )
            final = reload(withdrawal)
            # Paid and released are exclusive: the payout holds the row while it pays.
            assert not (final.settle_journal_id and final.release_journal_id)
            if final.status == Withdrawal.PAID:
                assert isinstance(reject, WithdrawalError)
            else:
                assert final.status == Withdrawal.REJECTED
        invariants_hold(usd)

    def test_a_double_submit_from_many_threads_reserves_once(self):
        trader = TraderFactory()
        usd = services.wallet_open(user=trader, currency="USD")
        fund(usd, "1000")
        via = bank()
        results = run_in_threads(
            *[lambda: withdraw(trader, usd, via, "400", key="same-form") for _ in range(6)]
        )
        assert all(isinstance(r, Withdrawal) for r in results), results
        assert len({r.pk for r in results}) == 1
        assert sorted(r.replayed for r in results).count(False) <= 1
        assert Withdrawal.objects.count() == 1 and balance(usd) == 60_000
        assert len(events("withdrawal.requested")) == 1
        invariants_hold(usd)

    def test_concurrent_requests_never_overdraw_the_wallet(self):
        trader = TraderFactory()
        usd = services.wallet_open(user=trader, currency="USD")
        fund(usd, "1000")
        via = bank()
        results = run_in_threads(*[lambda: withdraw(trader, usd, via, "300") for _ in range(6)])
        made = [r for r in results if isinstance(r, Withdrawal)]
        refused = [r for r in results if isinstance(r, WithdrawalError)]
        assert len(made) == 3 and len(refused) == 3, results
        assert all("Insufficient funds" in str(r) for r in refused)
        assert balance(usd) == 10_000
        invariants_hold(usd)


def test_a_withdrawals_postings_cannot_be_reversed_by_hand(trader, usd, finance):
    """Reversing the reserve would give the money back while the withdrawal
    could still be approved and paid out: the withdrawal's own actions
    (reject, cancel) move that money, never a manual reversal."""
    from payments.exceptions import LedgerError

    withdrawal = withdraw(trader, usd, bank(), "600")
    before = balance(usd)
    with pytest.raises(LedgerError, match=f"belongs to withdrawal {withdrawal.reference}"):
        services.ledger_reverse(journal=withdrawal.reserve_journal, actor=finance, reason="oops")
    assert balance(usd) == before
    assert pending_total() > 0
    wd.withdrawal_cancel(user=trader, withdrawal=withdrawal)
    release = reload(withdrawal).release_journal
    with pytest.raises(LedgerError, match="reject or cancel the withdrawal"):
        services.ledger_reverse(journal=release, actor=finance, reason="oops")
    assert ledger_check().ok
