"""Deposits: the quote a client sees, creating and starting a deposit with a
payment method's provider, and applying what the provider (its webhook) or
Finance (a matched wire, a resolved flag) says happened.

The life of a deposit::

    created ──start──► pending ──confirm──► completed   (wallet credited once)
       │                  │  └──fail──► failed ──confirm──► completed
       │                  └──confirm with another amount/currency──► flagged
       └──(provider refused to start)──► failed         flagged ──resolve──► completed | failed

Decisions worth knowing:

- **Credited once.** The credit is one ledger posting under the key
  ``deposit:<pk>``, made with the deposit row locked; a completed deposit
  ignores later confirmations, so replayed and duplicated webhooks (same
  event id, or another event about the same payment) credit once.
- **Out of order.** A failure never undoes a completion. A completion that
  the provider reports after a failure wins (BTCPay settles an expired
  invoice that was paid late; a card's "failed" and "succeeded" can cross
  on the wire): the provider says the money arrived, so it is credited.
  A "pending" after a failure or completion changes nothing.
- **Mismatch.** A confirmation whose amount or currency differs from the
  deposit credits nothing: the deposit is flagged for Finance with the
  reason, and Finance resolves it (credit as created, or fail it; any
  difference is settled with a wallet adjustment).
- **Rate.** When the method settles in another currency than the wallet's,
  the credit is converted at the mid rate of the moment the client confirms
  (``payments.selectors.rates.rate_for``), shown before confirming, stored on
  the deposit and credited as shown, rounded down to the wallet's minor unit.
- **Fee.** ``fee_percent`` of the amount plus ``fee_fixed``, in the paid
  currency, rounded half up to its minor unit; the client pays the amount,
  the wallet receives amount − fee.
- **Unknown deposit.** A verified webhook about a reference we do not have
  (or one belonging to another provider) is recorded as ignored and answered
  200, so that the provider stops retrying something that will never match;
  nothing else changes.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.services import client_lock
from backoffice import policies
from backoffice.events import publish
from backoffice.money import MoneyError, from_minor, to_minor
from backoffice.secrets import decrypt, encrypt

from ..exceptions import LedgerError
from ..models import Currency, Deposit, LedgerAccount, PaymentMethod, PaymentProvider, WebhookEvent
from ..providers import psp_for
from ..providers.base import (
    DepositStart,
    ProviderError,
    WebhookRejected,
    WebhookResult,
    webhook_address_allowed,
)
from ..selectors.deposits import client_country, method_refusal
from .ledger import Line, ledger_post, system_account

# Unambiguous to read out and type: no 0/O, 1/I.
REFERENCE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
REFERENCE_PREFIX = "DEP-"
REFERENCE_LENGTH = 8
CONFIRM_PERMISSION = "payments.confirm_deposit"


class DepositError(LedgerError):
    """A deposit was refused; nothing was written. The message is for people;
    ``unlock``/``unlock_url`` say what would allow it (from a policy)."""

    def __init__(self, message: str, *, unlock: str = "", unlock_url: str = "") -> None:
        super().__init__(message)
        self.unlock = unlock
        self.unlock_url = unlock_url


def new_reference() -> str:
    return REFERENCE_PREFIX + "".join(
        pysecrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH)
    )


# --- the quote ------------------------------------------------------------------


@dataclass(frozen=True)
class DepositQuote:
    """What a deposit costs and brings, in minor units: the client pays
    ``amount`` of ``currency``; the wallet (``wallet_currency``) receives
    ``credit_amount``; ``rate`` (1 paid = rate wallet) when they differ."""

    method: PaymentMethod
    currency: Currency
    wallet_currency: Currency
    amount: int
    fee: int
    credit_amount: int
    rate: Decimal | None = None

    @property
    def converted(self) -> bool:
        return self.currency.code != self.wallet_currency.code

    @property
    def amount_decimal(self) -> Decimal:
        return from_minor(self.amount, self.currency.exponent)

    @property
    def fee_decimal(self) -> Decimal:
        return from_minor(self.fee, self.currency.exponent)

    @property
    def credit_decimal(self) -> Decimal:
        return from_minor(self.credit_amount, self.wallet_currency.exponent)


def deposit_fee(method: PaymentMethod, amount: int, currency: Currency) -> int:
    """The method's fee on ``amount`` minor units of ``currency``: percent plus
    fixed, rounded half up to the currency's minor unit."""
    return method.fee_minor(from_minor(amount, currency.exponent), currency.exponent)


