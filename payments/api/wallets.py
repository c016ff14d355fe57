"""Wallets and their history."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from .. import selectors, services
from ..exceptions import LedgerError
from ..forms import HistoryFilterForm, kind_label
from .common import decimal_string, raise_for


class WalletSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    currency = serializers.CharField(source="currency_id")
    balance = serializers.SerializerMethodField()

    def get_balance(self, wallet) -> str:
        return decimal_string(wallet.balance, wallet.currency.exponent)


class WalletOpenRequest(serializers.Serializer):
    currency = serializers.CharField(max_length=8)


class EntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    type = serializers.SerializerMethodField()
    type_label = serializers.SerializerMethodField()
    description = serializers.CharField(source="transaction.description")
    amount = serializers.SerializerMethodField()
    balance_after = serializers.SerializerMethodField()

    def get_type(self, entry) -> str:
        return entry.transaction.kind

    def get_type_label(self, entry) -> str:
        return kind_label(entry.transaction.kind)

    def get_amount(self, entry) -> str:
        return decimal_string(entry.amount, self.context["exponent"])

    def get_balance_after(self, entry) -> str | None:
        return decimal_string(entry.balance_after, self.context["exponent"])


class HistoryPageSerializer(serializers.Serializer):
    entries = EntrySerializer(many=True)
    next_cursor = serializers.IntegerField(allow_null=True)


@extend_schema(responses=WalletSerializer(many=True), summary="Your wallets")
@api_view(["GET"])
def wallet_list(request):
    return Response(WalletSerializer(selectors.wallets_for_user(user=request.user), many=True).data)


@extend_schema(
    request=WalletOpenRequest,
    responses={201: WalletSerializer},
    summary="Open a wallet in a currency (idempotent)",
)
@api_view(["POST"])
def wallet_open(request):
    form = WalletOpenRequest(data=request.data)
    form.is_valid(raise_exception=True)
    try:
        wallet = services.wallet_open(user=request.user, currency=form.validated_data["currency"])
    except LedgerError as exc:
        raise_for(exc)
    wallet = selectors.wallet_get_for_user(user=request.user, wallet_id=wallet.pk)
    return Response(WalletSerializer(wallet).data, status=201)


@extend_schema(responses=WalletSerializer, summary="One of your wallets")
@api_view(["GET"])
def wallet_detail(request, wallet_id: int):
    wallet = selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_id)
    return Response(WalletSerializer(wallet).data)


@extend_schema(
    parameters=[
        OpenApiParameter("type", str, description="A transaction type, e.g. deposit"),
        OpenApiParameter("date_from", str, description="From this date (YYYY-MM-DD)"),
        OpenApiParameter("date_to", str, description="Up to and including this date"),
        OpenApiParameter("before", int, description="next_cursor of the previous page"),
    ],
    responses=HistoryPageSerializer,
    summary="A wallet's history, newest first (keyset pages)",
)
@api_view(["GET"])
def wallet_history(request, wallet_id: int):
    wallet = selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_id)
    form = HistoryFilterForm(request.query_params)
    if not form.is_valid():
        raise serializers.ValidationError(form.errors.get_json_data())
    page = selectors.wallet_history(wallet=wallet, limit=50, **form.history_filters())
    serializer = HistoryPageSerializer(
        {"entries": page.entries, "next_cursor": page.next_cursor},
        context={"exponent": wallet.currency.exponent},
    )
    return Response(serializer.data)
