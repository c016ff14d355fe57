"""The domain event outbox.

``publish()`` writes an :class:`~backoffice.models.Event` row in the caller's
transaction. After commit each subscriber of the event's name runs as its own
Celery task (``backoffice.tasks.outbox_deliver``). If the broker cannot be
reached at that moment nothing is lost: ``outbox_sweep`` (a beat task)
re-dispatches events that are not fully delivered after
``OUTBOX_REDISPATCH_AFTER`` seconds. Subscribers are idempotent by
construction: a delivery record per event and subscriber is written in the
subscriber's own transaction, under a unique constraint.

Subscribing::

    from backoffice.events import subscriber

    @subscriber("security.2fa_disabled")
    def notify_2fa_disabled(event): ...

Subscribers register when their module is imported; each app imports its
``subscribers`` module in ``AppConfig.ready()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from .models import Event

logger = logging.getLogger(__name__)

Handler = Callable[[Event], None]

# event name -> {subscriber id -> handler}
_registry: dict[str, dict[str, Handler]] = {}


def subscriber(*names: str, name: str | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function as a subscriber of the given event names.

    Its id (``module.function`` unless ``name`` is given) is what delivery
    records store, so renaming a subscriber re-delivers old events to it.
    """

    def decorate(func: Handler) -> Handler:
        sid = name or f"{func.__module__}.{func.__qualname__}"
        for event_name in names:
            _registry.setdefault(event_name, {})[sid] = func
        return func

    return decorate


def subscribers_for(event_name: str) -> dict[str, Handler]:
    return dict(_registry.get(event_name, {}))


def _subject_ref(subject: models.Model | None) -> tuple[str, str]:
    if subject is None:
        return "", ""
    return subject._meta.label_lower, str(subject.pk)


def publish(
    name: str,
    subject: models.Model | None,
    payload: dict[str, Any] | None = None,
    *,
    client: models.Model | None = None,
    actor: models.Model | None = None,
) -> Event:
    """Record a domain event in the current transaction; deliver it after commit.

    ``client`` defaults to ``subject`` when the subject is a user, so that the
    event appears in that client's timeline.
    """
    from django.contrib.auth import get_user_model

    if client is None and isinstance(subject, get_user_model()):
        client = subject
    subject_type, subject_id = _subject_ref(subject)
    now = timezone.now()
    event = Event.objects.create(
        name=name,
        subject_type=subject_type,
        subject_id=subject_id,
        client=client,
        actor=actor if actor is not None and actor.pk else None,
        payload=payload or {},
        created_at=now,
        dispatched_at=now,
        completed_at=None if subscribers_for(name) else now,
    )
    if event.completed_at is None:
        event_id = event.pk
        transaction.on_commit(lambda: dispatch(event_id))
    if client is not None:
        # The client's timeline changed: their room's cached fragments go.
        from .services import room_version_bump

        room_version_bump(client.pk)
    return event


def dispatch(event_id: int) -> None:
    """Enqueue a delivery task for each subscriber not yet delivered.

    Never raises: when the broker is unreachable the event stays pending and
    the sweeper dispatches it again later.
    """
    from .tasks import outbox_deliver

    try:
        event = Event.objects.get(pk=event_id)
    except Event.DoesNotExist:
        return
    delivered = set(event.deliveries.values_list("subscriber", flat=True))
    pending = [sid for sid in subscribers_for(event.name) if sid not in delivered]
    if not pending:
        Event.objects.filter(pk=event_id, completed_at__isnull=True).update(
            completed_at=timezone.now()
        )
        return
    for sid in pending:
        try:
            outbox_deliver.delay(event_id, sid)
        except Exception:
            # Broker down, or (eager mode) the subscriber failed: the sweeper
            # tries again later. Logged, never raised into the caller.
            logger.warning(
                "outbox: could not deliver event %s to %s now", event_id, sid, exc_info=True
            )


# Human wording of event names, for timelines shown to clients and staff.
_labels: dict[str, str] = {}


def describe(name: str, text: str) -> None:
    _labels[name] = text


def label_for(name: str) -> str:
    return _labels.get(name, name.replace("_", " ").replace(".", ": "))