def _limit(value: Decimal, currency: Currency) -> str:
    shown = value.quantize(Decimal(1).scaleb(-currency.exponent), rounding=ROUND_HALF_UP)
    return f"{shown:,} {currency.code}"


def deposit_quote(
    *, user, method: PaymentMethod, wallet_currency: Currency, amount: Decimal
) -> DepositQuote:
    """The fee and what the wallet receives for depositing ``amount`` (in the
    currency the method is paid in) by ``method`` into a ``wallet_currency``
    wallet; :class:`DepositError` with a message for the client when this
    client cannot deposit that amount by this method."""
    refusal = method_refusal(
        method, country=client_country(user=user), currency_code=wallet_currency.code
    )
    if refusal:
        raise DepositError(refusal)
    currency = method.provider_currency or wallet_currency
    if amount is None or not amount.is_finite() or amount <= 0:
        raise DepositError("Enter an amount greater than zero.")
    try:
        minor = to_minor(amount, currency.exponent)
    except MoneyError:
        raise DepositError(
            f"{currency.code} amounts have at most {currency.exponent} decimal places."
        ) from None
    if minor > 10**17:
        raise DepositError("This amount is too large.")
    if amount < method.min_amount:
        raise DepositError(
            f"The minimum deposit by {method.name} is {_limit(method.min_amount, currency)}."
        )
    if method.max_amount is not None and amount > method.max_amount:
        raise DepositError(
            f"The maximum deposit by {method.name} is {_limit(method.max_amount, currency)}."
        )
    fee = deposit_fee(method, minor, currency)
    net = minor - fee
    if net <= 0:
        raise DepositError(
            f"The amount does not cover the fee of {from_minor(fee, currency.exponent):,} "
            f"{currency.code}."
        )
    rate = None
    credit = net
    if currency.code != wallet_currency.code:
        rate = _rate(currency.code, wallet_currency.code)
        credit = to_minor(
            from_minor(net, currency.exponent) * rate,
            wallet_currency.exponent,
            rounding=ROUND_DOWN,
        )
        if credit <= 0:
            raise DepositError("This amount is too small to credit after conversion.")
    return DepositQuote(
        method=method,
        currency=currency,
        wallet_currency=wallet_currency,
        amount=minor,
        fee=fee,
        credit_amount=credit,
        rate=rate,
    )


def _rate(base: str, quote: str) -> Decimal:
    try:
        from ..selectors.rates import rate_for
    except ImportError:  # pragma: no cover - the rates selector ships with the conversions
        raise DepositError(
            f"Deposits converted from {base} to {quote} are not available yet."
        ) from None
    try:
        return Decimal(rate_for(base, quote).rate)
    except LedgerError as exc:
        raise DepositError(str(exc)) from None


# --- creating and starting ----------------------------------------------------------


