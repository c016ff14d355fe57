"""Money between a client's wallet and their live trading account.

Two systems must agree — our ledger and the trading platform — and no
transaction spans both, so each transfer is a small state machine
(:class:`~payments.models.TradingTransfer`) whose every step can be repeated:

**In** (wallet → account): one posting moves the money from the wallet to
the platform's clearing account (``platform:<identifier>``, kind
``trading_transfer_in``, key ``trading-transfer:<reference>``) together with
the transfer row, in one transaction. A Celery task then credits the
platform with the transfer's reference as the operation's key. A refusal
reverses the posting; the client sees why.

**Out** (account → wallet): the platform is debited first (it checks the free
margin); only then is the wallet credited from the clearing account. A
refusal leaves the ledger untouched.

**Unknown outcomes.** Before calling the platform the transfer is marked
``sending`` (committed). A call that times out leaves it ``unknown``; a worker
that dies mid-call leaves it ``sending``. Either is settled only by the
sweeper, once the call is surely over (``TRADING_TRANSFER_STALE_AFTER``): it
first asks the platform whether the operation with that key happened
(:meth:`~accounts.platforms.base.PlatformGateway.balance_operation_find`),
then finishes the transfer, or sends it again (it did not happen), or gives
up and reverses after ``MAX_ATTEMPTS``. Never a blind retry.

When the currencies differ the amount is converted at the rate of the
request (markup and fee as for conversions), with the conversion account
between the two currencies; the amount the platform gets is rounded down to
the platform's digits for the currency.
"""

from __future__ import annotations

import hashlib
import logging
import secrets as pysecrets
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import TradingAccount
from accounts.platforms import gateway_for
from accounts.platforms.base import OutcomeUnknown, PlatformError
from accounts.services.trading import trading_account_refresh
from backoffice import policies
from backoffice.events import publish
from backoffice.money import MoneyError, from_minor, to_minor

from ..exceptions import InsufficientFunds, LedgerError
from ..models import Currency, LedgerAccount, TradingTransfer
from ..selectors.rates import markup_for, rate_for
from ..selectors.trading import first_transfer_minimum
from ..templatetags.payments import format_amount
from .conversions import CONVERSION, FEES, MAX_MINOR, QuoteMath, quote_math
from .ledger import Line, ledger_post, ledger_reverse, system_account

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
REFERENCE_PREFIX = "TT-"
REFERENCE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
REFERENCE_LENGTH = 10


