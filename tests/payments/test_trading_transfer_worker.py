"""A worker dies between the two steps of a trading transfer, for real.

A real Celery worker (its own process, a private Redis) runs the transfer
task against a platform that applies the balance operation and then hangs;
the test kills the worker's whole process group with SIGKILL at that moment.
A fresh worker then runs the sweeper, which asks the platform, finds the
operation by its key and finishes the transfer: the money moved once on
both sides. The worker's log is in ``test-artifacts/trading-worker.log``.
"""

from __future__ import annotations

import os
import signal
import uuid
from decimal import Decimal

import pytest

from accounts.models import DemoPlatformAccount, DemoPlatformOperation, Platform
from payments import services
from payments.models import TradingTransfer
from payments.selectors.wallets import ledger_check, system_account_balance
from payments.services.trading import trading_transfer_in, trading_transfer_out
from payments.tasks import trading_transfers_sweep
from tests.backoffice.test_outbox_worker import PrivateRedis, Worker, wait_for
from tests.backoffice.test_outbox_worker import services as worker_services
from tests.factories import TraderFactory, open_trading_account

from . import hanging_gateway  # noqa: F401 - registers the "hanging" gateway here too

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

WORKER_ENV = {"TRADING_TRANSFER_STALE_AFTER": "0", "TRADING_TRANSFER_RETRY_AFTER": "0"}


services_available = worker_services  # the fixture: skip locally, fail in CI without them


@pytest.fixture(scope="module")
def broker(services_available, tmp_path_factory):
    redis = PrivateRedis(tmp_path_factory.mktemp("redis"))
    try:
        redis.start()
        yield redis
    finally:
        redis.stop()


@pytest.fixture
def new_worker(broker):
    started: list[Worker] = []
    queue = f"trading-test-{uuid.uuid4().hex[:10]}"

    def start() -> Worker:
        worker = Worker(
            broker,
            queue,
            log_name="trading-worker.log" if not started else "trading-worker-2.log",
            include=("tests.payments.hanging_gateway",),
            env=WORKER_ENV,
        )
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(autouse=True)
def celery_to_the_worker(broker, new_worker):
    from backoffice.celery import app

    keys = ("broker_url", "task_default_queue", "task_always_eager")
    saved = {key: app.conf[key] for key in keys}
    app.conf.broker_url = broker.url
    app.conf.task_always_eager = False
    app._pool = None
    app.amqp._producer_pool = None
    yield app
    app.conf.update(saved)
    app._pool = None
    app.amqp._producer_pool = None


def kill(worker: Worker) -> None:
    """SIGKILL the worker's process group: no warm shutdown, no ack."""
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait()
    worker.process = None


def funded_account(hang_seconds: int):
    Platform.objects.filter(identifier="demo").update(
        kind="hanging", settings={"hang_seconds": hang_seconds}
    )
    trader = TraderFactory()
    wallet = services.wallet_open(user=trader, currency="USD")
    services.ledger_post(
        kind="test_funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
        lines=[
            services.Line(wallet, 100_000),
            services.Line(services.system_account("funding", "USD"), -100_000),
        ],
    )
    return trader, wallet, open_trading_account(trader)


def platform_state(account):
    clearing = services.system_account(f"platform:{account.platform.identifier}", "USD")
    return (
        DemoPlatformAccount.objects.get(login=account.login).balance,
        system_account_balance(account=clearing),
    )


def settle_with_a_fresh_worker(new_worker, transfer: TradingTransfer, app) -> TradingTransfer:
    Platform.objects.filter(identifier="demo").update(settings={"hang_seconds": 0})
    worker = new_worker()
    app.conf.task_default_queue = worker.queue
    trading_transfers_sweep.delay()
    return wait_for(
        lambda: TradingTransfer.objects.filter(
            pk=transfer.pk, status=TradingTransfer.COMPLETED
        ).first(),
        timeout=30,
        what="the sweeper to finish the transfer",
        interval=0.2,
    )


def test_killed_after_the_platform_credit_then_settled_by_the_sweeper(
    new_worker, celery_to_the_worker
):
    app = celery_to_the_worker
    trader, wallet, account = funded_account(hang_seconds=120)
    worker = new_worker()
    app.conf.task_default_queue = worker.queue

    transfer = trading_transfer_in(
        user=trader, account=account, wallet=wallet, amount=Decimal("250.00"), idempotency_key="k"
    )
    wait_for(
        lambda: DemoPlatformOperation.objects.filter(key=transfer.reference).exists(),
        timeout=30,
        what="the platform to apply the credit",
        interval=0.1,
    )
    kill(worker)

    transfer.refresh_from_db()
    assert transfer.status == TradingTransfer.SENDING  # died mid-call
    wallet.refresh_from_db()
    assert wallet.balance == 75_000
    assert platform_state(account) == (25_000, 25_000)

    done = settle_with_a_fresh_worker(new_worker, transfer, app)
    assert done.platform_ticket
    assert DemoPlatformOperation.objects.filter(login=account.login).count() == 1
    assert platform_state(account) == (25_000, 25_000)
    assert ledger_check().ok


def test_killed_between_the_platform_debit_and_the_wallet_credit(new_worker, celery_to_the_worker):
    app = celery_to_the_worker
    trader, wallet, account = funded_account(hang_seconds=0)
    worker = new_worker()
    app.conf.task_default_queue = worker.queue
    first = trading_transfer_in(
        user=trader, account=account, wallet=wallet, amount=Decimal("250.00"), idempotency_key="a"
    )
    wait_for(
        lambda: TradingTransfer.objects.filter(pk=first.pk, status="completed").exists(),
        timeout=30,
        what="the transfer in",
        interval=0.1,
    )
    Platform.objects.filter(identifier="demo").update(settings={"hang_seconds": 120})
    account.refresh_from_db()
    out = trading_transfer_out(
        user=trader, account=account, wallet=wallet, amount=Decimal("100.00"), idempotency_key="b"
    )
    wait_for(
        lambda: DemoPlatformOperation.objects.filter(key=out.reference).exists(),
        timeout=30,
        what="the platform to apply the debit",
        interval=0.1,
    )
    kill(worker)

    out.refresh_from_db()
    assert out.status == TradingTransfer.SENDING and out.journal_id is None
    wallet.refresh_from_db()
    assert wallet.balance == 75_000  # not credited yet
    assert platform_state(account) == (15_000, 25_000)  # the platform paid out

    done = settle_with_a_fresh_worker(new_worker, out, app)
    assert done.journal_id is not None
    wallet.refresh_from_db()
    assert wallet.balance == 85_000
    assert platform_state(account) == (15_000, 15_000)
    assert DemoPlatformOperation.objects.filter(login=account.login).count() == 2
    assert ledger_check().ok
