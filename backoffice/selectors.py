"""Reads of the core: branding, a client's timeline, notifications."""

from __future__ import annotations

import time

from django.core.cache import cache
from django.db.models import QuerySet

from .models import Brand, Event, Notification

ROOM_VERSION_KEY = "room:version:{}"


def room_version(user_id: int) -> int:
    """A number that changes whenever what a user's room shows changes.

    Room pages cache their per-user fragments under it; the writers bump it
    (``backoffice.services.room_version_bump``). A missing key gets a fresh,
    never-seen value, so an evicted version can never revive stale fragments.
    """
    key = ROOM_VERSION_KEY.format(user_id)
    version = cache.get(key)
    if version is None:
        version = time.time_ns()
        cache.add(key, version, None)
        version = cache.get(key, version)
    return version


# The brand is read on every page: keep it in the process for a while, on
# top of the shared cache. A change shows at once in the process that saved
# it and within BRAND_MEMO_SECONDS elsewhere.
BRAND_MEMO_SECONDS = 30
_brand_memo: tuple[Brand, float] | None = None


def brand_get() -> Brand:
    """The brand (one row): from this process's memo, else the cache, else the
    database."""
    global _brand_memo
    if _brand_memo is not None and _brand_memo[1] > time.monotonic():
        return _brand_memo[0]
    brand = cache.get(Brand.CACHE_KEY)
    if brand is None:
        brand = Brand.objects.filter(pk=1).first() or Brand(pk=1)
        cache.set(Brand.CACHE_KEY, brand, 300)
    _brand_memo = (brand, time.monotonic() + BRAND_MEMO_SECONDS)
    return brand


def brand_forget() -> None:
    """Drop the brand from the shared cache and this process's memo."""
    global _brand_memo
    _brand_memo = None
    cache.delete(Brand.CACHE_KEY)


def client_timeline(*, client, limit: int = 50) -> QuerySet[Event]:
    """The client's activity, newest first."""
    return (
        Event.objects.filter(client=client)
        .select_related("actor")
        .order_by("-created_at", "-id")[:limit]
    )


def client_activity_recent(*, client, limit: int = 8) -> list[Event]:
    """The client's latest events for the room: name and time only.

    The room shows neither the actor nor the payload, so it loads neither
    (no join on the user table, no JSON decoding): half the cost of the
    same read through ``client_timeline``.
    """
    return list(
        Event.objects.filter(client=client)
        .only("id", "name", "created_at")
        .order_by("-created_at", "-id")[:limit]
    )


def notifications_recent(*, user, limit: int = 5) -> list[Notification]:
    return list(Notification.objects.filter(user=user).order_by("-created_at", "-id")[:limit])
