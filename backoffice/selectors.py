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


def brand_get() -> Brand:
    """The brand, from the cache (one row, invalidated when saved)."""
    brand = cache.get(Brand.CACHE_KEY)
    if brand is None:
        brand = Brand.objects.filter(pk=1).first() or Brand(pk=1)
        cache.set(Brand.CACHE_KEY, brand, 300)
    return brand


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
