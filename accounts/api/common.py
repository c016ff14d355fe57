"""What the accounts API views share: the error shape, money as decimal
strings, and the client's Idempotency-Key.

The same conventions as the payments API (``payments.api.common``), kept
here because ``accounts`` may not import ``payments`` (apps depend one way,
ARCHITECTURE.md). Every error answers ``{"detail": "<for people>", "code":
"<for programs>"}``. Status codes: 400 a malformed request, 401 no or a bad
token, 403 a wrong 2FA code, 404 an id that is not the client's, 409 an
idempotency key reused for another request (or still being answered), 422 a
well-formed request the rules refuse, 429 too many wrong 2FA codes, 502 a
trading platform that did not answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from decimal import Decimal

from django.urls import NoReverseMatch, reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response

from backoffice.money import from_minor

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 64

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description=(
        f"A key of your choice (at most {MAX_KEY_LENGTH} printable characters, e.g. a "
        "UUID), new for each operation. Sending the same request again with the same key "
        f"returns the first result (with the header {REPLAYED_HEADER}: true) and does it "
        "once; the same key with another request is refused with 409."
    ),
)

# Symbols as platforms write them: "EURUSD", "EURUSD.m", "US500#", "BRK-B".
SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._#+-]{0,31}")


# --- Money and numbers --------------------------------------------------------------


def money(minor: int | None, digits: int) -> str | None:
    """Minor units as a decimal string with ``digits`` places ("-12.50")."""
    if minor is None:
        return None
    return format(from_minor(int(minor), digits), "f")


def number(value: Decimal | None) -> str | None:
    """A stored decimal (a percentage, lots, a price) as a string without
    trailing zeros and never in scientific notation ("100", "0.015")."""
    if value is None:
        return None
    normal = value.normalize()
    if normal == normal.to_integral_value():
        normal = normal.quantize(Decimal(1))
    return format(normal, "f")


# --- Idempotency --------------------------------------------------------------------


def idempotency_key(request) -> str:
    """The client's key as sent (400 when missing or malformed)."""
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
    return key


def key_digest(*parts: object) -> str:
    """A short fixed-length digest of ``parts`` (for cache keys and request
    fingerprints: nothing the client sent ends up in a cache key as is)."""
    raw = "\x1f".join(str(part) for part in parts)
    return hashlib.sha256(raw.encode()).hexdigest()


def replayable(response: Response, *, replayed: bool) -> Response:
    if replayed:
        response[REPLAYED_HEADER] = "true"
    return response


def no_store(response: Response) -> Response:
    """A response with a secret in it (a trading password) is never cached."""
    response["Cache-Control"] = "no-store"
    return response


# --- Errors -------------------------------------------------------------------------


class ApiError(APIException):
    """An error answered as ``{"detail": ..., "code": ..., **extra}``."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, *, code: str, status_code: int | None = None, **extra):
        if status_code is not None:
            self.status_code = status_code
        super().__init__({"detail": detail, "code": code, **extra})


def not_found(detail: str) -> ApiError:
    return ApiError(detail, code="not_found", status_code=status.HTTP_404_NOT_FOUND)


def refused(detail: str, *, code: str = "refused", decision=None) -> ApiError:
    """422 for a request the rules refuse; with what would unlock it when a
    policy refused (its words, and the page's path when it names one)."""
    extra = {}
    unlock = getattr(decision, "unlock", "") if decision is not None else ""
    if unlock:
        extra["unlock"] = unlock
        code = "not_allowed"
    url_name = getattr(decision, "unlock_url", "") if decision is not None else ""
    if url_name:
        with contextlib.suppress(NoReverseMatch):  # a page of an app not installed
            extra["unlock_url"] = reverse(url_name)
    if decision is not None and not getattr(decision, "allowed", True):
        code = "not_allowed"
    return ApiError(detail, code=code, status_code=status.HTTP_422_UNPROCESSABLE_ENTITY, **extra)


class ApiErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text="What went wrong, for programs.")
    errors = serializers.DictField(
        required=False, help_text="400: the messages by field (nested for objects)."
    )
    unlock = serializers.CharField(required=False, help_text="What would allow it.")
    unlock_url = serializers.CharField(required=False, help_text="Where to do that.")


def errors(*codes: int) -> dict:
    """The error responses of an endpoint, for the schema."""
    return dict.fromkeys(codes, ApiErrorSerializer)
