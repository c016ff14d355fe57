"""Accrual as it runs for real: ``deals_ingest`` publishes ``deals.imported``,
the IB subscriber enqueues ``ib.tasks.accrue_deals``, the task runs the
service; re-imports and second deliveries change nothing; two runs at once
never pay twice nor past a period cap (PostgreSQL, threads); and once with
a real Celery worker on Redis."""

from __future__ import annotations

import shutil
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection

from accounts.models import Deal, Platform
from accounts.platforms.base import DealRecord
from accounts.services.deals import deals_ingest
from backoffice.celery import app
from backoffice.models import Event, EventDelivery
from backoffice.services import event_deliver
from ib import subscribers, tasks
from ib.models import AccrualRun, Commission
from ib.services.accrual import accrual_run
from tests.backoffice.test_outbox_worker import CELERY, PrivateRedis, Worker, wait_for
from tests.conftest import require_or_skip
from tests.ib.test_accrual import chain, client_of, deal, paid, plan, recently
from tests.payments.test_withdrawals import run_in_threads

SUBSCRIBER = "ib.accrue_imported_deals"


def records(login: str, tickets, *, lots: str = "1", at=None) -> list[DealRecord]:
    at = at or recently()
    return [
        DealRecord(
            ticket=ticket,
            login=login,
            symbol="EURUSD",
            side="buy",
            volume=Decimal(lots),
            open_time=at - timedelta(hours=1),
            close_time=at + timedelta(seconds=ticket),
            open_price=Decimal("1.08512"),
            close_price=Decimal("1.08612"),
            profit=Decimal("10"),
            commission=Decimal("-0.70"),
        )
        for ticket in tickets
    ]


def ingest(captured, platform, rows):
    with captured(execute=True):
        return deals_ingest(platform=platform, records=rows)


@pytest.mark.django_db
def test_ingest_event_task_rows(django_capture_on_commit_callbacks):
    p = plan("10", tier_shares="70, 30")
    top, bottom = chain(p, p)
    acct = client_of(bottom)
    demo = Platform.objects.get(identifier="demo")

    result = ingest(django_capture_on_commit_callbacks, demo, records(acct.login, range(1, 4)))

    assert result.added == 3
    event = Event.objects.get(name="deals.imported")
    assert EventDelivery.objects.filter(event=event, subscriber=SUBSCRIBER).exists()
    deals = list(Deal.objects.order_by("id"))
    for d in deals:
        assert paid(d) == {bottom.pk: 700, top.pk: 300}
    run = AccrualRun.objects.get()
    assert (run.first_deal, run.last_deal, run.deals, run.commissions) == (
        deals[0].pk,
        deals[-1].pk,
        3,
        6,
    )


@pytest.mark.django_db
def test_reimport_and_a_second_delivery_pay_nothing_twice(django_capture_on_commit_callbacks):
    (partner,) = chain(plan("10"))
    acct = client_of(partner)
    demo = Platform.objects.get(identifier="demo")
    rows = records(acct.login, range(1, 6))
    ingest(django_capture_on_commit_callbacks, demo, rows)
    before = sorted(Commission.objects.values_list("deal_id", "partner_id", "amount"))
    assert len(before) == 5

    again = ingest(django_capture_on_commit_callbacks, demo, rows)  # the same report again
    event = Event.objects.get(name="deals.imported")
    assert again.added == 0 and Event.objects.filter(name="deals.imported").count() == 1
    assert event_deliver(event_id=event.pk, subscriber_id=SUBSCRIBER) is False
    subscribers.accrue_imported_deals(event)  # delivered twice regardless
    subscribers.accrue_imported_deals(event)
    assert tasks.accrue_deals(event.payload["first_id"], event.payload["last_id"]) == 0

    assert sorted(Commission.objects.values_list("deal_id", "partner_id", "amount")) == before
    assert list(AccrualRun.objects.values_list("commissions", flat=True)) == [0, 0, 0, 5]


@pytest.mark.django_db
def test_an_import_is_accrued_for_its_platform_only(django_capture_on_commit_callbacks):
    (partner,) = chain(plan("10"))
    acct = client_of(partner)
    demo = Platform.objects.get(identifier="demo")
    ingest(django_capture_on_commit_callbacks, demo, records(acct.login, [1]))
    event = Event.objects.get(name="deals.imported")
    run = AccrualRun.objects.get()
    assert event.subject_id == str(demo.pk) and run.deals == 1


@pytest.mark.django_db
def test_the_task_splits_a_big_range_into_runs_in_order(monkeypatch):
    (partner,) = chain(plan("10"))
    acct = client_of(partner)
    demo = Platform.objects.get(identifier="demo")
    deals_ingest(platform=demo, records=records(acct.login, range(1, 8)))
    ids = list(Deal.objects.order_by("id").values_list("id", flat=True))
    monkeypatch.setattr(tasks, "ACCRUAL_TASK_CHUNK", 3)

    assert tasks.accrue_deals(ids[0], ids[-1], demo.pk) == 7

    runs = list(AccrualRun.objects.order_by("id").values_list("first_deal", "last_deal"))
    assert runs == [(ids[0], ids[0] + 2), (ids[0] + 3, ids[0] + 5), (ids[0] + 6, ids[-1])]
    assert Commission.objects.filter(kind="deal").count() == 7


