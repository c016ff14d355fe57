"""Deposits: the quote (fee, what the wallet receives, the rate), creating and
starting one with its provider, the client's deposits.

The same services as the deposit page (``deposit_quote``, ``deposit_create``,
``deposit_start``) with the same checks: only the client's own wallet, only a
method this client may use (country, currency, enabled), the limits and the
policies.

Idempotency: creating a deposit is not idempotent (deposits have no request
key to find a first one by). It needs none for safety: a deposit moves no
money until the provider (or Finance, for a wire) confirms a payment for its
own reference, so a retried request at worst leaves a second deposit that is
never paid; it stays pending and then fails at the provider. An
Idempotency-Key header is not used here.
"""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from ..models import Deposit
from ..providers import psp_for
from ..selectors import deposits as selectors
from ..services.deposits import DepositError, deposit_create, deposit_quote, deposit_start
from .common import (
    LIMIT_PARAMETER,
    AmountField,
    ApiError,
    ListedMethodField,
    OwnWalletField,
    api_view,
    decimal_string,
    decimal_text,
    errors,
    list_limit,
    raise_for,
    valid,
)

WAITING = (Deposit.CREATED, Deposit.PENDING)


class DepositRequest(serializers.Serializer):
    wallet = OwnWalletField(help_text="The id of your wallet to credit.")
    method = ListedMethodField(help_text="A method id from /api/v1/payment-methods/.")
    amount = AmountField(
        help_text="What you pay, in the method's provider_currency when it has one, "
        "otherwise in the wallet's currency; the fee is taken from it."
    )


class DepositQuoteSerializer(serializers.Serializer):
    method = serializers.IntegerField(source="method.pk")
    currency = serializers.CharField(source="currency.code", help_text="The currency you pay in.")
    amount = serializers.SerializerMethodField()
    fee = serializers.SerializerMethodField()
    wallet_currency = serializers.CharField(source="wallet_currency.code")
    credit_amount = serializers.SerializerMethodField(help_text="What the wallet receives.")
    rate = serializers.SerializerMethodField(
        help_text="1 currency = rate wallet_currency, when they differ (else null)."
    )

    def get_amount(self, quote) -> str:
        return decimal_string(quote.amount, quote.currency.exponent)

    def get_fee(self, quote) -> str:
        return decimal_string(quote.fee, quote.currency.exponent)

    def get_credit_amount(self, quote) -> str:
        return decimal_string(quote.credit_amount, quote.wallet_currency.exponent)

    def get_rate(self, quote) -> str | None:
        return decimal_text(quote.rate)


class DepositSerializer(serializers.Serializer):
    reference = serializers.CharField()
    status = serializers.CharField(help_text="created, pending, completed, failed or flagged.")
    wallet = serializers.IntegerField(source="wallet_id")
    wallet_currency = serializers.CharField(source="wallet.currency_id")
    method = serializers.IntegerField(source="method_id")
    method_name = serializers.CharField(source="method.name")
    currency = serializers.CharField(source="currency_id", help_text="The currency paid in.")
    amount = serializers.SerializerMethodField()
    fee = serializers.SerializerMethodField()
    credit_amount = serializers.SerializerMethodField()
    rate = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)

    def get_amount(self, deposit) -> str:
        return decimal_string(deposit.amount, deposit.currency.exponent)

    def get_fee(self, deposit) -> str:
        return decimal_string(deposit.fee, deposit.currency.exponent)

    def get_credit_amount(self, deposit) -> str:
        return decimal_string(deposit.credit_amount, deposit.wallet.currency.exponent)

    def get_rate(self, deposit) -> str | None:
        return decimal_text(deposit.rate)


class PaymentDetailSerializer(serializers.Serializer):
    label = serializers.CharField()
    value = serializers.CharField()


class DepositDetailSerializer(DepositSerializer):
    payment_details = PaymentDetailSerializer(
        many=True,
        help_text="While the deposit waits for a payment by hand (a bank wire): what to pay "
        "and where, with the reference to quote. Empty otherwise.",
    )


