"""Reads of conversions and internal transfers, with the access getter that
keeps a trader to their own quotes."""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from django.http import Http404
from django.utils import timezone

from ..models import Conversion, Transfer


def as_uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def conversion_find_for_user(*, user, public_id) -> Conversion | None:
    """The user's conversion (quoted or executed) by public id, or None."""
    key = as_uuid(public_id)
    if key is None:
        return None
    return (
        Conversion.objects.filter(public_id=key, user=user)
        .select_related("from_wallet__currency", "to_wallet__currency")
        .first()
    )


def conversion_get_for_user(*, user, public_id) -> Conversion:
    """The user's own conversion, or 404 (never another user's)."""
    conversion = conversion_find_for_user(user=user, public_id=public_id)
    if conversion is None:
        raise Http404("No such quote.")
    return conversion


def quote_seconds_left(conversion: Conversion, *, now: datetime | None = None) -> int:
    """Seconds until the quote expires, rounded up (0 once it has)."""
    left = (conversion.expires_at - (now or timezone.now())).total_seconds()
    return max(0, math.ceil(left))


def conversions_recent_for_user(*, user, limit: int = 5) -> list[Conversion]:
    """The user's latest executed conversions, newest first."""
    return list(
        Conversion.objects.filter(user=user, status=Conversion.EXECUTED)
        .select_related("from_wallet__currency", "to_wallet__currency")
        .order_by("-executed_at", "-id")[:limit]
    )


def transfers_recent_for_user(*, user, limit: int = 5) -> list[Transfer]:
    """The user's latest transfers (sent by them), newest first."""
    return list(
        Transfer.objects.filter(user=user)
        .select_related("from_wallet__currency", "to_wallet__currency", "to_wallet__owner")
        .order_by("-id")[:limit]
    )
