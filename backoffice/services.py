"""Writes of the core: outbox delivery and sweeping, notifications, branding."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from .events import dispatch, subscribers_for
from .models import Event, EventDelivery, Notification

logger = logging.getLogger(__name__)


def event_deliver(*, event_id: int, subscriber_id: str) -> bool:
    """Run one subscriber for one event, at most once.

    Returns True if the subscriber ran now, False if it had already run (or
    is unknown). The delivery record and the subscriber's own writes commit
    together; if the subscriber raises, neither is kept.
    """
    event = Event.objects.filter(pk=event_id).first()
    handler = subscribers_for(event.name).get(subscriber_id) if event else None
    if handler is None:
        logger.error("outbox: no subscriber %s for event %s", subscriber_id, event_id)
        return False
    with transaction.atomic():
        try:
            # The insert takes the unique-constraint lock: a concurrent
            # delivery of the same pair waits here, then fails, and skips.
            with transaction.atomic():
                EventDelivery.objects.create(event=event, subscriber=subscriber_id)
        except IntegrityError:
            return False
        handler(event)
    _complete_if_delivered(event)
    return True


def _complete_if_delivered(event: Event) -> None:
    expected = set(subscribers_for(event.name))
    delivered = set(event.deliveries.values_list("subscriber", flat=True))
    if expected <= delivered:
        Event.objects.filter(pk=event.pk, completed_at__isnull=True).update(
            completed_at=timezone.now()
        )


def outbox_sweep(*, older_than: int | None = None, limit: int = 500) -> int:
    """Re-dispatch events not fully delivered ``older_than`` seconds after their
    last dispatch. Returns how many events were dispatched again."""
    if older_than is None:
        older_than = settings.OUTBOX_REDISPATCH_AFTER
    now = timezone.now()
    cutoff = now - timedelta(seconds=older_than)
    ids = list(
        Event.objects.filter(completed_at__isnull=True, dispatched_at__lte=cutoff)
        .order_by("dispatched_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    if not ids:
        return 0
    Event.objects.filter(pk__in=ids).update(dispatched_at=now)
    for event_id in ids:
        dispatch(event_id)
    return len(ids)


def room_version_bump(user_id: int) -> None:
    """Invalidate the cached fragments of the user's room, after commit."""
    from .selectors import ROOM_VERSION_KEY

    def bump() -> None:
        cache.set(ROOM_VERSION_KEY.format(user_id), time.time_ns(), None)

    transaction.on_commit(bump)


def notification_create(
    *, user, kind: str, title: str, body: str = "", event: Event | None = None, email: bool = True
) -> Notification:
    """Store a notification for the user and e-mail it after commit."""
    notification = Notification.objects.create(
        user=user, kind=kind, title=title, body=body, event=event
    )
    if email and user.email:
        recipient = user.email

        def send() -> None:
            try:
                send_mail(title, body, None, [recipient])
            except Exception:
                logger.warning("notification e-mail to user %s failed", user.pk, exc_info=True)

        transaction.on_commit(send)
    room_version_bump(user.pk)
    return notification


def notifications_mark_read(*, user) -> int:
    count = Notification.objects.filter(user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )
    if count:
        room_version_bump(user.pk)
    return count