class TradingTransferError(LedgerError):
    """A transfer was refused; nothing moved. The message is for the client.
    ``decision`` is the policy's decision when a policy refused."""

    def __init__(self, message: str, *, decision: policies.Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class TradingTransferKeyReused(TradingTransferError):
    """The idempotency key was used for a different transfer (HTTP 409)."""

    def __init__(self) -> None:
        super().__init__("This request key was already used for a different transfer.")


def clearing_code(account: TradingAccount) -> str:
    return f"platform:{account.platform.identifier}"


@dataclass(frozen=True)
class TransferFigures:
    """What a transfer moves: ``wallet_minor`` of the wallet's currency and
    ``account_minor`` of the account's (its platform digits); ``ledger_minor``
    is the account side in the ledger currency's minor unit. ``math`` is the
    conversion when the currencies differ."""

    direction: str
    wallet_minor: int
    account_minor: int
    ledger_minor: int
    math: QuoteMath | None

    @property
    def rate(self) -> Decimal | None:
        return self.math.rate if self.math else None


def _ledger_currency(account: TradingAccount) -> Currency:
    currency = Currency.objects.filter(code=account.currency, is_active=True).first()
    if currency is None or currency.exponent < account.currency_digits:
        raise TradingTransferError(
            f"Transfers to {account.currency} trading accounts are not available."
        )
    return currency


def _amount_minor(amount: Decimal, exponent: int, code: str) -> int:
    if isinstance(amount, Decimal) and amount.is_finite() and amount.adjusted() >= 18 - exponent:
        raise TradingTransferError("The amount is too large.")
    try:
        minor = to_minor(amount, exponent)
    except MoneyError:
        if isinstance(amount, Decimal) and amount.is_finite():
            raise TradingTransferError(
                f"{code} amounts have at most {exponent} decimal places."
            ) from None
        raise TradingTransferError("Enter an amount as a number.") from None
    if minor <= 0:
        raise TradingTransferError("Enter an amount greater than zero.")
    if minor >= MAX_MINOR:
        raise TradingTransferError("The amount is too large.")
    return minor


def transfer_figures(
    *, direction: str, wallet: LedgerAccount, account: TradingAccount, amount: Decimal
) -> TransferFigures:
    """The figures of a transfer of ``amount``: in the wallet's currency for
    a transfer in, in the account's currency for a transfer out. Raises
    :class:`TradingTransferError` or the rate selector's ``RateUnavailable``."""
    wallet_currency = wallet.currency
    account_currency = _ledger_currency(account)
    scale = 10 ** (account_currency.exponent - account.currency_digits)
    same = wallet_currency.code == account_currency.code
    if direction == TradingTransfer.IN:
        sell = _amount_minor(amount, wallet_currency.exponent, wallet_currency.code)
        if same:
            if sell % scale:
                raise TradingTransferError(
                    f"The trading account keeps {account.currency_digits} decimal places."
                )
            return TransferFigures(direction, sell, sell // scale, sell, None)
        math = quote_math(
            sell=sell,
            from_currency=wallet_currency,
            to_currency=account_currency,
            mid_rate=rate_for(wallet_currency, account_currency).rate,
            markup=markup_for(wallet_currency, account_currency),
        )
        account_minor = math.buy // scale  # the platform's digits, rounded down
        if account_minor <= 0:
            raise TradingTransferError("The amount is too small once converted.")
        return TransferFigures(direction, sell, account_minor, account_minor * scale, math)
    account_minor = _amount_minor(amount, account.currency_digits, account.currency)
    ledger_minor = account_minor * scale
    if same:
        return TransferFigures(direction, ledger_minor, account_minor, ledger_minor, None)
    math = quote_math(
        sell=ledger_minor,
        from_currency=account_currency,
        to_currency=wallet_currency,
        mid_rate=rate_for(account_currency, wallet_currency).rate,
        markup=markup_for(account_currency, wallet_currency),
    )
    return TransferFigures(direction, math.buy, account_minor, ledger_minor, math)


def _lines(transfer: TradingTransfer, figures: TransferFigures) -> list[Line]:
    """Money flows wallet → clearing (in) or clearing → wallet (out), through
    the conversion account (and fees) when the currencies differ."""
    wallet = transfer.wallet
    clearing = system_account(
        clearing_code(transfer.trading_account), transfer.trading_account.currency
    )
    math = figures.math
    if math is None:
        amount = figures.wallet_minor
        sign = 1 if transfer.direction == TradingTransfer.IN else -1
        return [Line(wallet, -sign * amount), Line(clearing, sign * amount)]
    if transfer.direction == TradingTransfer.IN:
        source, source_code, target, target_code = (
            wallet,
            wallet.currency_id,
            clearing,
            clearing.currency_id,
        )
        sold, bought = figures.wallet_minor, figures.ledger_minor
    else:
        source, source_code, target, target_code = (
            clearing,
            clearing.currency_id,
            wallet,
            wallet.currency_id,
        )
        sold, bought = figures.ledger_minor, figures.wallet_minor
    lines = [Line(source, -sold)]
    if math.fee:
        lines.append(Line(system_account(FEES, source_code), math.fee))
    lines += [
        Line(system_account(CONVERSION, source_code), sold - math.fee),
        Line(system_account(CONVERSION, target_code), -bought),
        Line(target, bought),
    ]
    return lines


def _figures_of(transfer: TradingTransfer) -> TransferFigures:
    """The stored figures of a transfer (the rate of its request)."""
    account = transfer.trading_account
    currency = _ledger_currency(account)
    ledger_minor = transfer.account_amount * 10 ** (currency.exponent - account.currency_digits)
    math = None
    if transfer.rate is not None:
        sold = transfer.amount if transfer.direction == TradingTransfer.IN else ledger_minor
        fee = int(transfer.fee)
        math = QuoteMath(
            sell=sold,
            fee=fee,
            buy=0,
            mid_rate=transfer.rate,
            rate=transfer.rate,
            markup_percent=Decimal(0),
            fee_percent=Decimal(0),
        )
    return TransferFigures(
        transfer.direction, transfer.amount, transfer.account_amount, ledger_minor, math
    )


def _new_reference() -> str:
    return REFERENCE_PREFIX + "".join(
        pysecrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH)
    )


def _request_hash(
    direction: str, wallet: LedgerAccount, account: TradingAccount, amount: Decimal
) -> str:
    raw = f"{direction}|{wallet.pk}|{account.pk}|{Decimal(amount).normalize():f}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _check(
    user, direction: str, wallet: LedgerAccount, account: TradingAccount, figures=None
) -> None:
    if account.user_id != user.pk:
        raise TradingTransferError("Choose one of your own trading accounts.")
    if wallet is None or wallet.kind != LedgerAccount.WALLET or wallet.owner_id != user.pk:
        raise TradingTransferError("Choose one of your own wallets.")
    if account.is_demo:
        raise TradingTransferError(
            "A demo account holds virtual money only; it takes no transfers."
        )
    if account.status != TradingAccount.ACTIVE:
        raise TradingTransferError("This trading account is archived.")
    if not account.platform.enabled or not gateway_for(account.platform).live_operations:
        raise TradingTransferError("Transfers to this trading platform are not available just now.")


