"""Conversions between the client's wallets at a quoted rate, and transfers
(between own wallets, or to another client when the broker allows it).

The same services as the convert and transfer pages: a quote holds its rate
for ``CONVERSION_QUOTE_TTL`` seconds and executes once; a transfer across
currencies goes through such a quote (``quote_id``). A transfer is
idempotent on the client's Idempotency-Key: the same key with the same
request returns the first transfer, with another request it is refused (409).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from ..exceptions import LedgerError
from ..models import Conversion, Transfer
from ..selectors.conversions import quote_seconds_left
from ..services.conversions import (
    QuoteNotFound,
    conversion_execute,
    conversion_quote,
    transfer_execute,
)
from .common import (
    IDEMPOTENCY_PARAMETER,
    REPLAYED_HEADER,
    AmountField,
    ApiError,
    OwnWalletField,
    api_view,
    created,
    decimal_string,
    decimal_text,
    errors,
    idempotency_key,
    raise_for,
    valid,
)


def _not_found(exc: QuoteNotFound) -> ApiError:
    return ApiError(str(exc), code="not_found", status_code=status.HTTP_404_NOT_FOUND)


# --- Conversions --------------------------------------------------------------------


class QuoteRequest(serializers.Serializer):
    from_wallet = OwnWalletField(help_text="The id of your wallet to sell from.")
    to_wallet = OwnWalletField(help_text="The id of your wallet (another currency) to buy into.")
    sell_amount = AmountField(help_text="What leaves from_wallet, fee included.")


class ConversionSerializer(serializers.Serializer):
    public_id = serializers.UUIDField()
    status = serializers.CharField(help_text="quoted or executed.")
    from_wallet = serializers.IntegerField(source="from_wallet_id")
    to_wallet = serializers.IntegerField(source="to_wallet_id")
    from_currency = serializers.CharField(source="from_wallet.currency_id")
    to_currency = serializers.CharField(source="to_wallet.currency_id")
    sell_amount = serializers.SerializerMethodField(help_text="Fee included.")
    fee = serializers.SerializerMethodField(help_text="In from_currency.")
    buy_amount = serializers.SerializerMethodField(help_text="What to_wallet receives.")
    rate = serializers.SerializerMethodField(help_text="After the markup: 1 from = rate to.")
    mid_rate = serializers.SerializerMethodField()
    markup_percent = serializers.SerializerMethodField()
    rate_as_of = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    expires_in = serializers.SerializerMethodField(help_text="Seconds left (0: expired).")
    executed_at = serializers.DateTimeField(allow_null=True)

    def get_sell_amount(self, conversion: Conversion) -> str:
        return decimal_string(conversion.sell_amount, conversion.from_wallet.currency.exponent)

    def get_fee(self, conversion: Conversion) -> str:
        return decimal_string(conversion.fee, conversion.from_wallet.currency.exponent)

    def get_buy_amount(self, conversion: Conversion) -> str:
        return decimal_string(conversion.buy_amount, conversion.to_wallet.currency.exponent)

    def get_rate(self, conversion: Conversion) -> str:
        return decimal_text(conversion.rate)

    def get_mid_rate(self, conversion: Conversion) -> str:
        return decimal_text(conversion.mid_rate)

    def get_markup_percent(self, conversion: Conversion) -> str:
        return decimal_text(conversion.markup_percent)

    def get_expires_in(self, conversion: Conversion) -> int:
        if conversion.status == Conversion.EXECUTED:
            return 0
        return quote_seconds_left(conversion)


@extend_schema(
    request=QuoteRequest,
    responses={201: ConversionSerializer, **errors(400, 401, 422)},
    summary="Quote a conversion: the rate, markup, fee and amount received, held briefly",
)
@api_view(["POST"])
def quote_create(request):
    data = valid(QuoteRequest, request)
    try:
        conversion = conversion_quote(
            user=request.user,
            from_wallet=data["from_wallet"],
            to_wallet=data["to_wallet"],
            sell_amount=data["sell_amount"],
        )
    except LedgerError as exc:
        raise_for(exc)
    return Response(ConversionSerializer(conversion).data, status=status.HTTP_201_CREATED)


@extend_schema(
    request=None,
    responses={200: ConversionSerializer, **errors(401, 404, 422)},
    summary="Execute your quote (once; an expired quote is refused with 422)",
    description="Executing an executed quote again returns it, with the header "
    f"{REPLAYED_HEADER}: true, and moves nothing.",
)
@api_view(["POST"])
def quote_execute(request, public_id: str):
    try:
        conversion = conversion_execute(user=request.user, public_id=public_id)
    except QuoteNotFound as exc:
        raise _not_found(exc) from exc
    except LedgerError as exc:
        raise_for(exc)
    response = Response(ConversionSerializer(conversion).data)
    if conversion.replayed:
        response[REPLAYED_HEADER] = "true"
    return response


# --- Transfers ----------------------------------------------------------------------


class TransferRequest(serializers.Serializer):
    from_wallet = OwnWalletField(help_text="The id of your wallet to send from.")
    to_wallet = OwnWalletField(
        required=False, help_text="The id of your wallet to send to (or to_email)."
    )
    to_email = serializers.EmailField(
        required=False,
        max_length=254,
        help_text="Another client's e-mail address, when the broker allows transfers to "
        "other clients (with currency).",
    )
    currency = serializers.CharField(
        required=False,
        max_length=8,
        help_text="With to_email: the currency sent, which is from_wallet's (the recipient "
        "receives it in their wallet of that currency).",
    )
    amount = AmountField(help_text="What leaves from_wallet, in its currency.")
    quote_id = serializers.UUIDField(
        required=False,
        help_text="Between wallets of different currencies: the public_id of your quote for "
        "exactly this transfer (same wallets and amount).",
    )
    reference = serializers.CharField(
        required=False, allow_blank=True, max_length=140, help_text="A note for yourself."
    )

    def validate(self, data: dict) -> dict:
        if ("to_wallet" in data) == ("to_email" in data):
            raise serializers.ValidationError("Send either to_wallet, or to_email with currency.")
        if "to_email" in data:
            source = data["from_wallet"].currency_id
            if "currency" not in data:
                raise serializers.ValidationError(
                    {"currency": f"Say which currency you send: {source}, from_wallet's."}
                )
            if data["currency"].strip().upper() != source:
                raise serializers.ValidationError(
                    {
                        "currency": "A transfer to another client is made in from_wallet's "
                        f"currency ({source}); convert first to send another currency."
                    }
                )
        return data


class TransferSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    from_wallet = serializers.IntegerField(source="from_wallet_id")
    from_currency = serializers.CharField(source="from_wallet.currency_id")
    amount = serializers.SerializerMethodField(help_text="What left from_wallet.")
    to_wallet = serializers.SerializerMethodField(help_text="Your wallet (null: another client's).")
    to_email = serializers.SerializerMethodField(help_text="The other client's address.")
    to_currency = serializers.CharField(source="to_wallet.currency_id")
    credited = serializers.SerializerMethodField(help_text="What the target wallet received.")
    conversion = serializers.SerializerMethodField(help_text="The quote's public_id, if any.")
    reference = serializers.CharField()
    created_at = serializers.DateTimeField()

    def _own(self, transfer: Transfer) -> bool:
        return transfer.to_wallet.owner_id == transfer.user_id

    def get_amount(self, transfer: Transfer) -> str:
        return decimal_string(transfer.amount, transfer.from_wallet.currency.exponent)

    def get_credited(self, transfer: Transfer) -> str:
        return decimal_string(transfer.credited, transfer.to_wallet.currency.exponent)

    def get_to_wallet(self, transfer: Transfer) -> int | None:
        return transfer.to_wallet_id if self._own(transfer) else None

    def get_to_email(self, transfer: Transfer) -> str | None:
        return None if self._own(transfer) else transfer.to_wallet.owner.email

    def get_conversion(self, transfer: Transfer) -> str | None:
        return str(transfer.conversion.public_id) if transfer.conversion_id else None


@extend_schema(
    request=TransferRequest,
    parameters=[IDEMPOTENCY_PARAMETER],
    responses={201: TransferSerializer, **errors(400, 401, 404, 409, 422)},
    summary="Transfer between your wallets, or to another client",
    description=(
        "Across currencies, get a quote first (POST /api/v1/conversions/quotes/) and send "
        "its public_id as quote_id: an expired quote is 422 `quote_expired`, a quote that "
        "is not yours 404. Not enough funds: 422 `insufficient_funds`."
    ),
)
@api_view(["POST"])
def transfer_create(request):
    key = idempotency_key(request)
    data = valid(TransferRequest, request)
    try:
        transfer = transfer_execute(
            user=request.user,
            from_wallet=data["from_wallet"],
            to_wallet=data.get("to_wallet"),
            amount=data["amount"],
            idempotency_key=key,
            to_user_email=data.get("to_email"),
            quote_id=data.get("quote_id"),
            reference=(data.get("reference") or "").strip(),
        )
    except QuoteNotFound as exc:
        raise _not_found(exc) from exc
    except LedgerError as exc:
        raise_for(exc)
    return created(TransferSerializer(transfer).data, replayed=transfer.replayed)
