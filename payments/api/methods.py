"""The payment methods the signed-in client may use: the same lists as the
deposit and withdrawal pages (enabled methods of enabled providers, for the
client's country), optionally for one wallet currency."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from accounts.selectors import profile_for_user

from ..models import PaymentMethod
from ..selectors import deposits as deposit_selectors
from ..selectors import withdrawals as withdrawal_selectors
from ..services.withdrawals import DESTINATION_FIELDS
from .common import api_view, decimal_text, errors

DEPOSIT, WITHDRAWAL = "deposit", "withdrawal"


class MethodsQuery(serializers.Serializer):
    direction = serializers.ChoiceField([DEPOSIT, WITHDRAWAL])
    currency = serializers.RegexField(r"^[A-Za-z0-9]{2,8}$", required=False)

    def validate_currency(self, value: str) -> str:
        return value.upper()


class PaymentMethodSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    icon = serializers.CharField(help_text="bank, card, crypto or wallet.")
    currencies = serializers.SerializerMethodField(help_text="The wallet currencies it serves.")
    provider_currency = serializers.CharField(
        source="provider_currency_id",
        allow_null=True,
        help_text="Deposits: the currency the provider is paid in when it differs from the "
        "wallet's (the credit is converted at the rate of the moment).",
    )
    amount_currency = serializers.SerializerMethodField(
        help_text="The currency of min_amount, max_amount and fee_fixed (null: the wallet's)."
    )
    fee_percent = serializers.SerializerMethodField()
    fee_fixed = serializers.SerializerMethodField()
    min_amount = serializers.SerializerMethodField()
    max_amount = serializers.SerializerMethodField(help_text="null: no maximum.")
    destination_fields = serializers.SerializerMethodField(
        help_text="Withdrawals: the keys of `destination` this method needs."
    )

    def _currency(self, method: PaymentMethod):
        """The currency the amounts are in, when the query named a wallet currency."""
        if self.context["direction"] == DEPOSIT and method.provider_currency_id:
            return method.provider_currency
        code = self.context.get("currency")
        return next((c for c in method.currencies.all() if c.code == code), None)

    def _exponent(self, method: PaymentMethod) -> int | None:
        currency = self._currency(method)
        return currency.exponent if currency is not None else None

    def get_currencies(self, method: PaymentMethod) -> list[str]:
        return sorted(c.code for c in method.currencies.all())

    def get_amount_currency(self, method: PaymentMethod) -> str | None:
        currency = self._currency(method)
        return currency.code if currency is not None else None

    def get_fee_percent(self, method: PaymentMethod) -> str:
        return decimal_text(method.fee_percent)

    def get_fee_fixed(self, method: PaymentMethod) -> str:
        return decimal_text(method.fee_fixed, self._exponent(method))

    def get_min_amount(self, method: PaymentMethod) -> str:
        return decimal_text(method.min_amount, self._exponent(method))

    def get_max_amount(self, method: PaymentMethod) -> str | None:
        return decimal_text(method.max_amount, self._exponent(method))

    def get_destination_fields(self, method: PaymentMethod) -> list[str]:
        if self.context["direction"] != WITHDRAWAL:
            return []
        return list(DESTINATION_FIELDS.get(method.icon, ()))


@extend_schema(
    parameters=[
        OpenApiParameter("direction", str, enum=[DEPOSIT, WITHDRAWAL], required=True),
        OpenApiParameter("currency", str, description="Only methods serving this wallet currency"),
    ],
    responses={200: PaymentMethodSerializer(many=True), **errors(400, 401)},
    summary="The payment methods you may use, in display order",
)
@api_view(["GET"])
def method_list(request):
    query = MethodsQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    direction = query.validated_data["direction"]
    currency = query.validated_data.get("currency")
    if direction == DEPOSIT:
        methods = deposit_selectors.deposit_methods_for(user=request.user)
        if currency:
            methods = deposit_selectors.methods_for_currency(methods, currency)
    else:
        country = profile_for_user(user=request.user).country
        methods = withdrawal_selectors.withdrawal_methods(country=getattr(country, "code", ""))
        if currency:
            methods = [
                m for m in methods if withdrawal_selectors.method_serves_currency(m, currency)
            ]
    context = {"direction": direction, "currency": currency}
    return Response(PaymentMethodSerializer(methods, many=True, context=context).data)