@transaction.atomic
def deposit_create(
    *, user, wallet: LedgerAccount, method: PaymentMethod, amount: Decimal
) -> Deposit:
    """A deposit of ``amount`` (major units of the currency the method is paid
    in) by ``method`` into the client's ``wallet``, after every check: the
    method serves this client, country and currency, the limits, and the
    policies (``backoffice.policies.check(user, "deposit", ...)``)."""
    if wallet.kind != LedgerAccount.WALLET or wallet.owner_id != user.pk:
        raise DepositError("Choose one of your own wallets.")
    quote = deposit_quote(user=user, method=method, wallet_currency=wallet.currency, amount=amount)
    # Two deposits at once must not both pass a daily limit: the limits are
    # asked with the client's row locked, so each sees the other once committed.
    client_lock(user)
    decision = policies.check(
        user, policies.DEPOSIT, amount=quote.amount_decimal, currency=quote.currency.code
    )
    if not decision.allowed:
        raise DepositError(
            decision.reason or "You cannot deposit at the moment.",
            unlock=decision.unlock,
            unlock_url=decision.unlock_url,
        )
    now = timezone.now()
    for _attempt in range(5):
        try:
            with transaction.atomic():
                deposit = Deposit.objects.create(
                    reference=new_reference(),
                    user=user,
                    wallet=wallet,
                    method=method,
                    provider=method.provider,
                    currency=quote.currency,
                    amount=quote.amount,
                    fee=quote.fee,
                    credit_amount=quote.credit_amount,
                    rate=quote.rate,
                    created_at=now,
                    updated_at=now,
                )
            break
        except IntegrityError:  # a reference already taken (1 in 10^12): draw again
            continue
    else:  # pragma: no cover
        raise DepositError("Could not create the deposit; try again.")
    publish(
        "deposit.created",
        deposit,
        {
            "reference": deposit.reference,
            "method": method.name,
            "amount": str(quote.amount_decimal),
            "currency": quote.currency.code,
            "fee": str(quote.fee_decimal),
            "credit_amount": str(quote.credit_decimal),
            "wallet_currency": wallet.currency_id,
        },
        client=user,
    )
    return deposit


def deposit_start(*, deposit: Deposit, return_url: str) -> DepositStart:
    """Hand the deposit to its provider (outside a transaction: it may call
    the provider over the network): where to send the client, or what to
    show. The deposit becomes pending, with the provider's reference. When
    the provider refuses, the deposit fails and :class:`DepositError` says so."""
    adapter = psp_for(deposit.provider)
    try:
        start = adapter.deposit_start(deposit, return_url=return_url)
    except ProviderError as exc:
        deposit_fail(deposit=deposit, reason=f"The provider refused to start: {exc}")
        raise DepositError(
            f"{deposit.method.name} could not start the payment ({exc}). "
            "Nothing was charged; try again or choose another method."
        ) from exc
    with transaction.atomic():
        locked = Deposit.objects.select_for_update().get(pk=deposit.pk)
        if locked.status == Deposit.CREATED:
            locked.status = Deposit.PENDING
            _set_provider_reference(locked, start.provider_reference)
            locked.updated_at = timezone.now()
            locked.save(update_fields=["status", "provider_reference", "updated_at"])
        deposit.status, deposit.provider_reference = locked.status, locked.provider_reference
    return start


# --- applying what happened ---------------------------------------------------------


@dataclass(frozen=True)
class DepositChange:
    """What a confirmation or failure did: ``result`` is ``"applied"``,
    ``"flagged"`` or ``"ignored"`` (nothing changed), with a message."""

    deposit: Deposit
    result: str
    message: str = ""

    @property
    def changed(self) -> bool:
        return self.result != WebhookEvent.IGNORED


def _locked(deposit: Deposit) -> Deposit:
    return (
        Deposit.objects.select_for_update(of=("self",))
        .select_related("wallet", "currency", "provider", "method", "user")
        .get(pk=deposit.pk)
    )


def _payload(deposit: Deposit, **extra) -> dict:
    return {
        "reference": deposit.reference,
        "amount": str(from_minor(deposit.amount, deposit.currency.exponent)),
        "currency": deposit.currency_id,
        **extra,
    }


def _set_provider_reference(deposit: Deposit, provider_reference: str) -> None:
    reference = (provider_reference or "").strip()[:200]
    if not reference or deposit.provider_reference:
        return
    taken = (
        Deposit.objects.filter(provider_id=deposit.provider_id, provider_reference=reference)
        .exclude(pk=deposit.pk)
        .exists()
    )
    if not taken:
        deposit.provider_reference = reference