def _ask_policy(
    user, direction: str, account: TradingAccount, wallet: LedgerAccount, amount
) -> None:
    decision = policies.check(
        user,
        policies.TRANSFER,
        amount=amount,
        currency=wallet.currency_id,
        trading_account=account,
        direction=direction,
    )
    if not decision.allowed:
        raise TradingTransferError(
            decision.reason or "Transfers are not allowed for you just now.", decision=decision
        )


def _first_transfer_minimum(account: TradingAccount, figures: TransferFigures) -> None:
    minimum = first_transfer_minimum(account)
    if minimum is None:
        return
    if from_minor(figures.account_minor, account.currency_digits) < minimum:
        raise TradingTransferError(
            f"The first transfer to this account must be at least {minimum.normalize():f} "
            f"{account.currency}."
        )


def _existing(user, key: str, request_hash: str) -> TradingTransfer | None:
    done = TradingTransfer.objects.filter(idempotency_key=key).first()
    if done is None:
        return None
    if done.user_id != user.pk or done.request_hash != request_hash:
        raise TradingTransferKeyReused()
    done.replayed = True
    return done


def _stored_key(user, key: str) -> str:
    if not key or len(key) > 100:
        raise TradingTransferError("A request key (at most 100 characters) is needed.")
    return f"{user.pk}:{key}"


def trading_transfer_in(
    *, user, account: TradingAccount, wallet: LedgerAccount, amount: Decimal, idempotency_key: str
) -> TradingTransfer:
    """Move ``amount`` (wallet currency) from ``wallet`` to the live trading
    ``account``. The wallet is debited at once; the platform is credited by a
    task after commit. The same key returns the same transfer."""
    return _transfer_request(TradingTransfer.IN, user, account, wallet, amount, idempotency_key)


def trading_transfer_out(
    *, user, account: TradingAccount, wallet: LedgerAccount, amount: Decimal, idempotency_key: str
) -> TradingTransfer:
    """Move ``amount`` (account currency) from the live trading ``account`` to
    ``wallet``: the platform is debited first (by a task after commit), then
    the wallet is credited. The same key returns the same transfer."""
    return _transfer_request(TradingTransfer.OUT, user, account, wallet, amount, idempotency_key)


def _check_direction(direction: str, account: TradingAccount, figures: TransferFigures) -> None:
    if direction == TradingTransfer.IN:
        _first_transfer_minimum(account, figures)
    elif account.state_updated_at is not None and figures.account_minor > account.free_margin:
        # A courtesy check on the cached figures; the platform decides.
        free = from_minor(account.free_margin, account.currency_digits)
        raise TradingTransferError(
            f"The account's free margin is {free} {account.currency}, less than the amount."
        )


