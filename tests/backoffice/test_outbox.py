"""The domain event outbox, in-process (Celery eager): what is delivered, when, and how often.

Runs on SQLite and PostgreSQL. The same behaviour against a real Redis and a
real worker process is in ``test_outbox_worker.py``.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.services import two_factor_disable
from backoffice import events
from backoffice.events import publish, subscriber
from backoffice.models import Event, EventDelivery, Notification
from backoffice.services import event_deliver, outbox_sweep
from tests.factories import enable_totp, totp_code

NOTIFY = "accounts.notify_client"


class Recorder:
    """A test subscriber: writes a Notification (to show its writes commit or
    roll back with its delivery record) and raises while ``failing`` is set."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.calls: list[int] = []
        self.failing = False

    def __call__(self, event: Event) -> None:
        self.calls.append(event.pk)
        Notification.objects.create(user=event.client, kind=event.name, title=self.sid, event=event)
        if self.failing:
            raise RuntimeError(f"{self.sid} is down")


@pytest.fixture
def event_name():
    """A unique event name whose test subscribers are unregistered afterwards."""
    name = f"test.outbox_{uuid.uuid4().hex[:12]}"
    yield name
    events._registry.pop(name, None)


@pytest.fixture
def listen(event_name):
    """Register a Recorder subscriber for ``event_name``."""

    def listen(label: str = "recorder") -> Recorder:
        recorder = Recorder(f"tests.{label}")
        subscriber(event_name, name=recorder.sid)(recorder)
        return recorder

    return listen


def publish_and_commit(name, subject, capture):
    with capture(execute=True) as callbacks, transaction.atomic():
        event = publish(name, subject, {"n": 1})
    return event, callbacks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def celery_broker(url: str):
    """Point the in-process Celery app at ``url``, not eager; restore afterwards."""
    from backoffice.celery import app

    saved = {
        key: app.conf[key] for key in ("broker_url", "task_always_eager", "task_eager_propagates")
    }

    def reset_pools():
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = url
    app.conf.task_always_eager = False
    reset_pools()
    try:
        yield app
    finally:
        app.conf.update(saved)
        reset_pools()


# --- transactions -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_of_a_rolled_back_transaction_is_never_delivered(trader):
    device = enable_totp(trader)

    with pytest.raises(RuntimeError), transaction.atomic():
        two_factor_disable(user=trader, token=totp_code(device))
        assert Event.objects.filter(name="security.2fa_disabled").count() == 1
        raise RuntimeError("the caller fails after the service ran")

    assert not Event.objects.exists()
    assert not EventDelivery.objects.exists()
    assert not Notification.objects.exists()
    assert trader.totpdevice_set.filter(confirmed=True).exists()


@pytest.mark.django_db
def test_rolled_back_publish_leaves_no_on_commit_dispatch(
    trader, listen, event_name, django_capture_on_commit_callbacks
):
    recorder = listen()

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        publish(event_name, trader)
        raise RuntimeError("rolled back")

    assert callbacks == []
    assert recorder.calls == []
    assert not Event.objects.filter(name=event_name).exists()
    assert not Notification.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_committed_2fa_disable_notifies_the_client_once(trader):
    device = enable_totp(trader)

    two_factor_disable(user=trader, token=totp_code(device))

    event = Event.objects.get(name="security.2fa_disabled")
    assert event.client_id == trader.pk
    assert event.completed_at is not None
    assert list(event.deliveries.values_list("subscriber", flat=True)) == [NOTIFY]
    assert list(Notification.objects.values_list("event_id", "user_id", "kind")) == [
        (event.pk, trader.pk, "security.2fa_disabled")
    ]

    assert event_deliver(event_id=event.pk, subscriber_id=NOTIFY) is False
    assert Notification.objects.count() == 1
    assert EventDelivery.objects.count() == 1


@pytest.mark.django_db
def test_subscriber_runs_once_after_commit_and_redelivery_is_a_no_op(
    trader, listen, event_name, django_capture_on_commit_callbacks
):
    recorder = listen()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            event = publish(event_name, trader)
        assert recorder.calls == [], "a subscriber must not run before commit"
    assert len(callbacks) == 2  # the dispatch, and the bump of the client's room cache
    assert recorder.calls == [event.pk]
    event.refresh_from_db()
    assert event.completed_at is not None

    assert event_deliver(event_id=event.pk, subscriber_id=recorder.sid) is False
    assert event_deliver(event_id=event.pk, subscriber_id=recorder.sid) is False

    assert recorder.calls == [event.pk]
    assert EventDelivery.objects.filter(event=event).count() == 1
    assert Notification.objects.filter(event=event).count() == 1


@pytest.mark.django_db
def test_unknown_subscriber_or_event_is_not_delivered(trader, listen, event_name):
    listen()
    event = Event.objects.create(name=event_name, client=trader)

    assert event_deliver(event_id=event.pk, subscriber_id="tests.nobody") is False
    assert event_deliver(event_id=event.pk + 1000, subscriber_id="tests.recorder") is False
    assert not EventDelivery.objects.exists()


# --- failures and the sweeper -------------------------------------------------------