def _mismatch(deposit: Deposit, amount: Decimal | None, currency: str) -> str:
    """Why a payment of ``amount`` ``currency`` is not this deposit's, or ""."""
    expected = f"{from_minor(deposit.amount, deposit.currency.exponent)} {deposit.currency_id}"
    if amount is None or not currency:
        return f"The provider did not say how much was paid (expected {expected})."
    paid = f"{amount} {currency.upper()}"
    if currency.upper() != deposit.currency_id:
        return f"Paid in another currency: {paid}, expected {expected}."
    try:
        minor = to_minor(amount, deposit.currency.exponent)
    except MoneyError:
        minor = None
    if minor != deposit.amount:
        return f"Paid another amount: {paid}, expected {expected}."
    return ""


def _credit(deposit: Deposit, *, actor) -> None:
    """Post the deposit's credit (the deposit row is locked by the caller)."""
    paid, wallet = deposit.currency_id, deposit.wallet
    net = deposit.amount - deposit.fee
    lines = [Line(system_account(f"psp:{deposit.provider.identifier}", paid), -deposit.amount)]
    if deposit.fee:
        lines.append(Line(system_account("fees", paid), deposit.fee))
    lines.append(Line(wallet, deposit.credit_amount))
    if paid != wallet.currency_id:
        lines.append(Line(system_account("conversion", paid), net))
        lines.append(Line(system_account("conversion", wallet.currency_id), -deposit.credit_amount))
    journal = ledger_post(
        kind="deposit",
        idempotency_key=f"deposit:{deposit.pk}",
        lines=lines,
        actor=actor,
        description=f"Deposit {deposit.reference} by {deposit.method.name}",
        metadata={"deposit": deposit.reference},
    )
    now = timezone.now()
    deposit.journal = journal
    deposit.status = Deposit.COMPLETED
    deposit.completed_at = now
    deposit.updated_at = now


def _flag(deposit: Deposit, reason: str, *, actor) -> DepositChange:
    deposit.status = Deposit.FLAGGED
    deposit.flag_reason = reason
    deposit.updated_at = timezone.now()
    deposit.save(update_fields=["status", "flag_reason", "provider_reference", "updated_at"])
    publish(
        "deposit.flagged",
        deposit,
        _payload(deposit, reason=reason),
        client=deposit.user,
        actor=actor,
    )
    return DepositChange(deposit, WebhookEvent.FLAGGED, reason)


@transaction.atomic
def deposit_confirm(
    *,
    deposit: Deposit,
    amount: Decimal | None,
    currency: str,
    actor=None,
    provider_reference: str = "",
) -> DepositChange:
    """The provider (or Finance) says ``amount`` ``currency`` was paid for this
    deposit: credit the wallet once, or flag the deposit when the amount or
    currency differ. A completed or flagged deposit is left as it is."""
    deposit = _locked(deposit)
    if deposit.status == Deposit.COMPLETED:
        return DepositChange(deposit, WebhookEvent.IGNORED, "Already completed.")
    if deposit.status == Deposit.FLAGGED:
        return DepositChange(deposit, WebhookEvent.IGNORED, "Already flagged for Finance.")
    _set_provider_reference(deposit, provider_reference)
    reason = _mismatch(deposit, amount, currency)
    if reason:
        return _flag(deposit, reason, actor=actor)
    was = deposit.status
    _credit(deposit, actor=actor)
    deposit.save(
        update_fields=[
            "status",
            "journal",
            "completed_at",
            "updated_at",
            "provider_reference",
        ]
    )
    publish(
        "deposit.completed",
        deposit,
        _payload(
            deposit,
            credit_amount=str(from_minor(deposit.credit_amount, deposit.wallet.currency.exponent)),
            wallet_currency=deposit.wallet.currency_id,
            journal=deposit.journal_id,
        ),
        client=deposit.user,
        actor=actor,
    )
    message = "Credited." if was != Deposit.FAILED else "Credited after an earlier failure."
    return DepositChange(deposit, WebhookEvent.APPLIED, message)