def _transfer_request(
    direction: str,
    user,
    account: TradingAccount,
    wallet: LedgerAccount,
    amount: Decimal,
    idempotency_key: str,
) -> TradingTransfer:
    """Record a transfer (and, in, post it to the ledger) in one transaction;
    the platform is called by a task after commit."""
    key = _stored_key(user, idempotency_key)
    request_hash = _request_hash(direction, wallet, account, amount)
    existing = _existing(user, key, request_hash)
    if existing is not None:
        return existing
    _check(user, direction, wallet, account)
    figures = transfer_figures(direction=direction, wallet=wallet, account=account, amount=amount)
    _ask_policy(user, direction, account, wallet, amount)
    _check_direction(direction, account, figures)
    try:
        with transaction.atomic():
            transfer = TradingTransfer.objects.create(
                reference=_new_reference(),
                user=user,
                direction=direction,
                wallet=wallet,
                trading_account=account,
                amount=figures.wallet_minor,
                account_amount=figures.account_minor,
                rate=figures.rate,
                fee=figures.math.fee if figures.math else 0,
                idempotency_key=key,
                request_hash=request_hash,
            )
            if direction == TradingTransfer.IN:
                transfer.journal = ledger_post(
                    kind="trading_transfer_in",
                    idempotency_key=f"trading-transfer:{transfer.reference}",
                    lines=_lines(transfer, figures),
                    actor=user,
                    description=_describe(transfer),
                    metadata={"trading_transfer": transfer.reference, "login": account.login},
                )
                transfer.save(update_fields=["journal"])
            publish(
                "trading_account.transfer_requested",
                transfer,
                _payload(transfer),
                client=user,
                actor=user,
            )
            _enqueue(transfer.pk)
    except InsufficientFunds as exc:
        raise TradingTransferError(
            f"Insufficient funds: your {wallet.currency_id} wallet holds "
            f"{format_amount(exc.available, wallet.currency)}, less than "
            f"{format_amount(exc.needed, wallet.currency)}. Nothing was transferred."
        ) from None
    except IntegrityError:
        # The same key, concurrently: the other request's transfer stands.
        existing = _existing(user, key, request_hash)
        if existing is None:
            raise
        return existing
    return transfer


def _enqueue(transfer_id: int) -> None:
    from ..tasks import trading_transfer_process

    transaction.on_commit(lambda: trading_transfer_process.delay(transfer_id))


def _describe(transfer: TradingTransfer) -> str:
    account = transfer.trading_account
    amount = format_amount(transfer.amount, transfer.wallet.currency)
    if transfer.direction == TradingTransfer.IN:
        return f"To trading account {account.login}: {amount} ({transfer.reference})"
    return f"From trading account {account.login}: {amount} ({transfer.reference})"


def _payload(transfer: TradingTransfer) -> dict:
    account = transfer.trading_account
    return {
        "reference": transfer.reference,
        "direction": transfer.direction,
        "login": account.login,
        "platform": account.platform.identifier,
        "wallet_currency": transfer.wallet.currency_id,
        "amount": str(transfer.wallet.currency.format_minor(transfer.amount)),
        "account_currency": account.currency,
        "account_amount": str(from_minor(transfer.account_amount, account.currency_digits)),
        "status": transfer.status,
    }


# --- The platform side, run by tasks ---------------------------------------------------


def _stale_before():
    return timezone.now() - timedelta(seconds=settings.TRADING_TRANSFER_STALE_AFTER)


def _claim(transfer_id: int) -> tuple[TradingTransfer | None, bool]:
    """Lock the transfer and mark it ``sending`` (committed before the
    platform is called). Returns (transfer, must_look_up_first), or
    (None, False) when there is nothing to do now: settled already, or
    another worker's call may still be under way."""
    with transaction.atomic():
        transfer = (
            TradingTransfer.objects.select_for_update(of=("self",))
            .select_related("trading_account__platform", "wallet__currency")
            .filter(pk=transfer_id)
            .first()
        )
        if transfer is None or not transfer.is_open:
            return None, False
        uncertain = transfer.status in (TradingTransfer.SENDING, TradingTransfer.UNKNOWN)
        if uncertain and transfer.updated_at > _stale_before():
            return None, False  # a call may still land: wait for the sweeper
        transfer.status = TradingTransfer.SENDING
        transfer.attempts += 1
        transfer.updated_at = timezone.now()
        transfer.save(update_fields=["status", "attempts", "updated_at"])
        return transfer, uncertain


def _set_status(transfer: TradingTransfer, status: str, error: str = "") -> TradingTransfer:
    TradingTransfer.objects.filter(pk=transfer.pk, status=TradingTransfer.SENDING).update(
        status=status, error=error[:255], updated_at=timezone.now()
    )
    transfer.status, transfer.error = status, error[:255]
    return transfer


