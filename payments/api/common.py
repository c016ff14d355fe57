"""What the payments API views share: money as decimal strings, the
idempotency key, domain errors as HTTP answers."""

from __future__ import annotations

from decimal import Decimal

from rest_framework import serializers, status
from rest_framework.exceptions import APIException, ValidationError

from backoffice.money import from_minor

from ..exceptions import IdempotencyConflict, InsufficientFunds, LedgerError

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 100


def decimal_string(minor: int | None, exponent: int) -> str | None:
    if minor is None:
        return None
    return format(from_minor(minor, exponent), "f")


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_conflict"


class Unprocessable(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "refused"


def idempotency_key(request) -> str:
    """The client's key, scoped to the user so that keys never collide (nor
    reveal anything) across users."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not key:
        raise ValidationError({"detail": f"Send an {IDEMPOTENCY_HEADER} header."})
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ValidationError({"detail": f"{IDEMPOTENCY_HEADER} is at most 100 characters."})
    return f"api:{request.user.pk}:{key}"


def raise_for(exc: LedgerError) -> None:
    """A refused money operation as an API error: 409 for a reused key, 422
    for everything else (with the message written for people)."""
    if isinstance(exc, IdempotencyConflict):
        raise Conflict(str(exc)) from exc
    code = "insufficient_funds" if isinstance(exc, InsufficientFunds) else "refused"
    raise Unprocessable(detail=str(exc), code=code) from exc


class AmountField(serializers.DecimalField):
    """A positive amount in major units, as a string or number."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 30)
        kwargs.setdefault("decimal_places", 18)
        kwargs.setdefault("min_value", Decimal("0"))
        super().__init__(**kwargs)

    def validate_empty_values(self, data):
        if isinstance(data, float):
            # 0.1 as a JSON number is already inexact in most clients; say so.
            data = str(data)
        return super().validate_empty_values(data)