@transaction.atomic
def deposit_fail(*, deposit: Deposit, reason: str = "", actor=None) -> DepositChange:
    """The payment failed (declined, expired, cancelled). Only a created or
    pending deposit fails; a completed one is never undone."""
    deposit = _locked(deposit)
    if deposit.status not in (Deposit.CREATED, Deposit.PENDING):
        return DepositChange(
            deposit, WebhookEvent.IGNORED, f"Not failed: the deposit is {deposit.status}."
        )
    deposit.status = Deposit.FAILED
    deposit.updated_at = timezone.now()
    deposit.save(update_fields=["status", "updated_at"])
    publish(
        "deposit.failed",
        deposit,
        _payload(deposit, reason=reason),
        client=deposit.user,
        actor=actor,
    )
    return DepositChange(deposit, WebhookEvent.APPLIED, reason or "Failed.")


@transaction.atomic
def deposit_mark_pending(*, deposit: Deposit, provider_reference: str = "") -> DepositChange:
    """The provider has seen the payment but not settled it yet."""
    deposit = _locked(deposit)
    if deposit.status != Deposit.CREATED:
        return DepositChange(deposit, WebhookEvent.IGNORED, f"Already {deposit.status}.")
    _set_provider_reference(deposit, provider_reference)
    deposit.status = Deposit.PENDING
    deposit.updated_at = timezone.now()
    deposit.save(update_fields=["status", "provider_reference", "updated_at"])
    return DepositChange(deposit, WebhookEvent.APPLIED, "Pending.")


# --- Finance ------------------------------------------------------------------------


def _require_confirm_permission(actor) -> None:
    if actor is None or not actor.has_perm(CONFIRM_PERMISSION):
        raise PermissionDenied("Confirming deposits needs the permission to confirm deposits.")


@transaction.atomic
def deposit_match_wire(
    *, actor, deposit: Deposit, amount: Decimal, currency: str, bank_reference: str
) -> DepositChange:
    """Finance matches an incoming bank payment to a pending wire deposit:
    credited when the amount and currency are the deposit's, flagged when not."""
    _require_confirm_permission(actor)
    bank_reference = (bank_reference or "").strip()
    if not bank_reference:
        raise DepositError("Enter the bank's reference of the incoming payment.")
    deposit = _locked(deposit)
    if deposit.provider.kind != "manual":
        raise DepositError("Only bank wire deposits are matched by hand.")
    if deposit.status not in (Deposit.CREATED, Deposit.PENDING):
        raise DepositError(f"Deposit {deposit.reference} is {deposit.status}; nothing to match.")
    other = (
        Deposit.objects.filter(provider_id=deposit.provider_id, provider_reference=bank_reference)
        .exclude(pk=deposit.pk)
        .values_list("reference", flat=True)
        .first()
    )
    if other:
        raise DepositError(f"The bank payment {bank_reference} is already matched to {other}.")
    return deposit_confirm(
        deposit=deposit,
        amount=amount,
        currency=currency,
        actor=actor,
        provider_reference=bank_reference,
    )


@transaction.atomic
def deposit_resolve_flagged(*, actor, deposit: Deposit, credit: bool, note: str) -> DepositChange:
    """Finance decides a flagged deposit: credit it as created (any difference
    from what arrived is settled with a wallet adjustment), or fail it."""
    _require_confirm_permission(actor)
    note = (note or "").strip()
    if not note:
        raise DepositError("Write down why, for the audit trail.")
    deposit = _locked(deposit)
    if deposit.status != Deposit.FLAGGED:
        raise DepositError(f"Deposit {deposit.reference} is {deposit.status}, not flagged.")
    decision = "credited" if credit else "failed"
    deposit.flag_reason = f"{deposit.flag_reason}\nResolved ({decision}) by {actor}: {note}".strip()
    if credit:
        _credit(deposit, actor=actor)
        deposit.save(
            update_fields=["status", "journal", "completed_at", "updated_at", "flag_reason"]
        )
        publish(
            "deposit.completed",
            deposit,
            _payload(deposit, resolved=note, journal=deposit.journal_id),
            client=deposit.user,
            actor=actor,
        )
    else:
        deposit.status = Deposit.FAILED
        deposit.updated_at = timezone.now()
        deposit.save(update_fields=["status", "updated_at", "flag_reason"])
        publish(
            "deposit.failed",
            deposit,
            _payload(deposit, reason=note),
            client=deposit.user,
            actor=actor,
        )
    return DepositChange(deposit, WebhookEvent.APPLIED, f"Resolved: {decision}.")


