"""The domain event outbox against a real Redis and a real Celery worker process.

The test owns a private ``redis-server`` so that it can truly stop the broker
and start it again on the same port, and a worker subprocess (prefork, two
processes) that consumes a queue of its own from that Redis and writes to the
test database. Nothing is mocked. The worker's log is kept in
``test-artifacts/outbox-worker.log``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection, transaction

from accounts.services import two_factor_disable
from backoffice.events import publish
from backoffice.models import Event, EventDelivery, Notification
from backoffice.services import outbox_sweep
from backoffice.tasks import outbox_deliver
from tests.conftest import ARTIFACTS, require_or_skip
from tests.factories import TraderFactory, enable_totp, totp_code

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

BASE_DIR = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).parent / "celery"
NOTIFY = "accounts.notify_client"
DELIVERY_TIMEOUT = 30


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    """A redis-server owned by the test: no persistence, stop and start at will."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.log = ARTIFACTS / "outbox-worker-redis.log"
        self.log.write_text("")
        self.process: subprocess.Popen | None = None

    def ping(self) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py's default backoff takes ~5 s to say "refused".
        client = redis.Redis(
            port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        try:
            return client.ping()
        except redis.RedisError:
            return False

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [
                    "redis-server",
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for(self.ping, timeout=10, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        assert not self.ping(), "the broker should be down"


class Worker:
    """A ``celery worker`` subprocess and its log."""

    def __init__(
        self,
        broker: PrivateRedis,
        queue: str,
        *,
        log_name: str = "outbox-worker.log",
        include: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.queue = queue
        self.log = ARTIFACTS / log_name
        self.broker = broker
        # Extra modules the worker imports (-I), e.g. a test's platform gateway.
        self.include = include
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        db = connection.settings_dict  # NAME is the test database's by now
        auth = quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            auth += ":" + quote(db["PASSWORD"], safe="")
        host = db["HOST"] or "127.0.0.1"
        port = f":{db['PORT']}" if db["PORT"] else ""
        return {
            **os.environ,
            "DATABASE_URL": f"postgres://{auth}@{host}{port}/{db['NAME']}",
            "REDIS_URL": self.broker.url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def start(self) -> None:
        self.log.write_text("")
        with self.log.open("a") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed arguments
                [
                    str(CELERY), "-A", "backoffice", "worker",
                    "--pool=prefork", "--concurrency=2",
                    "-Q", self.queue,
                    "-n", f"{self.queue}@%h",
                    "--loglevel=info",
                    "--without-gossip", "--without-mingle",
                    *(f"--include={module}" for module in self.include),
                ],
                cwd=BASE_DIR,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, for teardown
            )  # fmt: skip
        self.wait_for_log(r"\bready\.", timeout=30, what="the worker to be ready")

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid  # the group this test started (start_new_session)
        try:
            self.process.terminate()  # warm shutdown
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.text()))

    def wait_for_log(self, pattern: str, *, timeout: float, what: str, count: int = 1) -> None:
        def seen() -> bool:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"the worker exited ({self.process.returncode}):\n{self.text()}")
            return self.count(pattern) >= count

        wait_for(seen, timeout=timeout, what=what)

    def results(self, task_ids: list[str]) -> dict[str, str]:
        """Return values logged by the worker for these task ids."""
        pattern = r"outbox_deliver\[([0-9a-f-]+)\] succeeded in [0-9.e-]+s: (\w+)"
        found = dict(re.findall(pattern, self.text()))
        return {tid: found[tid] for tid in task_ids if tid in found}

    def wait_for_results(self, task_ids: list[str], *, timeout: float = DELIVERY_TIMEOUT):
        wait_for(
            lambda: len(self.results(task_ids)) == len(task_ids),
            timeout=timeout,
            what=f"the worker to finish tasks {task_ids}",
        )
        return self.results(task_ids)


@pytest.fixture(scope="module")
def services(django_db_setup):
    """Skip locally, fail in CI, unless PostgreSQL, redis-server and celery are here."""
    require_or_skip(
        connection.vendor == "postgresql",
        f"a worker process needs PostgreSQL, not {connection.vendor}",
    )
    require_or_skip(bool(shutil.which("redis-server")), "redis-server is not installed")
    require_or_skip(CELERY.exists(), f"{CELERY} is not installed")


@pytest.fixture(scope="module")
def private_redis(services, tmp_path_factory):
    broker = PrivateRedis(tmp_path_factory.mktemp("redis"))
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def worker(services, private_redis):
    process = Worker(private_redis, f"outbox-test-{uuid.uuid4().hex[:10]}")
    try:
        process.start()
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def celery_on_private_redis(worker, private_redis, settings):
    """Send tasks, as a web process would, to the private Redis and the worker's queue."""
    from backoffice.celery import app

    keys = ("broker_url", "task_default_queue", "task_always_eager")
    saved = {key: app.conf[key] for key in keys}

    def reset_pools() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    settings.REDIS_URL = private_redis.url
    # Only the explicit outbox_sweep(older_than=0) calls below re-dispatch.
    settings.OUTBOX_REDISPATCH_AFTER = 3600
    app.conf.broker_url = private_redis.url
    app.conf.task_default_queue = worker.queue
    app.conf.task_always_eager = False
    reset_pools()
    yield app
    app.conf.update(saved)
    reset_pools()
    if private_redis.process is None:  # a failed test left the broker down
        private_redis.start()


def wait_until_complete(event: Event, timeout: float = DELIVERY_TIMEOUT) -> Event:
    def complete():
        event.refresh_from_db()
        return event.completed_at is not None

    wait_for(complete, timeout=timeout, what=f"event {event.pk} to be delivered", interval=0.2)
    return event


def assert_no_task_errors(worker: Worker, log_from: int) -> None:
    tail = worker.text()[log_from:]
    outcomes = re.findall(r"outbox_deliver\[[0-9a-f-]+\] (\w+)", tail)
    assert set(outcomes) <= {"received", "succeeded"}, tail


def test_event_published_while_broker_is_down_is_delivered_once_by_the_sweeper(
    worker, private_redis
):
    trader = TraderFactory()
    device = enable_totp(trader)
    log_from = len(worker.text())
    connected = worker.count(r"Connected to redis://")

    private_redis.stop()
    started = time.monotonic()
    two_factor_disable(user=trader, token=totp_code(device))
    elapsed = time.monotonic() - started

    assert elapsed < 5, f"the service waited {elapsed:.1f}s for the dead broker"
    assert not trader.totpdevice_set.exists(), "the service's change is committed"
    event = Event.objects.get(name="security.2fa_disabled", client=trader)
    assert event.completed_at is None
    assert not EventDelivery.objects.filter(event=event).exists()
    assert not Notification.objects.filter(event=event).exists()

    private_redis.start()
    worker.wait_for_log(
        r"Connected to redis://", count=connected + 1, timeout=30, what="the worker to reconnect"
    )
    assert outbox_sweep(older_than=0) == 1

    wait_until_complete(event)
    assert list(EventDelivery.objects.filter(event=event).values_list("subscriber", flat=True)) == [
        NOTIFY
    ]
    notification = Notification.objects.get(event=event)
    assert (notification.user_id, notification.kind) == (trader.pk, "security.2fa_disabled")

    # Sweeping again and delivering the same pair again change nothing.
    assert outbox_sweep(older_than=0) == 0
    assert outbox_sweep(older_than=0) == 0
    again = [outbox_deliver.delay(event.pk, NOTIFY).id for _ in range(2)]
    assert set(worker.wait_for_results(again).values()) == {"False"}

    assert Notification.objects.filter(event=event).count() == 1
    assert EventDelivery.objects.filter(event=event, subscriber=NOTIFY).count() == 1
    assert Notification.objects.filter(user=trader).count() == 1
    assert_no_task_errors(worker, log_from)


def test_only_the_committed_event_reaches_the_worker(worker):
    trader = TraderFactory()
    log_from = len(worker.text())
    received = worker.count(r"outbox_deliver\[[0-9a-f-]+\] received")

    with pytest.raises(RuntimeError), transaction.atomic():
        rolled_back = publish("client.email_confirmed", trader)
        raise RuntimeError("the caller fails after publishing")
    with transaction.atomic():
        committed = publish("client.email_confirmed", trader)

    wait_until_complete(committed)
    assert not Event.objects.filter(pk=rolled_back.pk).exists()
    assert list(Event.objects.filter(client=trader).values_list("pk", flat=True)) == [committed.pk]
    assert list(Notification.objects.filter(user=trader).values_list("event_id", flat=True)) == [
        committed.pk
    ]
    assert EventDelivery.objects.filter(event=committed).count() == 1
    assert worker.count(r"outbox_deliver\[[0-9a-f-]+\] received") == received + 1
    assert_no_task_errors(worker, log_from)


def test_concurrent_deliveries_of_one_pair_notify_once(worker):
    trader = TraderFactory()
    # A pending outbox row, as the sweeper finds it after a lost dispatch.
    event = Event.objects.create(name="security.2fa_enabled", client=trader)
    log_from = len(worker.text())

    task_ids = [outbox_deliver.delay(event.pk, NOTIFY).id for _ in range(10)]
    results = worker.wait_for_results(task_ids)

    assert sorted(results.values()) == ["False"] * 9 + ["True"]
    assert Notification.objects.filter(event=event).count() == 1
    assert EventDelivery.objects.filter(event=event).count() == 1
    event.refresh_from_db()
    assert event.completed_at is not None
    assert_no_task_errors(worker, log_from)
