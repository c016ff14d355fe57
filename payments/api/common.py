"""What the payments API views share: money as decimal strings, the
idempotency key, the client's own wallets in request bodies, and errors as
one JSON shape.

Every error answers ``{"detail": "<for people>", "code": "<for programs>"}``
(400 with the field errors under ``"errors"``; a policy refusal with
``"unlock"``). Status codes: 400 a malformed request, 401 no or a bad token,
404 an id that is not the client's, 409 an idempotency key reused for another
request, 422 a well-formed request the rules refuse (limits, funds, an
expired quote), 502 a provider that failed.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal

from django.http import Http404
from django.urls import NoReverseMatch, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.decorators import api_view as drf_api_view
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from backoffice.money import from_minor

from .. import selectors
from ..exceptions import IdempotencyConflict, InsufficientFunds, LedgerError

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
# Scoped (``api:<user id>:<key>``) it still fits the services' own key limits.
MAX_KEY_LENGTH = 64
LIST_LIMIT = 20
MAX_LIST_LIMIT = 100

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description=(
        f"A key of your choice (at most {MAX_KEY_LENGTH} printable characters, e.g. a "
        "UUID), new for each operation. Sending the same request again with the same key "
        f"returns the first result (with the header {REPLAYED_HEADER}: true) and moves "
        "money once; the same key with another request is refused with 409."
    ),
)


# --- Money --------------------------------------------------------------------------


def decimal_string(minor: int | None, exponent: int) -> str | None:
    if minor is None:
        return None
    return format(from_minor(minor, exponent), "f")


def decimal_text(value: Decimal | None, exponent: int | None = None) -> str | None:
    """A stored decimal (a limit, a percentage, a rate) as a string: with the
    currency's ``exponent`` places when that is exact, otherwise without
    trailing zeros; never in scientific notation, never rounded."""
    if value is None:
        return None
    if exponent is not None:
        shown = value.quantize(Decimal(1).scaleb(-exponent))
        if shown == value:
            return format(shown, "f")
    normal = value.normalize()
    if normal == normal.to_integral_value():
        normal = normal.quantize(Decimal(1))  # "100", never "1E+2"
    return format(normal, "f")


class AmountField(serializers.DecimalField):
    """An amount in major units: preferably a string ("100.50"); a JSON number
    is read as the shortest decimal that gives it back (100.5 is "100.5"), so
    a number with more decimals than the currency has is refused like the
    string would be. Zero and negative amounts are refused here; the
    currency's decimals by the service."""

    default_error_messages = {
        "invalid": 'Enter the amount as a decimal string, such as "100.50".',
        "min_value": "Enter an amount greater than zero.",
        "max_digits": "The amount is too large.",
        "max_whole_digits": "The amount is too large.",
        "max_decimal_places": "The amount has too many decimal places.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 30)
        kwargs.setdefault("decimal_places", 18)
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        if isinstance(data, bool):
            self.fail("invalid")
        if isinstance(data, float):
            # repr(float) is the shortest decimal that round-trips: what the
            # client most likely wrote. Never Decimal(float), which would be
            # 0.1000000000000000055511151231257827...
            data = repr(data)
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value <= 0:
            self.fail("min_value", min_value=0)
        return value


class OwnWalletField(serializers.IntegerField):
    """The id of one of the signed-in client's wallets; the wallet comes out.
    Any other id (another client's, a system account, none) is a 400 that
    names the field and acts on nothing."""

    default_error_messages = {"not_yours": "Choose one of your wallets."}

    def to_internal_value(self, data):
        wallet_id = super().to_internal_value(data)
        try:
            return selectors.wallet_get_for_user(user=self.context["user"], wallet_id=wallet_id)
        except Http404:
            self.fail("not_yours")


class ListedMethodField(serializers.IntegerField):
    """The id of a payment method from ``context["methods"]`` (the ones this
    client may use); the method comes out."""

    default_error_messages = {
        "not_listed": "Choose a payment method available to you "
        "(GET /api/v1/payment-methods/ lists them)."
    }

    def to_internal_value(self, data):
        method_id = super().to_internal_value(data)
        for method in self.context["methods"]:
            if method.pk == method_id:
                return method
        self.fail("not_listed")


class ListQuery(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIST_LIMIT, default=LIST_LIMIT)


LIMIT_PARAMETER = OpenApiParameter(
    "limit",
    int,
    description=f"How many, newest first ({LIST_LIMIT} unless given; at most {MAX_LIST_LIMIT}).",
)


def list_limit(request) -> int:
    """The ``limit`` of a list request (400 when it is not 1 to 100)."""
    query = ListQuery(data=request.query_params)
    query.is_valid(raise_exception=True)
    return query.validated_data["limit"]


def valid(serializer_class, request, **context) -> dict:
    """The request body validated by ``serializer_class`` (400 otherwise)."""
    serializer = serializer_class(data=request.data, context={"user": request.user, **context})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Idempotency --------------------------------------------------------------------


def idempotency_key(request) -> str:
    """The client's key, scoped to the user so that keys never collide (nor
    reveal anything) across users."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not key:
        raise ApiError(
            f"Send an {IDEMPOTENCY_HEADER} header: a new key for each operation.",
            code="idempotency_key_missing",
        )
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            f"{IDEMPOTENCY_HEADER} is at most {MAX_KEY_LENGTH} printable characters.",
            code="idempotency_key_invalid",
        )
    return f"api:{request.user.pk}:{key}"


def created(data, *, replayed: bool) -> Response:
    """201 with ``data``; a replay says so in a header (the body is the same)."""
    response = Response(data, status=status.HTTP_201_CREATED)
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return response


# --- Errors -------------------------------------------------------------------------


class ApiError(APIException):
    """An error answered as ``{"detail": ..., "code": ..., **extra}``."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, *, code: str, status_code: int | None = None, **extra):
        if status_code is not None:
            self.status_code = status_code
        super().__init__({"detail": detail, "code": code, **extra})


def _error_code(exc: LedgerError) -> str:
    # Imported here: the services import much; common stays cheap to import.
    from ..selectors.rates import RateTooOld, RateUnavailable
    from ..services.conversions import InsufficientBalance, NotAllowed, QuoteExpired

    if isinstance(exc, InsufficientFunds | InsufficientBalance):
        return "insufficient_funds"
    if isinstance(exc, QuoteExpired):
        return "quote_expired"
    if isinstance(exc, RateTooOld):
        return "rate_too_old"
    if isinstance(exc, RateUnavailable):
        return "rate_unavailable"
    if isinstance(exc, NotAllowed) or getattr(exc, "unlock", ""):
        return "not_allowed"
    return "refused"


def _unlock(exc: LedgerError) -> dict:
    """What would allow a policy's refusal: the words, and the page's path."""
    decision = getattr(exc, "decision", None)
    unlock = getattr(exc, "unlock", "") or getattr(decision, "unlock", "")
    url_name = getattr(exc, "unlock_url", "") or getattr(decision, "unlock_url", "")
    extra = {"unlock": unlock} if unlock else {}
    if url_name:
        with contextlib.suppress(NoReverseMatch):  # a name of another app's page
            extra["unlock_url"] = reverse(url_name)
    return extra


def raise_for(exc: LedgerError, *, code: str | None = None) -> None:
    """A refused money operation as an API error: 409 for a reused key, 422
    for everything else (with the message written for people)."""
    if isinstance(exc, IdempotencyConflict):
        raise ApiError(
            str(exc), code="idempotency_conflict", status_code=status.HTTP_409_CONFLICT
        ) from exc
    raise ApiError(
        str(exc),
        code=code or _error_code(exc),
        status_code=status.HTTP_422_UNPROCESSABLE_ENTITY,
        **_unlock(exc),
    ) from exc


def api_view(http_method_names):
    """DRF's ``@api_view`` (kept as a name here so that the payments API
    modules import it in one place). Errors take the API's one shape through
    ``REST_FRAMEWORK["EXCEPTION_HANDLER"]`` (:mod:`backoffice.api`)."""
    return drf_api_view(http_method_names)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text="What went wrong, for programs.")
    errors = serializers.DictField(
        required=False, help_text="400: the messages by field (nested for objects)."
    )
    unlock = serializers.CharField(required=False, help_text="What would allow it.")
    unlock_url = serializers.CharField(required=False, help_text="Where to do that.")


ERRORS = {
    400: ErrorSerializer,
    401: ErrorSerializer,
    404: ErrorSerializer,
    409: ErrorSerializer,
    422: ErrorSerializer,
}


def errors(*codes: int) -> dict:
    """The error responses of an endpoint, for the schema."""
    return {code: ERRORS.get(code, ErrorSerializer) for code in codes}