class DepositCreatedSerializer(DepositDetailSerializer):
    redirect_url = serializers.CharField(
        allow_null=True, help_text="Send the client here to pay (a hosted checkout)."
    )
    instructions = serializers.CharField(
        allow_blank=True, help_text="Or show them this (e.g. bank details with the reference)."
    )


def _payment_details(deposit: Deposit) -> list[dict]:
    if deposit.status not in WAITING:
        return []
    rows = psp_for(deposit.provider).deposit_instructions(deposit)
    return [{"label": label, "value": value} for label, value in rows]


@extend_schema(
    request=DepositRequest,
    responses={200: DepositQuoteSerializer, **errors(400, 401, 422)},
    summary="The fee and what the wallet receives (nothing is created)",
)
@api_view(["POST"])
def deposit_quote_view(request):
    data = valid(DepositRequest, request, methods=selectors.deposit_methods_for(user=request.user))
    try:
        quote = deposit_quote(
            user=request.user,
            method=data["method"],
            wallet_currency=data["wallet"].currency,
            amount=data["amount"],
        )
    except DepositError as exc:
        raise_for(exc)
    return Response(DepositQuoteSerializer(quote).data)


@extend_schema(
    methods=["GET"],
    parameters=[LIMIT_PARAMETER],
    responses={200: DepositSerializer(many=True), **errors(400, 401)},
    summary="Your latest deposits, newest first",
)
@extend_schema(
    methods=["POST"],
    request=DepositRequest,
    responses={201: DepositCreatedSerializer, **errors(400, 401, 422, 502)},
    summary="Create a deposit and start it with the provider",
    description=(
        "Answers where to send the client (`redirect_url`) or what to show them "
        "(`instructions`, `payment_details`). The wallet is credited when the provider "
        "confirms the payment; follow the deposit's status with GET.\n\n"
        "Not idempotent: a retried request may create a second deposit. That is harmless, "
        "as a deposit moves no money until its own payment is confirmed; an unpaid one "
        "stays pending and then fails. When the provider refuses to start, the answer is "
        "502 with the deposit's `reference` (the deposit is failed, nothing was charged)."
    ),
)
@api_view(["GET", "POST"])
def deposit_collection(request):
    if request.method == "POST":
        return _deposit_create(request)
    return _deposit_list(request)


def _deposit_create(request):
    data = valid(DepositRequest, request, methods=selectors.deposit_methods_for(user=request.user))
    try:
        deposit = deposit_create(
            user=request.user, wallet=data["wallet"], method=data["method"], amount=data["amount"]
        )
    except DepositError as exc:
        raise_for(exc)
    page = reverse("payments:deposit_detail", args=[deposit.reference])
    try:
        start = deposit_start(deposit=deposit, return_url=request.build_absolute_uri(page))
    except DepositError as exc:
        raise ApiError(
            str(exc),
            code="provider_error",
            status_code=status.HTTP_502_BAD_GATEWAY,
            reference=deposit.reference,
        ) from exc
    body = {
        **DepositSerializer(deposit).data,
        "payment_details": _payment_details(deposit),
        "redirect_url": start.redirect_url or None,
        "instructions": start.instructions,
    }
    return Response(body, status=status.HTTP_201_CREATED)


def _deposit_list(request):
    limit = list_limit(request)
    deposits = selectors.deposits_recent_for_user(user=request.user, limit=limit)
    return Response(DepositSerializer(deposits, many=True).data)


@extend_schema(
    responses={200: DepositDetailSerializer, **errors(401, 404)},
    summary="One of your deposits",
)
@api_view(["GET"])
def deposit_detail(request, reference: str):
    deposit = selectors.deposit_get_for_user(user=request.user, reference=reference)
    return Response(
        {**DepositSerializer(deposit).data, "payment_details": _payment_details(deposit)}
    )
