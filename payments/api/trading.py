"""Money between the client's wallets and live trading accounts: a preview
of the figures (rate and fee across currencies), the transfer itself, the
account's latest transfers and one transfer's status to poll.

The same services as the transfer page (``payments.services.trading``). A
transfer is accepted at once (202) and finished by a worker, which calls
the trading platform: ``status`` goes from ``pending`` to ``completed`` or
``failed`` (with ``error`` saying why; a transfer in is then given back to
the wallet). It is idempotent on the client's Idempotency-Key: the same key
with the same request returns the first transfer, with another request it
is refused (409). A demo account, like another client's account or
transfer, is a 404 (a demo account takes no transfers).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.models import TradingAccount

from ..exceptions import LedgerError
from ..models import Currency, TradingTransfer
from ..selectors import trading as selectors
from ..services.trading import (
    TradingTransferKeyReused,
    TransferFigures,
    trading_transfer_in,
    trading_transfer_out,
    transfer_figures,
)
from .common import (
    IDEMPOTENCY_PARAMETER,
    LIMIT_PARAMETER,
    REPLAYED_HEADER,
    AmountField,
    ApiError,
    OwnWalletField,
    api_view,
    decimal_string,
    decimal_text,
    errors,
    idempotency_key,
    list_limit,
    raise_for,
    valid,
)

KEY_REUSED = (
    "This Idempotency-Key was already used for another transfer (another direction, "
    "account, wallet or amount). Use a new key for a new transfer. Nothing was moved."
)


class TradingTransferRequest(serializers.Serializer):
    direction = serializers.ChoiceField(
        choices=[TradingTransfer.IN, TradingTransfer.OUT],
        help_text="in: from the wallet to the trading account; out: back to the wallet.",
    )
    wallet = OwnWalletField(help_text="The id of your wallet.")
    amount = AmountField(
        help_text="In: what leaves the wallet, in its currency. Out: what leaves the trading "
        "account, in its currency."
    )


def _account_currency(account: TradingAccount, cache: dict) -> Currency | None:
    """The ledger currency of the account's currency (read once per response)."""
    if account.currency not in cache:
        cache[account.currency] = Currency.objects.filter(code=account.currency).first()
    return cache[account.currency]


def _account_money(minor: int, account: TradingAccount) -> str:
    return decimal_string(minor, account.currency_digits)


class TradingTransferSerializer(serializers.Serializer):
    reference = serializers.CharField(help_text="Poll GET /api/v1/trading-transfers/{reference}/.")
    status = serializers.CharField(
        help_text="pending, sending, unknown (being checked with the platform), completed "
        "or failed (see error; a transfer in is given back to the wallet)."
    )
    direction = serializers.CharField(help_text="in or out.")
    account = serializers.IntegerField(source="trading_account_id")
    login = serializers.CharField(source="trading_account.login")
    wallet = serializers.IntegerField(source="wallet_id")
    wallet_currency = serializers.CharField(source="wallet.currency_id")
    wallet_amount = serializers.SerializerMethodField(
        help_text="What leaves (in) or reaches (out) the wallet."
    )
    account_currency = serializers.CharField(source="trading_account.currency")
    account_amount = serializers.SerializerMethodField(
        help_text="What reaches (in) or leaves (out) the trading account."
    )
    rate = serializers.SerializerMethodField(
        help_text="When the currencies differ: 1 of the currency sold = rate of the other."
    )
    fee = serializers.SerializerMethodField(help_text="The conversion fee, in fee_currency.")
    fee_currency = serializers.SerializerMethodField()
    error = serializers.CharField(help_text="Why it failed (or what is being retried).")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)

    def get_wallet_amount(self, transfer: TradingTransfer) -> str:
        return decimal_string(transfer.amount, transfer.wallet.currency.exponent)

    def get_account_amount(self, transfer: TradingTransfer) -> str:
        return _account_money(transfer.account_amount, transfer.trading_account)

    def get_rate(self, transfer: TradingTransfer) -> str | None:
        return decimal_text(transfer.rate)

    def _fee_currency(self, transfer: TradingTransfer) -> Currency | None:
        if transfer.direction == TradingTransfer.IN:
            return transfer.wallet.currency
        cache = self.context.setdefault("currencies", {})
        return _account_currency(transfer.trading_account, cache)

    def get_fee(self, transfer: TradingTransfer) -> str:
        if transfer.rate is None or not transfer.fee:
            return "0"
        currency = self._fee_currency(transfer)
        return decimal_string(int(transfer.fee), currency.exponent) if currency else "0"

    def get_fee_currency(self, transfer: TradingTransfer) -> str:
        if transfer.direction == TradingTransfer.IN:
            return transfer.wallet.currency_id
        return transfer.trading_account.currency


class TradingTransferPreviewSerializer(serializers.Serializer):
    direction = serializers.CharField()
    wallet = serializers.IntegerField()
    wallet_currency = serializers.CharField()
    wallet_amount = serializers.CharField(help_text="What leaves (in) or reaches (out) the wallet.")
    wallet_balance = serializers.CharField()
    account_currency = serializers.CharField()
    account_amount = serializers.CharField(
        help_text="What reaches (in) or leaves (out) the trading account."
    )
    free_margin = serializers.CharField(
        allow_null=True,
        help_text="As the platform last reported it (null: never reported); the platform decides.",
    )
    rate = serializers.CharField(
        allow_null=True, help_text="1 of the currency sold = rate of the other (null: same)."
    )
    mid_rate = serializers.CharField(allow_null=True, help_text="Before the markup.")
    markup_percent = serializers.CharField(allow_null=True)
    fee = serializers.CharField(help_text="The conversion fee, in fee_currency.")
    fee_currency = serializers.CharField()
    first_transfer_minimum = serializers.CharField(
        allow_null=True,
        help_text="While the account was never funded: the smallest first transfer in, in "
        "the account's currency (null: none).",
    )


