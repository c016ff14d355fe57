"""Deal ingestion from a platform's feed: idempotent by ticket, unknown logins
counted and skipped, money rounded half-even to the account's minor units,
one event per ingest naming its id range, and the per-platform cursor sync
(through the demo gateway) with its errors kept on the platform row."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.models import Deal, DemoPlatformDeal, Platform, TradingAccount
from accounts.platforms.base import DealRecord, PlatformError
from accounts.platforms.demo import DemoGateway
from accounts.services import deals as deal_services
from accounts.services.deals import (
    IngestResult,
    deals_ingest,
    deals_sync_all,
    deals_sync_platform,
)
from backoffice.models import Event
from backoffice.money import to_minor
from tests.factories import TraderFactory, open_trading_account

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def record(ticket: int, login: str, profit: str = "10.00", **changes) -> DealRecord:
    values = {
        "ticket": ticket,
        "login": login,
        "symbol": "EURUSD",
        "side": "buy",
        "volume": Decimal("0.10"),
        "open_time": T0 + timedelta(minutes=ticket),
        "close_time": T0 + timedelta(minutes=ticket, seconds=90),
        "open_price": Decimal("1.08512"),
        "close_price": Decimal("1.08612"),
        "profit": Decimal(profit),
        "commission": Decimal("-0.70"),
        "swap": Decimal("0"),
    }
    values.update(changes)
    return DealRecord(**values)


@pytest.fixture
def demo() -> Platform:
    return Platform.objects.get(identifier="demo")


@pytest.fixture
def account(trader) -> TradingAccount:
    return open_trading_account(trader)


def test_deal_belongs_to_the_account_and_its_owner(demo, account, trader):
    result = deals_ingest(platform=demo, records=[record(1, account.login, "12.34")])
    assert result.added == 1 and result.duplicates == 0
    deal = Deal.objects.get()
    assert (deal.platform, deal.ticket, deal.account, deal.client) == (demo, 1, account, trader)
    assert (deal.profit, deal.commission, deal.swap) == (1234, -70, 0)
    assert deal.volume == Decimal("0.1") and deal.close_price == Decimal("1.08612")
    assert deal.close_time == T0 + timedelta(minutes=1, seconds=90)


def test_same_records_twice_add_nothing_the_second_time(demo, account):
    records = [record(n, account.login) for n in range(1, 6)]
    first = deals_ingest(platform=demo, records=records)
    second = deals_ingest(platform=demo, records=records)
    assert (first.added, first.duplicates) == (5, 0)
    assert (second.added, second.duplicates) == (0, 5)
    assert second.first_id is None and second.last_id is None
    assert Deal.objects.count() == 5


def test_overlapping_batches_add_only_the_new_deals(demo, account):
    deals_ingest(
        platform=demo, records=[record(n, account.login) for n in range(1, 11)], batch_size=4
    )
    result = deals_ingest(
        platform=demo, records=[record(n, account.login) for n in range(6, 16)], batch_size=3
    )
    assert (result.added, result.duplicates) == (5, 5)
    assert sorted(Deal.objects.values_list("ticket", flat=True)) == list(range(1, 16))


def test_a_ticket_twice_in_one_input_is_stored_once(demo, account):
    result = deals_ingest(
        platform=demo, records=[record(7, account.login, "1"), record(7, account.login, "2")]
    )
    assert (result.added, result.duplicates) == (1, 1)
    assert Deal.objects.get().profit == 100  # the first one wins


def test_same_ticket_on_another_platform_is_another_deal(demo, account, trader):
    other = Platform.objects.create(identifier="demo-b", kind="demo", name="Demo B")
    other_account = TradingAccount.objects.create(
        user=trader,
        platform=other,
        account_type=account.account_type,
        login=account.login,
        currency="USD",
        leverage=100,
    )
    deals_ingest(platform=demo, records=[record(1, account.login)])
    result = deals_ingest(platform=other, records=[record(1, account.login)])
    assert result.added == 1
    assert Deal.objects.get(platform=other).account == other_account


def test_unknown_logins_are_skipped_and_counted_never_guessed(demo, account):
    result = deals_ingest(
        platform=demo,
        records=[
            record(1, account.login),
            record(2, "999999"),
            record(3, "999999"),
            record(4, "x"),
        ],
    )
    assert (result.added, result.unknown_logins) == (1, 3)
    assert result.unknown_login_sample == ("999999", "x")
    assert list(Deal.objects.values_list("ticket", flat=True)) == [1]
    assert "3 of unknown logins (999999, x)" in result.describe()


def test_records_that_cannot_be_stored_are_skipped_and_counted(demo, account):
    result = deals_ingest(
        platform=demo,
        records=[
            record(1, account.login, side="hold"),
            record(2, account.login, profit="NaN"),
            record(3, account.login, symbol=""),
            record(4, account.login, side="SELL"),
        ],
    )
    assert (result.added, result.invalid) == (1, 3)
    assert Deal.objects.get().side == "sell"


def test_money_is_rounded_half_even_to_the_accounts_minor_units(demo, account):
    profits = ["0.125", "0.135", "-0.125", "-0.005", "1.005", "2.675"]
    deals_ingest(
        platform=demo, records=[record(n, account.login, p) for n, p in enumerate(profits, 1)]
    )
    assert list(Deal.objects.order_by("ticket").values_list("profit", flat=True)) == [
        12,
        14,
        -12,
        0,
        100,
        268,
    ]


def test_minor_units_follow_the_accounts_currency_digits(demo, account):
    TradingAccount.objects.filter(pk=account.pk).update(currency_digits=3)
    deals_ingest(
        platform=demo, records=[record(1, account.login, "1.2345", commission=Decimal("-0.0005"))]
    )
    deal = Deal.objects.get()
    assert (deal.profit, deal.commission) == (1234, 0)


@settings(max_examples=300, deadline=None)
@given(
    amount=st.decimals(
        min_value=Decimal("-1e12"), max_value=Decimal("1e12"), allow_nan=False, places=6
    ),
    digits=st.integers(min_value=0, max_value=8),
)
def test_minor_conversion_matches_the_money_helper(amount, digits):
    expected = to_minor(amount, digits, rounding=ROUND_HALF_EVEN)
    if abs(expected) > deal_services.BIGINT:  # a deal row cannot hold it: refused
        with pytest.raises(ValueError, match="too large"):
            deal_services._minor(amount, digits, "profit")
    else:
        assert deal_services._minor(amount, digits, "profit") == expected


def test_naive_times_are_taken_as_utc(demo, account):
    naive = datetime(2026, 1, 5, 12, 0)
    deals_ingest(
        platform=demo,
        records=[record(1, account.login, open_time=naive, close_time=naive + timedelta(hours=1))],
    )
    assert Deal.objects.get().open_time == naive.replace(tzinfo=UTC)


def test_times_keep_their_microseconds(demo, account):
    opened = datetime(2026, 3, 2, 9, 30, 1, 123457, tzinfo=UTC)
    closed = datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    deals_ingest(
        platform=demo, records=[record(1, account.login, open_time=opened, close_time=closed)]
    )
    deal = Deal.objects.get()
    assert (deal.open_time, deal.close_time) == (opened, closed)


def test_one_event_per_ingest_names_its_platform_count_and_id_range(demo, account):
    deals_ingest(
        platform=demo, records=[record(n, account.login) for n in range(1, 8)], batch_size=3
    )
    event = Event.objects.get(name="deals.imported")
    ids = list(Deal.objects.order_by("id").values_list("id", flat=True))
    assert event.payload == {"platform": "demo", "count": 7, "first_id": ids[0], "last_id": ids[-1]}
    assert event.subject_id == str(demo.pk)
    in_range = Deal.objects.filter(platform=demo, id__range=(ids[0], ids[-1]))
    assert in_range.count() == 7
    # The ids follow the records' order (oldest first).
    assert list(Deal.objects.order_by("id").values_list("ticket", flat=True)) == list(range(1, 8))


def test_an_ingest_that_adds_nothing_publishes_nothing(demo, account):
    deals_ingest(platform=demo, records=[record(1, account.login)])
    deals_ingest(platform=demo, records=[record(1, account.login), record(2, "nobody")])
    deals_ingest(platform=demo, records=[])
    assert Event.objects.filter(name="deals.imported").count() == 1


def test_ingest_queries_do_not_grow_with_the_records(demo, account, django_assert_max_num_queries):
    deals_ingest(platform=demo, records=[record(1, account.login)])  # warm caches
    with django_assert_max_num_queries(12):
        deals_ingest(platform=demo, records=[record(n, account.login) for n in range(2, 3002)])
    assert Deal.objects.count() == 3001


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingests_of_one_platform_get_disjoint_id_ranges():
    if connection.vendor != "postgresql":
        pytest.skip("row locks and concurrent writers need PostgreSQL")
    demo = Platform.objects.get(identifier="demo")
    account = open_trading_account(TraderFactory())
    errors: list[BaseException] = []

    def ingest(start: int) -> None:
        try:
            records = [record(n, account.login) for n in range(start, start + 3000)]
            deals_ingest(platform=demo, records=records, batch_size=500)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=ingest, args=(start,)) for start in (1, 100_001, 200_001)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    events = list(Event.objects.filter(name="deals.imported"))
    assert len(events) == 3
    for event in events:
        p = event.payload
        tickets = list(
            Deal.objects.filter(platform=demo, id__range=(p["first_id"], p["last_id"])).values_list(
                "ticket", flat=True
            )
        )
        assert len(tickets) == p["count"] == 3000
        assert max(tickets) - min(tickets) == 2999  # one ingest's tickets, no one else's


# --- Syncing through the demo gateway ---------------------------------------------


def platform_deal(
    platform: Platform, login: str, profit: int = 1000, **changes
) -> DemoPlatformDeal:
    values = {
        "platform": platform,
        "login": login,
        "symbol": "XAUUSD",
        "side": "sell",
        "volume": Decimal("0.5"),
        "open_time": T0,
        "close_time": T0 + timedelta(minutes=5),
        "open_price": Decimal("2310.15"),
        "close_price": Decimal("2309.40"),
        "profit": profit,
        "commission": -350,
        "swap": -12,
    }
    values.update(changes)
    return DemoPlatformDeal.objects.create(**values)


def test_sync_pulls_every_page_from_the_cursor_and_stores_it(demo, account):
    made = [platform_deal(demo, account.login, profit=n * 100) for n in range(1, 6)]
    result = deals_sync_platform(platform=demo, page_size=2)
    assert (result.added, result.duplicates) == (5, 0)
    demo.refresh_from_db()
    assert demo.deals_cursor == str(made[-1].pk)
    assert demo.deals_synced_at is not None and demo.last_error == ""
    assert sorted(Deal.objects.values_list("ticket", flat=True)) == [d.pk for d in made]
    deal = Deal.objects.get(ticket=made[2].pk)
    assert (deal.profit, deal.commission, deal.swap, deal.side) == (300, -350, -12, "sell")
    # One event per page (2 + 2 + 1), each its own id range.
    counts = [
        e.payload["count"] for e in Event.objects.filter(name="deals.imported").order_by("id")
    ]
    assert counts == [2, 2, 1]

    assert deals_sync_platform(platform=demo).added == 0  # nothing new
    newer = platform_deal(demo, account.login)
    assert deals_sync_platform(platform=demo).added == 1
    demo.refresh_from_db()
    assert demo.deals_cursor == str(newer.pk)


def test_sync_skips_deals_of_accounts_we_do_not_have(demo, account):
    platform_deal(demo, account.login)
    platform_deal(demo, "424242")
    result = deals_sync_platform(platform=demo)
    assert (result.added, result.unknown_logins) == (1, 1)
    demo.refresh_from_db()
    assert demo.deals_cursor  # moved past it: it is reported, not retried forever


def test_a_page_that_fails_to_save_keeps_the_cursor_before_it(demo, account, monkeypatch):
    made = [platform_deal(demo, account.login) for _ in range(4)]
    real_insert = deal_services._Stage.insert
    calls = []

    def insert_then_fail_on_second_page(self, *args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real_insert(self, *args)

    monkeypatch.setattr(deal_services._Stage, "insert", insert_then_fail_on_second_page)
    with pytest.raises(RuntimeError):
        deals_sync_platform(platform=demo, page_size=2)
    demo.refresh_from_db()
    assert demo.deals_cursor == str(made[1].pk)  # the first page, with its deals
    assert Deal.objects.count() == 2
    monkeypatch.setattr(deal_services._Stage, "insert", real_insert)
    assert deals_sync_platform(platform=demo, page_size=2).added == 2  # the rest, once


def test_sync_stops_when_another_sync_moved_the_cursor(demo, account, monkeypatch):
    platform_deal(demo, account.login)
    real = DemoGateway.deals_since

    def meanwhile_another_sync(self, cursor, *, limit=10_000):
        page = real(self, cursor, limit=limit)
        Platform.objects.filter(pk=demo.pk).update(deals_cursor="moved-by-another-worker")
        return page

    monkeypatch.setattr(DemoGateway, "deals_since", meanwhile_another_sync)
    result = deals_sync_platform(platform=demo)
    assert result == IngestResult()
    assert not Deal.objects.exists()
    demo.refresh_from_db()
    assert demo.deals_cursor == "moved-by-another-worker"


def test_a_platform_error_is_kept_on_the_platform_and_cleared_by_success(
    demo, account, monkeypatch
):
    platform_deal(demo, account.login)
    real = DemoGateway.deals_since

    def unreachable(self, cursor, *, limit=10_000):
        raise PlatformError("connection refused by 10.0.0.7:443")

    monkeypatch.setattr(DemoGateway, "deals_since", unreachable)
    with pytest.raises(PlatformError):
        deals_sync_platform(platform=demo)
    demo.refresh_from_db()
    assert "connection refused by 10.0.0.7:443" in demo.last_error
    assert demo.deals_cursor == "" and demo.deals_synced_at is None

    monkeypatch.setattr(DemoGateway, "deals_since", real)
    assert deals_sync_platform(platform=demo).added == 1
    demo.refresh_from_db()
    assert demo.last_error == ""


def test_a_platform_whose_cursor_does_not_move_is_an_error_not_a_loop(demo, monkeypatch):
    from accounts.platforms.base import DealsPage

    monkeypatch.setattr(
        DemoGateway,
        "deals_since",
        lambda self, cursor, *, limit=10_000: DealsPage([], cursor, True),
    )
    with pytest.raises(PlatformError, match="cursor did not move"):
        deals_sync_platform(platform=demo)
    demo.refresh_from_db()
    assert "cursor did not move" in demo.last_error


def test_sync_all_goes_on_after_a_failing_platform_and_skips_file_platforms(
    demo, account, monkeypatch
):
    broken = Platform.objects.create(identifier="a-broken", kind="demo", name="Broken")
    Platform.objects.create(identifier="reports", kind="file", name="Reports")
    Platform.objects.create(identifier="off", kind="demo", name="Off", enabled=False)
    Platform.objects.create(identifier="b-unknown-kind", kind="nonesuch", name="Unknown")
    platform_deal(demo, account.login)
    real = DemoGateway.deals_since

    def broken_one_fails(self, cursor, *, limit=10_000):
        if self.platform.identifier == "a-broken":
            raise PlatformError("maintenance window")
        return real(self, cursor, limit=limit)

    monkeypatch.setattr(DemoGateway, "deals_since", broken_one_fails)
    outcome = deals_sync_all()
    assert outcome["a-broken"] == "error: maintenance window"
    assert outcome["demo"].startswith("ok: 1 added")
    assert outcome["b-unknown-kind"].startswith("error:")
    assert "reports" not in outcome and "off" not in outcome
    broken.refresh_from_db()
    assert "maintenance window" in broken.last_error
    assert Deal.objects.count() == 1


def test_the_beat_task_runs_the_sync(demo, account):
    from accounts.tasks import deals_sync_all as task

    platform_deal(demo, account.login)
    outcome = task.delay().get()
    assert outcome["demo"].startswith("ok: 1 added")
