"""Withdrawals: the quote (fee, total reserved, balance after), the request
(amount and fee reserved at once; the 2FA code when 2FA is on), the
client's withdrawals, cancel while pending.

The same services as the withdrawal page. ``withdrawal_request`` is
idempotent on a key of its own (per user): the API passes the client's
Idempotency-Key (scoped), so a retried request reserves once. Before that,
the API looks the key up itself, to answer 409 when the key was used for
another request (other wallet, method, amount or destination), where the
page would just say so.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from accounts.selectors import profile_for_user
from backoffice.money import MoneyError, to_minor

from ..models import PaymentMethod, Withdrawal
from ..policies import can_withdraw
from ..selectors import withdrawals as selectors
from ..services import withdrawals as services
from ..services.withdrawals import WithdrawalError
from .common import (
    IDEMPOTENCY_PARAMETER,
    LIMIT_PARAMETER,
    AmountField,
    ApiError,
    ListedMethodField,
    OwnWalletField,
    api_view,
    created,
    decimal_string,
    errors,
    idempotency_key,
    list_limit,
    raise_for,
    valid,
)

KEY_REUSED = (
    "This Idempotency-Key was already used for another withdrawal request (another "
    "wallet, method, amount or destination). Use a new key for a new request. "
    "Nothing was reserved."
)


def _methods(user) -> list[PaymentMethod]:
    country = profile_for_user(user=user).country
    return selectors.withdrawal_methods(country=getattr(country, "code", "") or "")


class WithdrawalQuoteRequest(serializers.Serializer):
    wallet = OwnWalletField(help_text="The id of your wallet to withdraw from.")
    method = ListedMethodField(help_text="A method id from /api/v1/payment-methods/.")
    amount = AmountField(help_text="What you receive; the fee is reserved on top of it.")


class WithdrawalRequest(WithdrawalQuoteRequest):
    destination = serializers.DictField(
        child=serializers.CharField(allow_blank=True, max_length=140),
        required=False,
        default=dict,
        help_text="Where the money goes, by the method's destination_fields: iban and "
        "account_holder (bank), address (crypto), card_last4 (card, optional).",
    )
    otp_code = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=16,
        help_text="The code from your authenticator app, when 2FA is on.",
    )


class WithdrawalQuoteSerializer(serializers.Serializer):
    wallet = serializers.IntegerField(source="wallet.pk")
    currency = serializers.CharField(source="wallet.currency_id")
    method = serializers.IntegerField(source="method.pk")
    amount = serializers.SerializerMethodField()
    fee = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField(help_text="Reserved now: amount plus fee.")
    balance = serializers.SerializerMethodField()
    balance_after = serializers.SerializerMethodField(help_text="Negative: not enough funds.")

    def _money(self, quote, minor: int) -> str:
        return decimal_string(minor, quote.wallet.currency.exponent)

    def get_amount(self, quote) -> str:
        return self._money(quote, quote.amount)

    def get_fee(self, quote) -> str:
        return self._money(quote, quote.fee)

    def get_total(self, quote) -> str:
        return self._money(quote, quote.total)

    def get_balance(self, quote) -> str:
        return self._money(quote, quote.wallet.balance)

    def get_balance_after(self, quote) -> str:
        return self._money(quote, quote.balance_after)


class WithdrawalSerializer(serializers.Serializer):
    reference = serializers.CharField()
    status = serializers.CharField(
        help_text="pending, approved, paid, rejected or cancelled (only pending cancels)."
    )
    wallet = serializers.IntegerField(source="wallet_id")
    currency = serializers.CharField(source="wallet.currency_id")
    method = serializers.IntegerField(source="method_id")
    method_name = serializers.CharField(source="method.name")
    amount = serializers.SerializerMethodField()
    fee = serializers.SerializerMethodField()
    total = serializers.SerializerMethodField()
    destination = serializers.DictField(child=serializers.CharField())
    decision_reason = serializers.CharField(help_text="Why it was rejected, if it was.")
    payout_reference = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_amount(self, withdrawal) -> str:
        return decimal_string(withdrawal.amount, withdrawal.wallet.currency.exponent)

    def get_fee(self, withdrawal) -> str:
        return decimal_string(withdrawal.fee, withdrawal.wallet.currency.exponent)

    def get_total(self, withdrawal) -> str:
        return decimal_string(
            withdrawal.amount + withdrawal.fee, withdrawal.wallet.currency.exponent
        )


@extend_schema(
    request=WithdrawalQuoteRequest,
    responses={200: WithdrawalQuoteSerializer, **errors(400, 401, 422)},
    summary="The fee and the total reserved (nothing is reserved)",
)
@api_view(["POST"])
def withdrawal_quote(request):
    data = valid(WithdrawalQuoteRequest, request, methods=_methods(request.user))
    try:
        quote = services.withdrawal_quote(
            user=request.user, wallet=data["wallet"], method=data["method"], amount=data["amount"]
        )
    except WithdrawalError as exc:
        raise_for(exc)
    decision = can_withdraw(request.user, quote.amount_major, quote.wallet.currency_id)
    if not decision:
        raise_for(
            WithdrawalError(
                decision.reason or "You cannot withdraw at the moment.",
                unlock=decision.unlock,
                unlock_url=decision.unlock_url,
            )
        )
    return Response(WithdrawalQuoteSerializer(quote).data)


def _repeats(withdrawal: Withdrawal, data: dict) -> bool:
    """Whether the request is the one that created ``withdrawal``."""
    try:
        amount = to_minor(data["amount"], withdrawal.wallet.currency.exponent)
        destination = services.destination_clean(method=data["method"], data=data["destination"])
    except (MoneyError, WithdrawalError):
        return False
    return (
        withdrawal.wallet_id == data["wallet"].pk
        and withdrawal.method_id == data["method"].pk
        and withdrawal.amount == amount
        and withdrawal.destination == destination
    )


def _refused(exc: WithdrawalError, data: dict) -> None:
    if exc.field == "otp_code":
        if not (data.get("otp_code") or "").strip():
            raise ApiError(str(exc), code="otp_required") from exc
        raise ApiError(str(exc), code="otp_invalid", status_code=status.HTTP_403_FORBIDDEN) from exc
    if exc.field in services.DESTINATION_LABELS:
        raise ApiError(
            str(exc), code="invalid", errors={"destination": {exc.field: [str(exc)]}}
        ) from exc
    if exc.field == "amount" and str(exc).startswith("Insufficient funds"):
        raise_for(exc, code="insufficient_funds")
    raise_for(exc)


@extend_schema(
    methods=["GET"],
    parameters=[LIMIT_PARAMETER],
    responses={200: WithdrawalSerializer(many=True), **errors(400, 401)},
    summary="Your latest withdrawals, newest first",
)
@extend_schema(
    methods=["POST"],
    request=WithdrawalRequest,
    parameters=[IDEMPOTENCY_PARAMETER],
    responses={201: WithdrawalSerializer, **errors(400, 401, 403, 409, 422)},
    summary="Ask to withdraw: amount and fee are reserved at once",
    description=(
        "When 2FA is on, send `otp_code`: without it the answer is 400 `otp_required`, "
        "with a wrong one 403 `otp_invalid`. Not enough funds: 422 `insufficient_funds`. "
        "A replay with the same Idempotency-Key returns the first withdrawal (no new 2FA "
        "code needed) and reserves nothing more."
    ),
)
@api_view(["GET", "POST"])
def withdrawal_collection(request):
    if request.method == "POST":
        return _withdrawal_create(request)
    return _withdrawal_list(request)


def _withdrawal_create(request):
    key = idempotency_key(request)
    data = valid(WithdrawalRequest, request, methods=_methods(request.user))
    # The service's own key for this client key (a private helper, so that
    # the two never disagree about how a key is scoped).
    service_key = services._request_key(request.user, key)
    existing = selectors.withdrawal_for_request(user=request.user, key=service_key)
    if existing is not None:
        if not _repeats(existing, data):
            raise ApiError(KEY_REUSED, code="idempotency_conflict", status_code=409)
        return created(WithdrawalSerializer(existing).data, replayed=True)
    try:
        withdrawal = services.withdrawal_request(
            user=request.user,
            wallet=data["wallet"],
            method=data["method"],
            amount=data["amount"],
            destination=data["destination"],
            otp_code=data.get("otp_code"),
            idempotency_key=key,
        )
    except WithdrawalError as exc:
        if selectors.withdrawal_for_request(user=request.user, key=service_key) is not None:
            # A request with this key and other details won a race with this one.
            raise ApiError(KEY_REUSED, code="idempotency_conflict", status_code=409) from exc
        _refused(exc, data)
    return created(WithdrawalSerializer(withdrawal).data, replayed=withdrawal.replayed)


def _withdrawal_list(request):
    withdrawals = selectors.withdrawals_for_user(user=request.user, limit=list_limit(request))
    return Response(WithdrawalSerializer(withdrawals, many=True).data)


@extend_schema(responses={200: WithdrawalSerializer, **errors(401, 404)}, summary="One withdrawal")
@api_view(["GET"])
def withdrawal_detail(request, reference: str):
    withdrawal = selectors.withdrawal_get_for_user(user=request.user, reference=reference)
    return Response(WithdrawalSerializer(withdrawal).data)


@extend_schema(
    request=None,
    responses={200: WithdrawalSerializer, **errors(401, 404, 422)},
    summary="Cancel a pending withdrawal: the reserve returns to the wallet",
)
@api_view(["POST"])
def withdrawal_cancel(request, reference: str):
    withdrawal = selectors.withdrawal_get_for_user(user=request.user, reference=reference)
    try:
        withdrawal = services.withdrawal_cancel(user=request.user, withdrawal=withdrawal)
    except WithdrawalError as exc:
        raise_for(exc)
    return Response(WithdrawalSerializer(withdrawal).data)