# --- webhooks -----------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookOutcome:
    event_id: str
    result: str  # applied / flagged / ignored, or "replay"
    message: str = ""
    deposit_reference: str = ""


def webhook_receive(*, provider: PaymentProvider, request) -> list[WebhookOutcome]:
    """A provider's call to ``/webhooks/<identifier>/``: check the sender's
    address against the provider's allow-list, verify the signature, parse,
    and apply each event once. Raises :class:`WebhookRejected` (answered 400)
    before anything is written when the call cannot be trusted or read, and
    :class:`ProviderError` when the provider could not be asked about it
    (answered 503, so that it retries)."""
    if not webhook_address_allowed(provider.webhook_ip_allowlist, request.META.get("REMOTE_ADDR")):
        raise WebhookRejected("This address may not call this webhook.")
    adapter = psp_for(provider)
    adapter.webhook_verify(request)
    results = adapter.webhook_parse(request)
    return [_webhook_apply(provider, result) for result in results]


def _webhook_deposit(provider: PaymentProvider, result: WebhookResult) -> Deposit | None:
    deposits = Deposit.objects.filter(provider=provider)
    if result.deposit_reference:
        return deposits.filter(reference=result.deposit_reference.strip().upper()).first()
    if result.provider_reference:
        return deposits.filter(provider_reference=result.provider_reference).first()
    return None


@transaction.atomic
def _webhook_apply(provider: PaymentProvider, result: WebhookResult) -> WebhookOutcome:
    try:
        with transaction.atomic():
            # The unique (provider, event_id) makes a concurrent delivery of
            # the same event wait here, then fail: applied once.
            event = WebhookEvent.objects.create(
                provider=provider,
                event_id=result.event_id,
                event_type=result.event_type,
                payload=result.payload,
                result=WebhookEvent.IGNORED,
                received_at=timezone.now(),
            )
    except IntegrityError:
        return WebhookOutcome(result.event_id, "replay", "Already received.")
    if not result.status:
        change = None
        message = f"Event type {result.event_type or '?'} is not acted on."
    else:
        deposit = _webhook_deposit(provider, result)
        if deposit is None:
            change = None
            message = "No deposit with this reference for this provider."
        elif result.status == "completed":
            change = deposit_confirm(
                deposit=deposit,
                amount=result.amount,
                currency=result.currency,
                provider_reference=result.provider_reference,
            )
        elif result.status == "failed":
            change = deposit_fail(deposit=deposit, reason=f"{provider.name}: {result.event_type}")
        else:
            change = deposit_mark_pending(
                deposit=deposit, provider_reference=result.provider_reference
            )
    if change is not None:
        event.deposit = change.deposit
        event.result = change.result
        message = change.message
    event.message = message
    event.save(update_fields=["deposit", "result", "message"])
    return WebhookOutcome(
        result.event_id,
        event.result,
        message,
        change.deposit.reference if change is not None else "",
    )


# --- provider configuration -------------------------------------------------------


@transaction.atomic
def provider_secrets_set(
    *, actor, provider: PaymentProvider, values: dict[str, str], clear: list[str] = ()
) -> PaymentProvider:
    """Store secrets of a provider, encrypted: blank values keep what is
    stored, ``clear`` names secrets to remove. Never returns or logs them."""
    locked = PaymentProvider.objects.select_for_update().get(pk=provider.pk)
    current = decrypt(locked.secrets)
    for name in clear:
        current.pop(name, None)
    current.update({name: value for name, value in values.items() if value})
    locked.secrets = encrypt(current)
    locked.save(update_fields=["secrets"])
    changed = {"set": sorted(k for k, v in values.items() if v), "cleared": sorted(clear)}
    publish(
        "payment_provider.secrets_changed",
        locked,
        {"provider": locked.identifier, **changed},
        actor=actor,
    )
    provider.secrets = locked.secrets
    return locked
