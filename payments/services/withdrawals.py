"""Withdrawals: request (funds reserved at once), cancel, four-eyes approval,
payout through the provider, rejection.

The money moves only through the ledger, with the conventions of the brief:

- request: ``withdrawal_reserve`` — wallet −(amount+fee), ``withdrawals_pending`` +(amount+fee);
- cancel or reject: ``withdrawal_release`` (key ``withdrawal:<pk>:release``) — the mirror;
- payout: ``withdrawal_payout`` (key ``withdrawal:<pk>:payout``) — ``withdrawals_pending``
  −(amount+fee), ``psp:<provider identifier>`` +amount, ``fees`` +fee.

Every status change locks the withdrawal row, re-reads it and decides (the
withdrawal row is always locked before the wallet, so these never deadlock);
each journal has a key of its own, so a state change happens exactly once
however many people click at once.

Status flow::

    pending ──approve (1 of 1, or 2 of 2)──► approved ──payout──► paid
       │  ╲                                     │
       │   ╲─reject──► rejected ◄──reject───────┘  (approved but not paid:
       └─cancel (client)──► cancelled               e.g. the payout failed for good)

A pending withdrawal stays cancellable by its client until the last approval,
also when one of two approvals is in: nothing has left the broker yet.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.exceptions import TwoFactorError
from accounts.selectors import profile_for_user
from accounts.services import client_lock, totp_device_confirmed, two_factor_verify
from backoffice.events import publish
from backoffice.money import MoneyError, from_minor, to_minor

from ..exceptions import IdempotencyConflict, InsufficientFunds, LedgerError
from ..models import LedgerAccount, PaymentMethod, Withdrawal, WithdrawalApproval
from ..policies import can_withdraw
from ..providers import psp_for
from ..providers.base import ProviderError
from ..selectors.withdrawals import (
    WITHDRAWAL_DIRECTIONS,
    approvals_required,
    method_serves_country,
    method_serves_currency,
    wallet_balance,
    withdrawal_for_request,
)
from .ledger import Line, ledger_post, system_account

logger = logging.getLogger(__name__)

PENDING_ACCOUNT = "withdrawals_pending"
FEES_ACCOUNT = "fees"
APPROVE_PERMISSION = "payments.approve_withdrawal"
PAY_PERMISSION = "payments.pay_withdrawal"
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I look-alikes
# Far below the 64-bit integers the ledger stores, whatever the exponent.
MAX_MINOR = 10**17
MAX_KEY_LENGTH = 100

# What a client enters about where the money goes, by the method's icon.
DESTINATION_FIELDS: dict[str, tuple[str, ...]] = {
    "bank": ("iban", "account_holder"),
    "crypto": ("address",),
    "card": ("card_last4",),
    "wallet": (),
}
DESTINATION_LABELS = {
    "iban": "IBAN",
    "account_holder": "Account holder",
    "address": "Wallet address",
    "card_last4": "Card (last 4 digits)",
}


class WithdrawalError(LedgerError):
    """A withdrawal request or decision was refused; nothing changed. The
    message is for people; ``field`` names the form field it belongs to
    (empty: the whole form); ``unlock``/``unlock_url`` come from a policy
    refusal (what would allow it)."""

    def __init__(
        self, message: str, *, field: str = "", unlock: str = "", unlock_url: str = ""
    ) -> None:
        super().__init__(message)
        self.field = field
        self.unlock = unlock
        self.unlock_url = unlock_url


# --- The request ----------------------------------------------------------------------


@dataclass(frozen=True)
class WithdrawalQuote:
    """What a withdrawal would cost, before anything is reserved (minor units
    of the wallet's currency)."""

    wallet: LedgerAccount
    method: PaymentMethod
    amount: int
    fee: int

    @property
    def total(self) -> int:
        return self.amount + self.fee

    @property
    def amount_major(self) -> Decimal:
        return from_minor(self.amount, self.wallet.currency.exponent)

    @property
    def balance_after(self) -> int:
        return self.wallet.balance - self.total


def withdrawal_fee(*, method: PaymentMethod, amount: Decimal, exponent: int) -> int:
    """The method's fee (percent of the amount plus the fixed part), rounded
    half up to the currency's precision, in minor units. Charged on top of
    the amount."""
    return method.fee_minor(amount, exponent)


def withdrawal_quote(
    *, user, wallet: LedgerAccount, method: PaymentMethod, amount: Decimal
) -> WithdrawalQuote:
    """Check that ``user`` may withdraw ``amount`` from ``wallet`` with
    ``method`` (the method pays out, serves the wallet's currency and the
    client's country; the amount is within its limits) and compute the fee.
    Writes nothing; raises :class:`WithdrawalError`."""
    currency = wallet.currency
    if wallet.owner_id != user.pk or wallet.kind != LedgerAccount.WALLET:
        raise WithdrawalError("Choose one of your wallets.", field="wallet")
    if (
        not method.enabled
        or not method.provider.enabled
        or method.direction not in WITHDRAWAL_DIRECTIONS
    ):
        raise WithdrawalError(f"{method.name} is not available for withdrawals.", field="method")
    if not method_serves_currency(method, currency.code):
        raise WithdrawalError(
            f"{method.name} does not pay out {currency.code}. Choose another method.",
            field="method",
        )
    country = profile_for_user(user=user).country
    if not method_serves_country(method, getattr(country, "code", country) or ""):
        raise WithdrawalError(
            f"{method.name} is not available in your country. Choose another method.",
            field="method",
        )
    minor = _amount_minor(amount, currency.exponent, currency.code)
    if amount < method.min_amount:
        raise WithdrawalError(
            f"The minimum with {method.name} is {_major(method.min_amount, currency)}.",
            field="amount",
        )
    if method.max_amount is not None and amount > method.max_amount:
        raise WithdrawalError(
            f"The maximum with {method.name} is {_major(method.max_amount, currency)}.",
            field="amount",
        )
    fee = withdrawal_fee(method=method, amount=amount, exponent=currency.exponent)
    return WithdrawalQuote(wallet=wallet, method=method, amount=minor, fee=fee)


def _amount_minor(amount: Decimal, exponent: int, code: str) -> int:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise WithdrawalError("Enter an amount.", field="amount")
    if amount <= 0:
        raise WithdrawalError("Enter an amount above zero.", field="amount")
    try:
        minor = to_minor(amount, exponent)
    except MoneyError:
        places = f"{exponent} decimal place{'s' if exponent != 1 else ''}"
        raise WithdrawalError(
            f"{code} amounts have at most {places}." if exponent else f"{code} has no decimals.",
            field="amount",
        ) from None
    if minor >= MAX_MINOR:
        raise WithdrawalError("That amount is too large.", field="amount")
    return minor


def _major(value: Decimal, currency) -> str:
    """A limit (stored with 8 places) in the currency's precision: "10.00 USD"."""
    quantum = Decimal(1).scaleb(-currency.exponent)
    return f"{value.quantize(quantum, rounding=ROUND_HALF_UP):,} {currency.code}"


def _money(minor: int, currency) -> str:
    return f"{from_minor(minor, currency.exponent):,} {currency.code}"


def destination_clean(*, method: PaymentMethod, data: dict) -> dict[str, str]:
    """The destination details the method needs (bank: IBAN and account
    holder; crypto: an address; card: optionally the last 4 digits),
    normalised. Other keys are dropped. Raises :class:`WithdrawalError`
    naming the field."""
    result: dict[str, str] = {}
    for name in DESTINATION_FIELDS.get(method.icon, ()):
        value = str(data.get(name) or "").strip()
        cleaned = _DESTINATION_CHECKS[name](value)
        if cleaned:
            result[name] = cleaned
    return result


def _iban(value: str) -> str:
    iban = re.sub(r"[\s-]", "", value).upper()
    if not iban:
        raise WithdrawalError("Enter the IBAN of your bank account.", field="iban")
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban):
        raise WithdrawalError(
            "That is not an IBAN: two letters, two digits, then up to 30 letters and digits.",
            field="iban",
        )
    digits = "".join(str(int(char, 36)) for char in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise WithdrawalError(
            "That IBAN's check digits do not match. Check it for a typo.", field="iban"
        )
    return iban


def _account_holder(value: str) -> str:
    holder = " ".join(value.split())
    if len(holder) < 2:
        raise WithdrawalError(
            "Enter the name on the bank account (it must be yours).", field="account_holder"
        )
    if len(holder) > 140:
        raise WithdrawalError(
            "The name is too long (140 characters at most).", field="account_holder"
        )
    return holder


def _address(value: str) -> str:
    if not value:
        raise WithdrawalError("Enter the address of your crypto wallet.", field="address")
    if not re.fullmatch(r"[A-Za-z0-9:]{20,120}", value):
        raise WithdrawalError(
            "That does not look like a wallet address: copy it from your wallet app.",
            field="address",
        )
    return value


def _card_last4(value: str) -> str:
    if value and not re.fullmatch(r"[0-9]{4}", value):
        raise WithdrawalError(
            "Enter the last 4 digits of your card, or leave it empty.", field="card_last4"
        )
    return value


_DESTINATION_CHECKS = {
    "iban": _iban,
    "account_holder": _account_holder,
    "address": _address,
    "card_last4": _card_last4,
}


def two_factor_required(user) -> bool:
    return totp_device_confirmed(user) is not None


def _may_withdraw(user, quote, currency) -> None:
    """Ask the ``can_withdraw`` policy; a refusal says why and what unlocks it."""
    decision = can_withdraw(user, quote.amount_major, currency.code)
    if not decision:
        raise WithdrawalError(
            decision.reason or "You cannot withdraw at the moment.",
            unlock=decision.unlock,
            unlock_url=decision.unlock_url,
        )


def withdrawal_request(
    *,
    user,
    wallet: LedgerAccount,
    method: PaymentMethod,
    amount: Decimal,
    destination: dict,
    otp_code: str | None,
    idempotency_key: str,
) -> Withdrawal:
    """Ask to withdraw: reserve amount + fee at once and create the withdrawal.

    Idempotent on ``idempotency_key`` (per user): submitting the same request
    again returns the first withdrawal (``.replayed = True``), without asking
    for a fresh 2FA code; the same key with other details is refused.

    The order matters: everything that can be checked without side effects
    first (method, limits, destination, the ``can_withdraw`` policy, the
    balance), then the second factor, then the reservation. The second factor
    is verified *outside* the transaction: a wrong code is counted by the
    device's throttle even though the request fails (inside, the rollback
    would erase the count and allow guessing).
    """
    key = _request_key(user, idempotency_key)
    existing = withdrawal_for_request(user=user, key=key)
    if existing is not None:
        return _replay(existing, wallet=wallet, method=method, amount=amount)

    quote = withdrawal_quote(user=user, wallet=wallet, method=method, amount=amount)
    destination = destination_clean(method=method, data=destination)
    currency = wallet.currency
    _may_withdraw(user, quote, currency)
    balance = wallet_balance(wallet)
    if balance < quote.total:  # a courtesy; the ledger decides under the wallet's lock
        raise WithdrawalError(_insufficient(quote, balance), field="amount")
    _second_factor_check(user, otp_code)

    reference = _new_reference()
    try:
        with transaction.atomic():
            # Two requests at once must not both pass a daily limit: with the
            # client's row locked, the limits are asked again and see any
            # withdrawal committed meanwhile.
            client_lock(user)
            _may_withdraw(user, quote, currency)
            journal = ledger_post(
                kind="withdrawal_reserve",
                idempotency_key=key,
                lines=[
                    Line(wallet, -quote.total),
                    Line(system_account(PENDING_ACCOUNT, currency), quote.total),
                ],
                actor=user,
                description=f"Withdrawal {reference} via {method.name}"
                + (f" (fee {_money(quote.fee, currency)})" if quote.fee else ""),
                metadata={"method": method.pk, "amount": quote.amount, "fee": quote.fee},
            )
            if journal.replayed:  # the same request, submitted twice at once
                withdrawal = Withdrawal.objects.select_related(
                    "wallet__currency", "method__provider"
                ).get(reserve_journal=journal)
                withdrawal.replayed = True
                return withdrawal
            withdrawal = _create(
                reference=reference,
                user=user,
                quote=quote,
                destination=destination,
                journal=journal,
            )
            publish(
                "withdrawal.requested",
                withdrawal,
                _payload(withdrawal),
                client=user,
                actor=user,
            )
    except IdempotencyConflict:
        raise WithdrawalError(
            "This form was already sent with other details. "
            "Open the withdrawal page again to make a new request. Nothing was reserved."
        ) from None
    except InsufficientFunds as exc:
        raise WithdrawalError(_insufficient(quote, exc.available), field="amount") from None
    withdrawal.replayed = False
    return withdrawal


def _request_key(user, idempotency_key: str) -> str:
    key = (idempotency_key or "").strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise WithdrawalError("This form has expired. Open the withdrawal page again.")
    # Scoped to the user: one client's key can never find another's withdrawal.
    return f"withdrawal-request:{user.pk}:{key}"


def _replay(existing: Withdrawal, *, wallet, method, amount: Decimal) -> Withdrawal:
    try:
        same_amount = existing.amount == to_minor(amount, existing.wallet.currency.exponent)
    except MoneyError:
        same_amount = False
    if existing.wallet_id != wallet.pk or existing.method_id != method.pk or not same_amount:
        raise WithdrawalError(
            "This form was already sent with other details. "
            "Open the withdrawal page again to make a new request. Nothing was reserved."
        )
    existing.replayed = True
    return existing


def _insufficient(quote: WithdrawalQuote, balance: int) -> str:
    currency = quote.wallet.currency
    return (
        f"Insufficient funds: your {currency.code} wallet holds {_money(balance, currency)}; "
        f"this withdrawal needs {_money(quote.total, currency)} (amount plus fee). "
        "Nothing was reserved."
    )


def _second_factor_check(user, otp_code: str | None) -> None:
    if not two_factor_required(user):
        return
    if not (otp_code or "").strip():
        raise WithdrawalError(
            "Enter the code from your authenticator app (two-factor authentication is on "
            "for your account). Nothing was reserved.",
            field="otp_code",
        )
    try:
        device = two_factor_verify(user=user, token=otp_code or "")
    except TwoFactorError as exc:  # throttled after wrong codes
        raise WithdrawalError(f"{exc} Nothing was reserved.", field="otp_code") from None
    if device is None:
        raise WithdrawalError(
            "That code is not valid. Check the time on your phone and try again. "
            "Nothing was reserved.",
            field="otp_code",
        )


def _new_reference() -> str:
    return "WD-" + "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(8))


def _create(*, reference, user, quote: WithdrawalQuote, destination, journal) -> Withdrawal:
    """Create the row; on the (rare: 32**8 references) clash of references,
    draw another."""
    now = timezone.now()
    for _attempt in range(5):
        try:
            with transaction.atomic():
                return Withdrawal.objects.create(
                    reference=reference,
                    user=user,
                    wallet=quote.wallet,
                    method=quote.method,
                    amount=quote.amount,
                    fee=quote.fee,
                    destination=destination,
                    reserve_journal=journal,
                    created_at=now,
                    updated_at=now,
                )
        except IntegrityError:
            if not Withdrawal.objects.filter(reference=reference).exists():
                raise
            reference = _new_reference()
    raise LedgerError("Could not allocate a withdrawal reference; try again.")


def _payload(withdrawal: Withdrawal, **extra) -> dict:
    currency = withdrawal.wallet.currency
    return {
        "reference": withdrawal.reference,
        "amount": str(from_minor(withdrawal.amount, currency.exponent)),
        "fee": str(from_minor(withdrawal.fee, currency.exponent)),
        "currency": currency.code,
        "method": withdrawal.method.name,
        **extra,
    }


# --- Decisions ------------------------------------------------------------------------


def _locked(withdrawal: Withdrawal) -> Withdrawal:
    """Lock the withdrawal's row (only it: ``of``) and re-read it."""
    return (
        Withdrawal.objects.select_for_update(of=("self",))
        .select_related("user", "wallet__currency", "method__provider")
        .get(pk=withdrawal.pk)
    )


def _require(actor, permission: str) -> None:
    if actor is None or not actor.has_perm(permission):
        raise PermissionDenied(f"Needs the {permission} permission.")


def _not_in(withdrawal: Withdrawal, action: str) -> WithdrawalError:
    return WithdrawalError(
        f"Withdrawal {withdrawal.reference} is {withdrawal.get_status_display()}: "
        f"it can no longer be {action}. Nothing changed."
    )


def _release(*, withdrawal: Withdrawal, actor, status: str, reason: str) -> Withdrawal:
    """Return the reserve to the wallet and close the withdrawal (locked by the caller)."""
    currency = withdrawal.wallet.currency
    total = withdrawal.amount + withdrawal.fee
    verb = "cancelled" if status == Withdrawal.CANCELLED else "rejected"
    journal = ledger_post(
        kind="withdrawal_release",
        idempotency_key=f"withdrawal:{withdrawal.pk}:release",
        lines=[
            Line(system_account(PENDING_ACCOUNT, currency), -total),
            Line(withdrawal.wallet, total),
        ],
        actor=actor,
        description=f"Withdrawal {withdrawal.reference} {verb}",
        metadata={"withdrawal": withdrawal.reference},
    )
    withdrawal.release_journal = journal
    withdrawal.status = status
    withdrawal.decision_reason = reason
    withdrawal.decided_by = actor
    withdrawal.updated_at = timezone.now()
    withdrawal.save(
        update_fields=["release_journal", "status", "decision_reason", "decided_by", "updated_at"]
    )
    return withdrawal


@transaction.atomic
def withdrawal_cancel(*, user, withdrawal: Withdrawal) -> Withdrawal:
    """The client takes back a withdrawal that is still pending (also with
    one of two approvals in); the reserve returns to the wallet."""
    locked = _locked(withdrawal)
    if locked.user_id != user.pk:
        raise WithdrawalError("No such withdrawal.")
    if locked.status != Withdrawal.PENDING:
        raise _not_in(locked, "cancelled")
    _release(withdrawal=locked, actor=user, status=Withdrawal.CANCELLED, reason="")
    publish("withdrawal.cancelled", locked, _payload(locked), client=locked.user, actor=user)
    return locked


PayoutAttempt = tuple[Withdrawal, ProviderError | None]


@dataclass(frozen=True)
class ApprovalOutcome:
    """What an approval did: recorded one of two (still pending), or approved
    and started the payout (paid at once by an automatic provider; or waiting
    for Finance; or ``payout_error`` from the provider, still approved)."""

    withdrawal: Withdrawal
    approvals: int
    required: int
    payout_error: ProviderError | None = None

    @property
    def approved(self) -> bool:
        return self.approvals >= self.required


def withdrawal_approve(*, actor, withdrawal: Withdrawal) -> ApprovalOutcome:
    """Approve a pending withdrawal (four eyes: never the requester's own;
    above the currency's threshold, two different approvers).

    The last approval sets it approved in its own transaction; after that
    commit the provider is asked to pay, in a second transaction (so that no
    provider failure can undo the approval): an automatic provider pays and
    the payout is posted at once; a manual one leaves it approved for Finance
    to pay and record. A provider error leaves it approved, recorded as a
    ``withdrawal.payout_failed`` event with the error and whether it is
    permanent; Finance then retries (``withdrawal_payout_retry``, for a
    retryable error), pays by hand and marks it paid, or rejects it to
    release the reserve (a permanent error).
    """
    _require(actor, APPROVE_PERMISSION)
    with transaction.atomic():
        locked = _locked(withdrawal)
        if locked.status != Withdrawal.PENDING:
            raise _not_in(locked, "approved")
        if actor.pk == locked.user_id:
            raise WithdrawalError(
                "You cannot approve your own withdrawal: someone else in Finance must."
            )
        approvers = set(locked.approvals.values_list("approver_id", flat=True))
        if actor.pk in approvers:
            raise WithdrawalError(
                f"You have already approved {locked.reference}: "
                "the second approval must come from someone else."
            )
        now = timezone.now()
        WithdrawalApproval.objects.create(withdrawal=locked, approver=actor, created_at=now)
        given, required = len(approvers) + 1, approvals_required(locked)
        locked.updated_at = now
        if given < required:
            locked.save(update_fields=["updated_at"])
            publish(
                "withdrawal.approval_recorded",
                locked,
                _payload(locked, approvals=given, required=required),
                client=locked.user,
                actor=actor,
            )
            return ApprovalOutcome(locked, given, required)
        locked.status = Withdrawal.APPROVED
        locked.decided_by = actor
        locked.save(update_fields=["status", "decided_by", "updated_at"])
        publish(
            "withdrawal.approved",
            locked,
            _payload(locked, approvals=given),
            client=locked.user,
            actor=actor,
        )
    # The approval is committed; the payout is a step of its own.
    locked, error = _payout(actor=actor, withdrawal=locked, strict=False)
    return ApprovalOutcome(locked, given, required, error)


def withdrawal_payout_retry(*, actor, withdrawal: Withdrawal) -> PayoutAttempt:
    """Ask the provider again to pay an approved withdrawal (after a
    retryable error). The adapter receives the same withdrawal reference,
    which it passes to the PSP as its idempotency key, so that a retry after
    a lost answer does not pay twice."""
    _require(actor, PAY_PERMISSION)
    return _payout(actor=actor, withdrawal=withdrawal)


def _payout(*, actor, withdrawal: Withdrawal, strict: bool = True) -> PayoutAttempt:
    """Ask the provider to pay, holding the withdrawal's row lock, and post
    the payout when it paid. The lock makes a payout, a second payout (two
    retries at once) and a rejection of the same withdrawal take turns: a
    rejection waits and then finds it paid, never releasing money the
    provider sent. (The adapter's own time-outs bound that wait.) Unless
    ``strict``, a withdrawal no longer approved is returned as it is."""
    with transaction.atomic():
        locked = _locked(withdrawal)
        if locked.status != Withdrawal.APPROVED:
            if strict:
                raise _not_in(locked, "paid out")
            return locked, None
        provider = locked.method.provider
        try:
            result = psp_for(provider).payout(locked)
        except Exception as exc:  # noqa: BLE001 - the approval stands; the error is recorded
            if isinstance(exc, ProviderError):
                error = exc
            else:
                logger.exception("payout of %s failed", locked.reference)
                error = ProviderError(f"The provider could not be asked to pay: {exc}")
            publish(
                "withdrawal.payout_failed",
                locked,
                _payload(locked, error=str(error), permanent=error.permanent),
                client=locked.user,
                actor=actor,
            )
            return locked, error
        if not result.paid:
            return locked, None  # paid by hand; Finance records the payout reference
        reference = result.reference or f"{provider.identifier}:{locked.reference}"
        return _settle_locked(actor=actor, withdrawal=locked, payout_reference=reference), None


def withdrawal_mark_paid(*, actor, withdrawal: Withdrawal, payout_reference: str) -> Withdrawal:
    """Finance records that an approved withdrawal was paid (by hand, or as
    the provider reported), with the payout's reference; posts the payout."""
    _require(actor, PAY_PERMISSION)
    payout_reference = " ".join((payout_reference or "").split())
    if not payout_reference:
        raise WithdrawalError("Enter the payout reference (the bank's or provider's id).")
    if len(payout_reference) > 200:
        raise WithdrawalError("The payout reference is too long (200 characters at most).")
    return _settle(actor=actor, withdrawal=withdrawal, payout_reference=payout_reference)


@transaction.atomic
def _settle(*, actor, withdrawal: Withdrawal, payout_reference: str) -> Withdrawal:
    locked = _locked(withdrawal)
    if locked.status != Withdrawal.APPROVED:
        raise _not_in(locked, "marked paid")
    return _settle_locked(actor=actor, withdrawal=locked, payout_reference=payout_reference)


def _settle_locked(*, actor, withdrawal: Withdrawal, payout_reference: str) -> Withdrawal:
    """Post the payout of an approved withdrawal the caller has locked."""
    locked = withdrawal
    currency = locked.wallet.currency
    provider = locked.method.provider
    lines = [
        Line(system_account(PENDING_ACCOUNT, currency), -(locked.amount + locked.fee)),
        Line(system_account(f"psp:{provider.identifier}", currency), locked.amount),
    ]
    if locked.fee:
        lines.append(Line(system_account(FEES_ACCOUNT, currency), locked.fee))
    journal = ledger_post(
        kind="withdrawal_payout",
        idempotency_key=f"withdrawal:{locked.pk}:payout",
        lines=lines,
        actor=actor,
        description=f"Withdrawal {locked.reference} paid via {provider.name} ({payout_reference})",
        metadata={"withdrawal": locked.reference},
    )
    locked.settle_journal = journal
    locked.status = Withdrawal.PAID
    locked.payout_reference = payout_reference
    locked.updated_at = timezone.now()
    locked.save(update_fields=["settle_journal", "status", "payout_reference", "updated_at"])
    publish(
        "withdrawal.paid",
        locked,
        _payload(locked, payout_reference=payout_reference),
        client=locked.user,
        actor=actor,
    )
    return locked


@transaction.atomic
def withdrawal_reject(*, actor, withdrawal: Withdrawal, reason: str) -> Withdrawal:
    """Refuse a withdrawal that is pending, or approved but not paid (say,
    its payout failed for good): the reserve returns to the wallet. The reason
    is shown to the client."""
    _require(actor, APPROVE_PERMISSION)
    reason = (reason or "").strip()
    if not reason:
        raise WithdrawalError("Give the reason for the rejection; the client sees it.")
    locked = _locked(withdrawal)
    if locked.status not in (Withdrawal.PENDING, Withdrawal.APPROVED):
        raise _not_in(locked, "rejected")
    _release(withdrawal=locked, actor=actor, status=Withdrawal.REJECTED, reason=reason)
    publish(
        "withdrawal.rejected",
        locked,
        _payload(locked, reason=reason),
        client=locked.user,
        actor=actor,
    )
    return locked