@pytest.mark.django_db
def test_a_subscriber_ignores_an_event_without_a_range():
    event = Event.objects.create(name="deals.imported", payload={"count": 0})
    subscribers.accrue_imported_deals(event)
    assert not AccrualRun.objects.exists()


# --- Two runs at once, for real (PostgreSQL) -------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_on_overlapping_ranges_never_pay_twice_nor_past_the_cap():
    require_or_skip(connection.vendor == "postgresql", "the accrual lock needs PostgreSQL")
    p = plan("10", tier_shares="60, 40", cap_per_period=Decimal("150"), cap_period="month")
    top, bottom = chain(p, p)
    at = recently(3).replace(day=1, hour=12, minute=0)  # 240 deals within one month
    for _ in range(4):
        acct = client_of(bottom)
        for n in range(60):  # straight into the table: no event, no accrual yet
            deal(acct, closed=at + timedelta(seconds=n))
    ids = list(Deal.objects.order_by("id").values_list("id", flat=True))
    assert len(ids) == 240
    middle = ids[120]

    results = run_in_threads(
        lambda: accrual_run(first_deal_id=ids[0], last_deal_id=middle + 40),
        lambda: accrual_run(first_deal_id=middle - 40, last_deal_id=ids[-1]),
    )

    assert all(not isinstance(r, BaseException) for r in results), results
    rows = Commission.objects.filter(kind="deal")
    assert sum(r.commissions for r in results) == rows.count()
    pairs = list(rows.values_list("deal_id", "partner_id"))
    assert len(pairs) == len(set(pairs))
    # Each earns 6 or 4 USD a deal, at most 150 USD in the month: the cap holds.
    assert sum(paid_to(top)) == 15_000 and sum(paid_to(bottom)) == 15_000
    assert sorted(paid_to(bottom))[-1] == 600
    # And the runs did not overlap in time: one waited for the other's lock.
    a, b = sorted(AccrualRun.objects.all(), key=lambda r: r.started_at)
    assert a.finished_at <= b.started_at


def paid_to(partner) -> list[int]:
    return list(
        Commission.objects.filter(kind="deal", partner=partner).values_list("amount", flat=True)
    )


# --- With a real worker ------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.timeout(180)
@pytest.mark.django_db(transaction=True)
def test_imported_deals_are_accrued_by_a_real_worker(tmp_path_factory):
    require_or_skip(connection.vendor == "postgresql", "a worker process needs PostgreSQL")
    require_or_skip(bool(shutil.which("redis-server")), "redis-server is not installed")
    require_or_skip(CELERY.exists(), f"{CELERY} is not installed")

    p = plan("10", tier_shares="70, 30")
    top, bottom = chain(p, p)
    acct = client_of(bottom)
    demo = Platform.objects.get(identifier="demo")

    broker = PrivateRedis(tmp_path_factory.mktemp("redis"))
    queue = f"accrual-test-{uuid.uuid4().hex[:10]}"
    # The worker also takes the default queue: the subscriber it runs enqueues there.
    worker = Worker(broker, f"{queue},celery", log_name="accrual-worker.log")
    keys = ("broker_url", "task_default_queue", "task_always_eager")
    saved = {key: app.conf[key] for key in keys}
    try:
        broker.start()
        worker.start()
        app.conf.update(broker_url=broker.url, task_default_queue=queue, task_always_eager=False)
        app._pool = None
        app.amqp._producer_pool = None

        deals_ingest(platform=demo, records=records(acct.login, range(1, 11)))  # commits

        wait_for(
            lambda: Commission.objects.filter(kind="deal").count() == 20,
            timeout=60,
            what="the worker to accrue the imported deals",
            interval=0.2,
        )
        for d in Deal.objects.all():
            assert paid(d) == {bottom.pk: 700, top.pk: 300}
        event = Event.objects.get(name="deals.imported")
        wait_for(
            lambda: Event.objects.filter(pk=event.pk, completed_at__isnull=False).exists(),
            timeout=30,
            what="the event to be complete",
        )
        # Delivered again and the task sent again: nothing more.
        tasks.accrue_deals.delay(event.payload["first_id"], event.payload["last_id"])
        wait_for(
            lambda: AccrualRun.objects.filter(finished_at__isnull=False).count() == 2,
            timeout=60,
            what="the second run",
            interval=0.2,
        )
        assert Commission.objects.filter(kind="deal").count() == 20
        assert sorted(AccrualRun.objects.values_list("commissions", flat=True)) == [0, 20]
    finally:
        app.conf.update(saved)
        app._pool = None
        app.amqp._producer_pool = None
        worker.stop()
        broker.stop()