def trading_transfer_process(*, transfer_id: int) -> TradingTransfer | None:
    """Take an open transfer one step further: call the platform (after
    asking it whether an earlier call happened, when one may have), then
    complete, or fail and reverse, or leave it for the sweeper."""
    transfer, look_up = _claim(transfer_id)
    if transfer is None:
        return None
    account = transfer.trading_account
    gateway = gateway_for(account.platform)
    if look_up:
        try:
            ticket = gateway.balance_operation_find(login=account.login, key=transfer.reference)
        except PlatformError as exc:
            return _set_status(transfer, TradingTransfer.UNKNOWN, str(exc))
        if ticket is not None:
            return _complete(transfer.pk, ticket)
    if transfer.attempts > MAX_ATTEMPTS:
        return _fail(
            transfer.pk,
            f"The trading platform did not take the transfer after {MAX_ATTEMPTS} attempts.",
        )
    sign = 1 if transfer.direction == TradingTransfer.IN else -1
    amount = sign * from_minor(transfer.account_amount, account.currency_digits)
    try:
        ticket = gateway.balance_operation(
            login=account.login,
            amount=amount,
            comment=transfer.reference,
            key=transfer.reference,
        )
    except OutcomeUnknown as exc:
        return _set_status(transfer, TradingTransfer.UNKNOWN, str(exc))
    except PlatformError as exc:
        if exc.permanent:
            return _fail(transfer.pk, str(exc))
        return _set_status(transfer, TradingTransfer.PENDING, str(exc))
    return _complete(transfer.pk, ticket)


@transaction.atomic
def _complete(transfer_id: int, ticket: str) -> TradingTransfer:
    transfer = (
        TradingTransfer.objects.select_for_update(of=("self",))
        .select_related("trading_account__platform", "wallet__currency")
        .get(pk=transfer_id)
    )
    if not transfer.is_open:
        return transfer
    if transfer.direction == TradingTransfer.OUT:
        transfer.journal = ledger_post(
            kind="trading_transfer_out",
            idempotency_key=f"trading-transfer:{transfer.reference}",
            lines=_lines(transfer, _figures_of(transfer)),
            actor=transfer.user,
            description=_describe(transfer),
            metadata={"trading_transfer": transfer.reference, "ticket": ticket},
        )
    transfer.status = TradingTransfer.COMPLETED
    transfer.platform_ticket = str(ticket)[:64]
    transfer.error = ""
    transfer.completed_at = transfer.updated_at = timezone.now()
    transfer.save()
    name = (
        "trading_account.transfer_in"
        if transfer.direction == TradingTransfer.IN
        else "trading_account.transfer_out"
    )
    publish(name, transfer, _payload(transfer), client=transfer.user)
    account = transfer.trading_account
    transaction.on_commit(lambda: trading_account_refresh(account=account))
    return transfer


@transaction.atomic
def _fail(transfer_id: int, reason: str) -> TradingTransfer:
    transfer = (
        TradingTransfer.objects.select_for_update(of=("self",))
        .select_related("trading_account__platform", "wallet__currency")
        .get(pk=transfer_id)
    )
    if not transfer.is_open:
        return transfer
    if transfer.journal_id is not None and transfer.direction == TradingTransfer.IN:
        transfer.reversal_journal = ledger_reverse(
            journal=transfer.journal,
            actor=None,
            reason=f"{transfer.reference} to trading account {transfer.trading_account.login} "
            f"refused by the platform: {reason}"[:200],
            idempotency_key=f"trading-transfer:{transfer.reference}:reversal",
        )
    transfer.status = TradingTransfer.FAILED
    transfer.error = reason[:255]
    transfer.updated_at = timezone.now()
    transfer.save()
    publish(
        "trading_account.transfer_failed",
        transfer,
        {**_payload(transfer), "reason": reason[:255]},
        client=transfer.user,
    )
    return transfer


def trading_transfers_sweep(*, limit: int = 200) -> int:
    """Beat: retry transfers left ``pending`` (the task never ran, or the
    platform was unreachable) and settle ``sending``/``unknown`` ones whose
    call is surely over, by asking the platform first. Returns how many."""
    stale = _stale_before()
    retry_after = timezone.now() - timedelta(seconds=settings.TRADING_TRANSFER_RETRY_AFTER)
    ids = list(
        TradingTransfer.objects.filter(
            Q(status=TradingTransfer.PENDING, updated_at__lte=retry_after)
            | Q(
                status__in=[TradingTransfer.SENDING, TradingTransfer.UNKNOWN], updated_at__lte=stale
            )
        )
        .order_by("updated_at")
        .values_list("pk", flat=True)[:limit]
    )
    for pk in ids:
        try:
            trading_transfer_process(transfer_id=pk)
        except Exception:  # one bad transfer must not stop the sweep
            log.exception("Trading transfer %s could not be processed", pk)
    return len(ids)
