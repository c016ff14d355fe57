"""Conversions between a client's wallets at a quoted rate, and internal
transfers (between own wallets, or to another client when the broker allows).

A conversion happens in two steps, so that the client sees the rate before
any money moves: :func:`conversion_quote` fixes the rate, markup, fee and the
amount received for ``settings.CONVERSION_QUOTE_TTL`` seconds;
:func:`conversion_execute` posts it, once, if still in time. A transfer
between wallets of different currencies goes through such a quote too.

Ledger postings (ARCHITECTURE.md, "Ledger conventions"):

- conversion, kind ``conversion``, key ``conversion:<public id>``: from wallet
  −sell, ``fees`` (sold currency) +fee, ``conversion`` (sold currency)
  +(sell − fee), ``conversion`` (bought currency) −buy, to wallet +buy;
- transfer, kind ``transfer``, key ``transfer:<user id>:<client's key>``: from
  wallet −amount, to wallet +amount; with the conversion lines above instead
  when the currencies differ (the Conversion row then points at the same
  journal as the Transfer).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, localcontext

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from backoffice import policies
from backoffice.events import publish
from backoffice.money import MoneyError, from_minor, to_minor

from ..exceptions import IdempotencyConflict, InsufficientFunds, LedgerError
from ..models import Conversion, Currency, JournalTransaction, LedgerAccount, Markup, Transfer
from ..selectors.conversions import as_uuid
from ..selectors.rates import markup_for, rate_for
from ..templatetags.payments import format_amount
from .ledger import Line, ledger_post, system_account, wallet_open
from .rates import RATE_QUANTUM

FEES = "fees"
CONVERSION = "conversion"
QUOTE_EXPIRED = "The quote expired; ask for a new one."
RECIPIENT_REFUSED = (
    "We cannot send money to this e-mail address. Check the address with the person you are paying."
)
# Amounts typed by people: at most 18 digits (64-bit minor units, any exponent).
MAX_MINOR = 10**18


class ConversionError(LedgerError):
    """A conversion or transfer was refused; nothing changed. For people."""


class QuoteExpired(ConversionError):
    def __init__(self, message: str = QUOTE_EXPIRED) -> None:
        super().__init__(message)


class QuoteNotFound(ConversionError):
    """No such quote of this user (a view answers 404)."""


class InsufficientBalance(ConversionError):
    """The wallet holds less than the amount; nothing was converted or sent."""


class TransferKeyReused(ConversionError, IdempotencyConflict):
    """The idempotency key was already used for a transfer with other details
    (other wallets, amount or quote); nothing was sent (an API answers 409)."""

    def __init__(self) -> None:
        super().__init__(
            "This form was already used for another transfer; open the transfer page again."
        )


class NotAllowed(ConversionError):
    """A policy (KYC level, a fraud restriction, ...) refused the action."""

    def __init__(self, decision: policies.Decision) -> None:
        self.decision = decision
        super().__init__(decision.reason or "This is not possible for your account at the moment.")


# --- Arithmetic ---------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteMath:
    """A quote's numbers: minor units of the sold currency (``sell``, fee
    included, and ``fee``), of the bought one (``buy``); rates per unit."""

    sell: int
    fee: int
    buy: int
    mid_rate: Decimal
    rate: Decimal
    markup_percent: Decimal
    fee_percent: Decimal


def quote_math(
    *,
    sell: int,
    from_currency: Currency,
    to_currency: Currency,
    mid_rate: Decimal,
    markup: Markup,
) -> QuoteMath:
    """The client's side of a conversion, every rounding against the client.

    fee = ``fee_percent`` of ``sell``, half up, in the sold currency's minor
    unit; rate = mid × (1 − markup %), down to the rate column's 12 places;
    buy = (sell − fee) × rate, down to the bought currency's minor unit.
    """
    with localcontext() as ctx:
        ctx.prec = 60  # exact for any 18-digit amount times any stored rate
        fee = int((Decimal(sell) * markup.fee_percent / 100).to_integral_value(ROUND_HALF_UP))
        mid = mid_rate.quantize(RATE_QUANTUM, ROUND_HALF_EVEN)
        rate = (mid_rate * (1 - markup.markup_percent / 100)).quantize(RATE_QUANTUM, ROUND_DOWN)
        if rate <= 0 or mid <= 0:
            raise ConversionError(
                f"{from_currency.code} cannot be converted to {to_currency.code} at this rate."
            )
        received = from_minor(sell - fee, from_currency.exponent) * rate
        buy = to_minor(received, to_currency.exponent, rounding=ROUND_DOWN)
    if buy <= 0:
        raise ConversionError(
            f"The amount is too small: you would receive less than the smallest "
            f"{to_currency.code} unit. Enter a larger amount."
        )
    if buy >= MAX_MINOR:
        raise ConversionError("The amount is too large to convert at once.")
    return QuoteMath(
        sell=sell,
        fee=fee,
        buy=buy,
        mid_rate=mid,
        rate=rate,
        markup_percent=markup.markup_percent,
        fee_percent=markup.fee_percent,
    )


def _minor(amount: Decimal, currency: Currency) -> int:
    try:
        minor = to_minor(amount, currency.exponent)
    except MoneyError:
        if isinstance(amount, Decimal) and amount.is_finite():
            raise ConversionError(
                f"{currency.code} amounts have at most {currency.exponent} decimal places."
            ) from None
        raise ConversionError("Enter an amount as a number.") from None
    if minor <= 0:
        raise ConversionError("Enter an amount greater than zero.")
    if minor >= MAX_MINOR:
        raise ConversionError("The amount is too large.")
    return minor


# --- Checks shared by conversions and transfers ------------------------------------


def _ask(user, action: str, **context) -> None:
    decision = policies.check(user, action, **context)
    if not decision.allowed:
        raise NotAllowed(decision)


def _own(user, wallet: LedgerAccount) -> None:
    if wallet is None or wallet.kind != LedgerAccount.WALLET or wallet.owner_id != user.pk:
        raise ConversionError("Choose one of your own wallets.")


def _cover(wallet: LedgerAccount, minor: int) -> None:
    """A courtesy check before quoting; the ledger decides under lock."""
    if minor > wallet.balance:
        raise InsufficientBalance(
            f"Insufficient funds: your {wallet.currency_id} wallet holds "
            f"{format_amount(wallet.balance, wallet.currency)}, less than "
            f"{format_amount(minor, wallet.currency)}."
        )


def _explain_insufficient(exc: InsufficientFunds) -> ConversionError:
    currency = Currency.objects.get(pk=exc.wallet.currency_id)
    return InsufficientBalance(
        f"Insufficient funds: your {currency.code} wallet holds "
        f"{format_amount(exc.available, currency)}, less than "
        f"{format_amount(exc.needed, currency)}. Nothing was converted or sent."
    )


# --- Conversions --------------------------------------------------------------------


@transaction.atomic
def conversion_quote(
    *, user, from_wallet: LedgerAccount, to_wallet: LedgerAccount, sell_amount: Decimal
) -> Conversion:
    """Quote converting ``sell_amount`` (fee included) of ``from_wallet``'s
    currency into ``to_wallet``'s, valid for ``CONVERSION_QUOTE_TTL`` seconds.

    Refused (:class:`ConversionError`, or the rate selector's
    ``RateUnavailable``/``RateTooOld``): a wallet that is not the user's, one
    wallet twice or one currency twice, an amount that is not positive or has
    too many decimals, more than the wallet holds, a policy's refusal, no
    fresh rate.
    """
    _own(user, from_wallet)
    _own(user, to_wallet)
    if from_wallet.pk == to_wallet.pk:
        raise ConversionError("Choose two different wallets.")
    from_currency, to_currency = from_wallet.currency, to_wallet.currency
    if from_currency.code == to_currency.code:
        raise ConversionError("Both wallets hold the same currency; there is nothing to convert.")
    sell = _minor(sell_amount, from_currency)
    _ask(
        user,
        policies.CONVERT,
        amount=from_minor(sell, from_currency.exponent),
        currency=from_currency.code,
        to_currency=to_currency.code,
    )
    _cover(from_wallet, sell)
    mid = rate_for(from_currency, to_currency)
    math = quote_math(
        sell=sell,
        from_currency=from_currency,
        to_currency=to_currency,
        mid_rate=mid.rate,
        markup=markup_for(from_currency, to_currency),
    )
    now = timezone.now()
    return Conversion.objects.create(
        public_id=uuid.uuid4(),
        user=user,
        from_wallet=from_wallet,
        to_wallet=to_wallet,
        sell_amount=math.sell,
        fee=math.fee,
        buy_amount=math.buy,
        mid_rate=math.mid_rate,
        rate=math.rate,
        markup_percent=math.markup_percent,
        rate_source=mid.source,
        rate_as_of=mid.as_of,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.CONVERSION_QUOTE_TTL),
    )


def _locked(user, public_id) -> Conversion:
    key = as_uuid(public_id)
    conversion = (
        Conversion.objects.select_for_update(of=("self",))
        .select_related("from_wallet__currency", "to_wallet__currency")
        .filter(public_id=key, user=user)
        .first()
        if key is not None
        else None
    )
    if conversion is None:
        raise QuoteNotFound("No such quote.")
    return conversion


def _conversion_lines(conversion: Conversion) -> list[Line]:
    source, target = conversion.from_wallet, conversion.to_wallet
    net = conversion.sell_amount - conversion.fee
    lines = [Line(source, -conversion.sell_amount)]
    if conversion.fee:
        lines.append(Line(system_account(FEES, source.currency_id), conversion.fee))
    lines += [
        Line(system_account(CONVERSION, source.currency_id), net),
        Line(system_account(CONVERSION, target.currency_id), -conversion.buy_amount),
        Line(target, conversion.buy_amount),
    ]
    return lines


def _describe(conversion: Conversion) -> str:
    source, target = conversion.from_wallet.currency, conversion.to_wallet.currency
    return (
        f"Converted {format_amount(conversion.sell_amount, source)} to "
        f"{format_amount(conversion.buy_amount, target)} at {conversion.rate.normalize():f}"
    )


def _conversion_payload(conversion: Conversion) -> dict:
    source, target = conversion.from_wallet.currency, conversion.to_wallet.currency
    return {
        "conversion": str(conversion.public_id),
        "from_currency": source.code,
        "to_currency": target.code,
        "sell_amount": str(source.format_minor(conversion.sell_amount)),
        "fee": str(source.format_minor(conversion.fee)),
        "buy_amount": str(target.format_minor(conversion.buy_amount)),
        "rate": str(conversion.rate),
        "mid_rate": str(conversion.mid_rate),
        "markup_percent": str(conversion.markup_percent),
    }


def _post(conversion: Conversion, *, kind: str, key: str, user, description: str):
    try:
        return ledger_post(
            kind=kind,
            idempotency_key=key,
            lines=_conversion_lines(conversion),
            actor=user,
            description=description,
            metadata={"conversion": str(conversion.public_id)},
        )
    except InsufficientFunds as exc:
        raise _explain_insufficient(exc) from None


def _mark_executed(conversion: Conversion, journal: JournalTransaction) -> None:
    conversion.status = Conversion.EXECUTED
    conversion.journal = journal
    conversion.executed_at = timezone.now()
    conversion.save(update_fields=["status", "journal", "executed_at"])


@transaction.atomic
def conversion_execute(*, user, public_id) -> Conversion:
    """Execute the user's quote ``public_id`` if it has not expired.

    Idempotent: a quote already executed is returned as it is (with
    ``replayed = True``), nothing is posted again. Refused: someone else's
    or an unknown quote (:class:`QuoteNotFound`), an expired one
    (:class:`QuoteExpired`), a policy's refusal, funds spent meanwhile.
    """
    conversion = _locked(user, public_id)
    if conversion.status == Conversion.EXECUTED:
        conversion.replayed = True
        return conversion
    if timezone.now() > conversion.expires_at:
        raise QuoteExpired()
    source = conversion.from_wallet.currency
    _ask(
        user,
        policies.CONVERT,
        amount=source.format_minor(conversion.sell_amount),
        currency=source.code,
        to_currency=conversion.to_wallet.currency_id,
    )
    journal = _post(
        conversion,
        kind="conversion",
        key=f"conversion:{conversion.public_id}",
        user=user,
        description=_describe(conversion),
    )
    _mark_executed(conversion, journal)
    publish(
        "conversion.executed", conversion, _conversion_payload(conversion), client=user, actor=user
    )
    conversion.replayed = False
    return conversion


# --- Transfers ----------------------------------------------------------------------


def _recipient_wallet(user, email: str, currency: Currency) -> LedgerAccount:
    """Another client's wallet in ``currency``, opened for them if missing.

    Every reason not to send (no such client, a staff account, a closed
    account) gets the same message, so that the form does not tell who is a
    client here.
    """
    if not settings.TRANSFERS_TO_OTHER_CLIENTS:
        raise ConversionError("Transfers to other clients are not available.")
    address = (email or "").strip().lower()
    if not address:
        raise ConversionError("Enter the e-mail address of the client you are paying.")
    if address == user.email.lower():
        raise ConversionError("That is your own e-mail address; choose one of your wallets.")
    recipient = (
        get_user_model()
        .objects.annotate(email_lower=Lower("email"))
        .filter(email_lower=address, is_active=True, is_staff=False)
        .first()
    )
    if recipient is None:
        raise ConversionError(RECIPIENT_REFUSED)
    return wallet_open(user=recipient, currency=currency)


def _same_request(done: Transfer, source, to_wallet, amount, *, to_user_email, quote_id) -> bool:
    """Whether a request repeats the transfer ``done`` (made with its key):
    the same source, target (wallet, or the recipient's address), amount and
    quote. Reads only, so that a replay changes nothing."""
    try:
        minor = _minor(amount, source.currency)
    except ConversionError:
        return False
    if done.from_wallet_id != source.pk or done.amount != minor:
        return False
    if to_user_email:
        recipient = done.to_wallet.owner
        if recipient.pk == done.user_id or recipient.email.lower() != (
            to_user_email.strip().lower()
        ):
            return False
    elif to_wallet is None or done.to_wallet_id != to_wallet.pk:
        return False
    if done.conversion is not None:
        return as_uuid(quote_id) == done.conversion.public_id
    return True


def _replayed(transfer: Transfer) -> Transfer:
    transfer.replayed = True
    return transfer


@transaction.atomic
def transfer_execute(
    *,
    user,
    from_wallet: LedgerAccount,
    to_wallet: LedgerAccount | None,
    amount: Decimal,
    idempotency_key: str,
    to_user_email: str | None = None,
    quote_id: uuid.UUID | str | None = None,
    reference: str = "",
) -> Transfer:
    """Move ``amount`` out of ``from_wallet``, once per ``idempotency_key``.

    - To the user's own ``to_wallet``: in the same currency a plain transfer;
      in another currency only through the conversion quote ``quote_id`` the
      client was shown (same wallets, same amount, not expired).
    - To another client (``to_user_email``), only with
      ``settings.TRANSFERS_TO_OTHER_CLIENTS``: into their wallet of the same
      currency (opened for them if missing).

    The same key with the same request (wallets or recipient, amount, quote)
    returns the first transfer (``replayed = True``); with another request it
    is refused (:class:`TransferKeyReused`), as the ledger refuses a key
    reused for another posting.
    """
    _own(user, from_wallet)
    key = str(idempotency_key or "").strip()
    if not key:
        raise ConversionError("This form has expired; open the transfer page again.")
    key = f"transfer:{user.pk}:{key}"[:200]
    done = (
        Transfer.objects.filter(user=user, journal__idempotency_key=key)
        .select_related("to_wallet__owner", "conversion")
        .first()
    )
    if done is not None:
        if not _same_request(
            done, from_wallet, to_wallet, amount, to_user_email=to_user_email, quote_id=quote_id
        ):
            raise TransferKeyReused()
        return _replayed(done)
    to_other = bool(to_user_email)
    if to_other:
        target = _recipient_wallet(user, to_user_email or "", from_wallet.currency)
    else:
        if to_wallet is None:
            raise ConversionError("Choose the wallet to transfer to.")
        _own(user, to_wallet)
        target = to_wallet
    if target.pk == from_wallet.pk:
        raise ConversionError("Choose two different wallets.")
    minor = _minor(amount, from_wallet.currency)
    if target.currency_id == from_wallet.currency_id:
        transfer = _transfer_plain(user, from_wallet, target, minor, key, reference)
    else:
        transfer = _transfer_converted(user, from_wallet, target, minor, key, quote_id, reference)
    if getattr(transfer, "replayed", False):
        return transfer
    publish(
        "transfer.executed",
        transfer,
        {
            "transfer": transfer.pk,
            "from_currency": from_wallet.currency_id,
            "to_currency": target.currency_id,
            "amount": str(from_wallet.currency.format_minor(transfer.amount)),
            "credited": str(target.currency.format_minor(transfer.credited)),
            "to_other_client": to_other,
            "conversion": str(transfer.conversion.public_id) if transfer.conversion else None,
        },
        client=user,
        actor=user,
    )
    transfer.replayed = False
    return transfer


def _transfer_plain(user, source, target, minor: int, key: str, reference: str) -> Transfer:
    currency = source.currency
    to_other = target.owner_id != user.pk
    _ask(
        user,
        policies.TRANSFER,
        amount=currency.format_minor(minor),
        currency=currency.code,
        to_other_client=to_other,
    )
    _cover(source, minor)
    description = (
        f"Transfer of {format_amount(minor, currency)}"
        + (" between clients" if to_other else "")
        + (f": {reference}" if reference else "")
    )
    try:
        journal = ledger_post(
            kind="transfer",
            idempotency_key=key,
            lines=[Line(source, -minor), Line(target, minor)],
            actor=user,
            description=description,
            metadata={"from_wallet": source.pk, "to_wallet": target.pk},
        )
    except InsufficientFunds as exc:
        raise _explain_insufficient(exc) from None
    except IdempotencyConflict:
        raise TransferKeyReused() from None
    if journal.replayed:  # a concurrent request with the same key won
        return _replayed(Transfer.objects.get(journal=journal))
    return Transfer.objects.create(
        user=user,
        from_wallet=source,
        to_wallet=target,
        amount=minor,
        credited=minor,
        journal=journal,
        reference=reference[:140],
        created_at=timezone.now(),
    )


def _transfer_converted(
    user, source, target, minor: int, key: str, quote_id, reference: str
) -> Transfer:
    if not quote_id:
        raise ConversionError(
            "Wallets in different currencies: get a quote first, to see the rate you get."
        )
    conversion = _locked(user, quote_id)
    if (conversion.from_wallet_id, conversion.to_wallet_id) != (source.pk, target.pk) or (
        conversion.sell_amount != minor
    ):
        raise ConversionError("This quote is for another transfer; ask for a new one.")
    if conversion.status == Conversion.EXECUTED:
        done = Transfer.objects.filter(conversion=conversion).first()
        if done is not None:
            return _replayed(done)
        raise ConversionError("This quote was already used for a conversion; ask for a new one.")
    if timezone.now() > conversion.expires_at:
        raise QuoteExpired()
    amount = source.currency.format_minor(minor)
    _ask(
        user,
        policies.CONVERT,
        amount=amount,
        currency=source.currency_id,
        to_currency=target.currency_id,
    )
    _ask(user, policies.TRANSFER, amount=amount, currency=source.currency_id, to_other_client=False)
    try:
        journal = _post(
            conversion,
            kind="transfer",
            key=key,
            user=user,
            description=_describe(conversion).replace("Converted", "Transferred", 1)
            + (f": {reference}" if reference else ""),
        )
    except IdempotencyConflict:
        raise TransferKeyReused() from None
    _mark_executed(conversion, journal)
    return Transfer.objects.create(
        user=user,
        from_wallet=source,
        to_wallet=target,
        amount=conversion.sell_amount,
        credited=conversion.buy_amount,
        conversion=conversion,
        journal=journal,
        reference=reference[:140],
        created_at=timezone.now(),
    )