def _preview(
    account: TradingAccount, wallet, figures: TransferFigures, minimum
) -> dict[str, object]:
    math = figures.math
    if figures.direction == TradingTransfer.IN:
        fee_currency: Currency | None = wallet.currency
    else:
        fee_currency = _account_currency(account, {wallet.currency_id: wallet.currency})
    fee = "0"
    if math is not None and math.fee and fee_currency is not None:
        fee = decimal_string(math.fee, fee_currency.exponent)
    return {
        "direction": figures.direction,
        "wallet": wallet.pk,
        "wallet_currency": wallet.currency_id,
        "wallet_amount": decimal_string(figures.wallet_minor, wallet.currency.exponent),
        "wallet_balance": decimal_string(wallet.balance, wallet.currency.exponent),
        "account_currency": account.currency,
        "account_amount": _account_money(figures.account_minor, account),
        "free_margin": _account_money(account.free_margin, account)
        if account.state_updated_at is not None
        else None,
        "rate": decimal_text(math.rate) if math else None,
        "mid_rate": decimal_text(math.mid_rate) if math else None,
        "markup_percent": decimal_text(math.markup_percent) if math else None,
        "fee": fee,
        "fee_currency": wallet.currency_id
        if figures.direction == TradingTransfer.IN
        else account.currency,
        "first_transfer_minimum": decimal_text(minimum) if minimum is not None else None,
    }


def _refused(exc: LedgerError) -> None:
    if isinstance(exc, TradingTransferKeyReused):
        raise ApiError(KEY_REUSED, code="idempotency_conflict", status_code=409) from exc
    decision = getattr(exc, "decision", None)
    if decision is not None and not decision.allowed:
        raise_for(exc, code="not_allowed")
    if str(exc).startswith("Insufficient funds"):
        raise_for(exc, code="insufficient_funds")
    raise_for(exc)


@extend_schema(
    request=TradingTransferRequest,
    responses={200: TradingTransferPreviewSerializer, **errors(400, 401, 404, 422)},
    summary="What a transfer would move: amounts, rate and fee (nothing is moved)",
)
@api_view(["POST"])
def trading_transfer_preview(request, account_id: int):
    account = selectors.trading_account_get_for_transfer(user=request.user, account_id=account_id)
    data = valid(TradingTransferRequest, request)
    try:
        figures = transfer_figures(
            direction=data["direction"],
            wallet=data["wallet"],
            account=account,
            amount=data["amount"],
        )
    except LedgerError as exc:
        _refused(exc)
    minimum = (
        selectors.first_transfer_minimum(account)
        if data["direction"] == TradingTransfer.IN
        else None
    )
    return Response(
        TradingTransferPreviewSerializer(_preview(account, data["wallet"], figures, minimum)).data
    )


@extend_schema(
    methods=["GET"],
    parameters=[LIMIT_PARAMETER],
    responses={200: TradingTransferSerializer(many=True), **errors(400, 401, 404)},
    summary="The account's latest transfers, newest first",
)
@extend_schema(
    methods=["POST"],
    request=TradingTransferRequest,
    parameters=[IDEMPOTENCY_PARAMETER],
    responses={202: TradingTransferSerializer, **errors(400, 401, 404, 409, 422)},
    summary="Move money between a wallet and the trading account (accepted, then done)",
    description=(
        "202: accepted; the wallet is debited at once for a transfer in, the platform is "
        "then called by a worker: poll the transfer until `status` is completed or failed. "
        "Refusals are 422 with `detail` in words: `insufficient_funds`, `not_allowed` (with "
        "`unlock`, what would allow it), `refused` (e.g. below the first transfer's minimum, "
        "more than the free margin), `rate_unavailable`. A replay with the same "
        f"Idempotency-Key returns the first transfer (header {REPLAYED_HEADER}: true) and "
        "moves nothing more; the same key for another transfer is 409."
    ),
)
@api_view(["GET", "POST"])
def trading_transfer_collection(request, account_id: int):
    if request.method == "POST":
        return _trading_transfer_create(request, account_id)
    account = selectors.trading_account_get_for_transfer(user=request.user, account_id=account_id)
    transfers = selectors.trading_transfers_recent(account=account, limit=list_limit(request))
    return Response(TradingTransferSerializer(transfers, many=True).data)


def _trading_transfer_create(request, account_id: int) -> Response:
    key = idempotency_key(request)
    account = selectors.trading_account_get_for_transfer(user=request.user, account_id=account_id)
    data = valid(TradingTransferRequest, request)
    service = (
        trading_transfer_in if data["direction"] == TradingTransfer.IN else trading_transfer_out
    )
    try:
        done = service(
            user=request.user,
            account=account,
            wallet=data["wallet"],
            amount=data["amount"],
            idempotency_key=key,
        )
    except LedgerError as exc:
        _refused(exc)
    replayed = bool(getattr(done, "replayed", False))
    # Read again: a worker (or an eager task) may have moved it on already.
    transfer = selectors.trading_transfer_get_for_user(user=request.user, reference=done.reference)
    response = Response(TradingTransferSerializer(transfer).data, status=status.HTTP_202_ACCEPTED)
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return response


@extend_schema(
    responses={200: TradingTransferSerializer, **errors(401, 404)},
    summary="One of your trading transfers (poll it for its status)",
)
@api_view(["GET"])
def trading_transfer_detail(request, reference: str):
    transfer = selectors.trading_transfer_get_for_user(user=request.user, reference=reference)
    return Response(TradingTransferSerializer(transfer).data)