@pytest.mark.django_db
def test_failing_subscriber_keeps_no_delivery_and_no_writes(trader, listen, event_name):
    recorder = listen()
    recorder.failing = True
    event = Event.objects.create(name=event_name, client=trader)

    with pytest.raises(RuntimeError, match="is down"):
        event_deliver(event_id=event.pk, subscriber_id=recorder.sid)

    assert recorder.calls == [event.pk]
    assert not EventDelivery.objects.exists()
    assert not Notification.objects.exists(), "the subscriber's own writes roll back too"
    event.refresh_from_db()
    assert event.completed_at is None


@pytest.mark.django_db
def test_failed_dispatch_does_not_raise_into_the_caller_and_stays_pending(
    trader, listen, event_name, django_capture_on_commit_callbacks, caplog
):
    recorder = listen()
    recorder.failing = True

    with caplog.at_level(logging.WARNING, logger="backoffice.events"):
        event, _ = publish_and_commit(event_name, trader, django_capture_on_commit_callbacks)

    assert recorder.calls, "the subscriber was tried"
    assert "could not deliver event" in caplog.text
    event.refresh_from_db()
    assert event.completed_at is None
    assert not EventDelivery.objects.exists()
    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_sweep_redelivers_only_what_failed_and_then_completes_the_event(
    trader, listen, event_name, django_capture_on_commit_callbacks
):
    steady = listen("steady")
    flaky = listen("flaky")
    flaky.failing = True

    event, _ = publish_and_commit(event_name, trader, django_capture_on_commit_callbacks)

    assert steady.calls == [event.pk]
    event.refresh_from_db()
    assert event.completed_at is None
    assert list(event.deliveries.values_list("subscriber", flat=True)) == [steady.sid]

    flaky.failing = False
    flaky.calls.clear()
    assert outbox_sweep(older_than=0) == 1

    assert flaky.calls == [event.pk]
    assert steady.calls == [event.pk], "a delivered subscriber is not run again"
    event.refresh_from_db()
    assert event.completed_at is not None
    assert set(event.deliveries.values_list("subscriber", flat=True)) == {steady.sid, flaky.sid}
    assert Notification.objects.filter(event=event).count() == 2

    assert outbox_sweep(older_than=0) == 0
    assert flaky.calls == [event.pk]


@pytest.mark.django_db
def test_event_without_subscribers_is_complete_at_once(trader, event_name):
    event = publish(event_name, trader)

    assert event.completed_at is not None
    assert outbox_sweep(older_than=0) == 0


@pytest.mark.django_db
def test_sweep_waits_for_outbox_redispatch_after(
    trader, listen, event_name, settings, django_capture_on_commit_callbacks
):
    from backoffice.tasks import outbox_sweep as outbox_sweep_task

    settings.OUTBOX_REDISPATCH_AFTER = 60
    recorder = listen()
    recorder.failing = True
    event, _ = publish_and_commit(event_name, trader, django_capture_on_commit_callbacks)
    tries = len(recorder.calls)
    recorder.failing = False

    assert outbox_sweep() == 0, "a fresh event is not swept"
    assert outbox_sweep_task.delay().get() == 0
    assert len(recorder.calls) == tries

    Event.objects.filter(pk=event.pk).update(dispatched_at=timezone.now() - timedelta(seconds=59))
    assert outbox_sweep() == 0
    Event.objects.filter(pk=event.pk).update(dispatched_at=timezone.now() - timedelta(seconds=61))
    assert outbox_sweep_task.delay().get() == 1

    assert len(recorder.calls) == tries + 1
    event.refresh_from_db()
    assert event.completed_at is not None


@pytest.mark.django_db
def test_sweep_restarts_the_wait_after_each_redispatch(
    trader, listen, event_name, settings, django_capture_on_commit_callbacks
):
    settings.OUTBOX_REDISPATCH_AFTER = 60
    recorder = listen()
    recorder.failing = True
    event, _ = publish_and_commit(event_name, trader, django_capture_on_commit_callbacks)
    Event.objects.filter(pk=event.pk).update(dispatched_at=timezone.now() - timedelta(seconds=61))

    assert outbox_sweep() == 1
    assert outbox_sweep() == 0, "still failing, but it was just re-dispatched"
    event.refresh_from_db()
    assert event.completed_at is None
    assert timezone.now() - event.dispatched_at < timedelta(seconds=5)


# --- the broker is unreachable ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_unreachable_broker_does_not_fail_the_service_and_the_event_stays_pending(trader, caplog):
    device = enable_totp(trader)
    token = totp_code(device)

    with (
        celery_broker(f"redis://127.0.0.1:{free_port()}/0"),
        caplog.at_level(logging.WARNING, logger="backoffice.events"),
    ):
        started = time.monotonic()
        two_factor_disable(user=trader, token=token)
        elapsed = time.monotonic() - started

    assert elapsed < 5, f"the caller waited {elapsed:.1f}s for a dead broker"
    assert "could not deliver event" in caplog.text
    assert not trader.totpdevice_set.exists(), "the service's change is committed"
    event = Event.objects.get(name="security.2fa_disabled")
    assert event.completed_at is None
    assert not EventDelivery.objects.exists()
    assert not Notification.objects.exists()

    # Once the broker is back (here: eager again), the sweeper delivers it.
    assert outbox_sweep(older_than=0) == 1
    event.refresh_from_db()
    assert event.completed_at is not None
    assert Notification.objects.filter(event=event, user=trader).count() == 1
