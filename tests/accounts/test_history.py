"""The trading history at /room/history/: a trader's deals, filters, keyset
pages, the CSV export; and that another trader's deals never show."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import Deal
from accounts.selectors import deals as deal_selectors
from accounts.selectors.deals import DealCursor
from tests.factories import TraderFactory, open_trading_account

HISTORY = reverse("room:trading_history")
CSV = reverse("room:trading_history_csv")
T0 = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
_tickets = itertools.count(1_000_000)


def make_deal(account, **fields) -> Deal:
    """An unsaved deal of ``account``: sensible defaults, money in minor units."""
    close_time = fields.pop("close_time", T0)
    values = {
        "platform_id": account.platform_id,
        "ticket": next(_tickets),
        "account": account,
        "client_id": account.user_id,
        "symbol": "EURUSD",
        "side": Deal.BUY,
        "volume": Decimal("0.10"),
        "open_time": close_time - fields.pop("held", timedelta(hours=1)),
        "close_time": close_time,
        "open_price": Decimal("1.08000"),
        "close_price": Decimal("1.08100"),
        "profit": 1000,
        "commission": -70,
        "swap": 0,
    }
    values.update(fields)
    return Deal(**values)


def add_deals(account, specs: list[dict]) -> list[Deal]:
    return Deal.objects.bulk_create([make_deal(account, **spec) for spec in specs])


@pytest.fixture
def account(trader):
    return open_trading_account(trader)


@pytest.fixture
def signed_in(client, trader):
    client.force_login(trader)
    return client


@pytest.fixture
def other_account(db):
    return open_trading_account(TraderFactory())


def _ids(response) -> list[int]:
    return [deal.pk for deal in response.context["page"].deals]


def test_history_lists_the_traders_deals_newest_first(signed_in, account):
    older, newer = add_deals(
        account,
        [
            {
                "close_time": T0,
                "symbol": "USDJPY",
                "open_price": Decimal("151.2"),
                "close_price": Decimal("151.25"),
                "profit": -1234,
                "commission": -50,
                "swap": -16,
                "side": Deal.SELL,
                "volume": Decimal("1.5"),
                "held": timedelta(hours=3, minutes=5),
            },
            {"close_time": T0 + timedelta(hours=1), "profit": 250_000},
        ],
    )
    response = signed_in.get(HISTORY)
    assert response.status_code == 200
    assert _ids(response) == [newer.pk, older.pk]
    html = response.content.decode()
    assert account.login in html
    assert "151.200" in html and "151.250" in html  # USDJPY has 3 digits
    assert "1.50" in html and "3h 05m" in html
    assert "\u221212.34<" in html  # the profit, with a real minus sign, no currency
    assert "\u22120.50<" in html and "\u22120.16<" in html  # commission, swap
    assert "\u221213.00\u00a0USD" in html  # the net, with the account's currency
    assert "+2,499.30\u00a0USD" in html  # 2,500.00 − 0.70


def test_history_without_accounts_shows_how_to_open_one(client, trader):
    client.force_login(trader)
    response = client.get(HISTORY)
    assert response.status_code == 200
    assert "No trading accounts yet" in response.content.decode()


def test_history_without_deals_says_so(signed_in, account):
    response = signed_in.get(HISTORY)
    assert response.status_code == 200
    assert "No deals yet" in response.content.decode()


def test_history_needs_sign_in(client):
    for url in (HISTORY, CSV, reverse("room:trading_analytics")):
        response = client.get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


def test_another_traders_deals_never_show(signed_in, account, other_account):
    add_deals(account, [{"symbol": "EURUSD"}])
    add_deals(other_account, [{"symbol": "ZZOTHER", "profit": 987_654}])
    response = signed_in.get(HISTORY)
    assert [d.symbol for d in response.context["page"].deals] == ["EURUSD"]
    assert "ZZOTHER" not in response.content.decode()
    assert "9,876" not in response.content.decode()
    assert other_account.login not in response.content.decode()


@pytest.mark.parametrize("url", [HISTORY, CSV])
def test_another_traders_account_id_is_refused(signed_in, account, other_account, url):
    add_deals(other_account, [{"symbol": "ZZOTHER", "profit": 987_654}])
    response = signed_in.get(url, {"account": other_account.pk})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Choose one of your trading accounts." in html
    assert "ZZOTHER" not in html
    assert "9,876" not in html and other_account.login not in html


def test_filters_by_account_instrument_side_and_period(signed_in, account, trader):
    second = open_trading_account(trader, type_name="Standard EUR")
    a = add_deals(
        account,
        [
            {"symbol": "EURUSD", "side": Deal.BUY, "close_time": T0},
            {"symbol": "EURUSD", "side": Deal.SELL, "close_time": T0 + timedelta(days=1)},
            {"symbol": "XAUUSD", "side": Deal.BUY, "close_time": T0 + timedelta(days=2)},
            # The last moment of 12 March is still "to 2025-03-12".
            {
                "symbol": "EURUSD",
                "side": Deal.BUY,
                "close_time": datetime(2025, 3, 12, 23, 59, 59, tzinfo=UTC),
            },
        ],
    )
    b = add_deals(second, [{"symbol": "EURUSD", "side": Deal.BUY, "close_time": T0}])

    def ids(**params) -> set[int]:
        response = signed_in.get(HISTORY, params)
        assert response.status_code == 200, response.content
        return set(_ids(response))

    assert ids() == {d.pk for d in a + b}
    assert ids(account=second.pk) == {b[0].pk}
    assert ids(instrument="XAUUSD") == {a[2].pk}
    assert ids(side="sell") == {a[1].pk}
    assert ids(instrument="EURUSD", side="buy", account=account.pk) == {a[0].pk, a[3].pk}
    assert ids(date_from="2025-03-11", date_to="2025-03-12") == {a[1].pk, a[2].pk, a[3].pk}
    assert ids(date_to="2025-03-10") == {a[0].pk, b[0].pk}
    assert ids(instrument="GER40") == set()


def test_a_platform_symbol_not_among_the_instruments_can_be_filtered(signed_in, account):
    (deal,) = add_deals(account, [{"symbol": "EURUSD.m"}])
    response = signed_in.get(HISTORY, {"instrument": "EURUSD.m"})
    assert _ids(response) == [deal.pk]
    assert '<option value="EURUSD.m" selected>' in response.content.decode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"date_from": "yesterday"}, "Enter a date as YYYY-MM-DD."),
        ({"date_from": "2025-03-12", "date_to": "2025-03-01"}, "The end date is before"),
        ({"side": "short"}, "Choose buy or sell."),
        ({"instrument": "=HYPERLINK(1)"}, "Choose an instrument from the list."),
        ({"instrument": "X" * 40}, "Choose an instrument from the list."),
        ({"account": "abc"}, "Choose one of your trading accounts."),
        ({"account": "99999999999999999999999"}, "Choose one of your trading accounts."),
        ({"before": "nonsense"}, "This page link is not valid."),
        ({"before": "1_-5"}, "This page link is not valid."),
        ({"before": "99999999999999999999_1"}, "This page link is not valid."),
        ({"before": "1_99999999999999999999"}, "This page link is not valid."),
    ],
)
def test_bad_filters_give_a_clear_message(signed_in, account, params, message):
    add_deals(account, [{}])
    response = signed_in.get(HISTORY, params)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context.get("page") is None


def _walk(client, params: dict) -> list[int]:
    """Every deal id by following the "Older" links from the first page."""
    seen, url, pages = [], HISTORY, 0
    response = client.get(url, params)
    while True:
        assert response.status_code == 200
        seen += _ids(response)
        pages += 1
        older = response.context["older_url"]
        if not older:
            return seen
        assert "before=" in older and pages < 20
        response = client.get(older)


def test_keyset_pages_lose_and_repeat_nothing_with_ties_on_close_time(signed_in, account, trader):
    second = open_trading_account(trader)
    specs = []
    for i in range(130):  # groups of 7 deals closing at the same instant
        specs.append(
            {"close_time": T0 - timedelta(minutes=i // 7), "side": "buy" if i % 3 else "sell"}
        )
    deals = add_deals(account, specs[::2]) + add_deals(second, specs[1::2])
    expected = [d.pk for d in sorted(deals, key=lambda d: (d.close_time, d.pk), reverse=True)]

    walked = _walk(signed_in, {})
    assert walked == expected
    assert len(walked) == len(set(walked)) == 130

    sells = [
        d.pk
        for d in sorted(deals, key=lambda d: (d.close_time, d.pk), reverse=True)
        if d.side == "sell"
    ]
    assert _walk(signed_in, {"side": "sell"}) == sells


def test_page_cursor_is_exact_at_a_tie(signed_in, account):
    deals = add_deals(account, [{"close_time": T0} for _ in range(5)])
    ids = sorted(d.pk for d in deals)
    cursor = DealCursor(T0, ids[2]).encode()
    response = signed_in.get(HISTORY, {"before": cursor})
    assert _ids(response) == [ids[1], ids[0]]
    assert "← Newest" in response.content.decode()


def test_cursor_round_trip():
    moment = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=UTC)
    cursor = DealCursor(moment, 42)
    assert DealCursor.decode(cursor.encode()) == cursor
    assert DealCursor.decode("") is None
    assert DealCursor.decode("12") is None
    assert DealCursor.decode("a_b") is None


def test_htmx_filter_swaps_only_the_deals(signed_in, account):
    add_deals(account, [{}])
    params = {"account": "", "instrument": "", "side": "buy", "date_from": "", "date_to": ""}
    response = signed_in.get(HISTORY, params, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith("<section") and 'id="trading-deals"' in html
    assert "<html" not in html
    assert "HX-Request" in response["Vary"]
    assert response["HX-Push-Url"] == f"{HISTORY}?side=buy"  # without the empty fields


def _queries(client, url, params=None) -> int:
    client.get(url, params)  # warm: the session is cached after this
    with CaptureQueriesContext(__import__("django.db").db.connection) as ctx:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_history_query_count_is_constant(signed_in, account, trader, django_assert_max_num_queries):
    add_deals(account, [{"close_time": T0 - timedelta(minutes=i)} for i in range(3)])
    few = _queries(signed_in, HISTORY)
    for type_name in ("Standard EUR", "Standard USD", "Demo USD"):
        more = open_trading_account(trader, type_name=type_name)
        add_deals(more, [{"close_time": T0 - timedelta(seconds=i)} for i in range(80)])
    many = _queries(signed_in, HISTORY)
    filtered = _queries(signed_in, HISTORY, {"instrument": "EURUSD", "side": "buy"})
    assert few == many == filtered
    # The user, the accounts, the instruments, one page of deals.
    with django_assert_max_num_queries(4):
        signed_in.get(HISTORY, {"date_from": "2025-01-01"})


# --- CSV -------------------------------------------------------------------------------


def _csv(response) -> list[list[str]]:
    assert isinstance(response, StreamingHttpResponse)
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_csv_has_the_filtered_deals_with_exact_numbers(signed_in, account, other_account):
    add_deals(
        account,
        [
            {
                "close_time": T0,
                "symbol": "XAUUSD",
                "open_price": Decimal("2301.5"),
                "close_price": Decimal("2290.25"),
                "profit": -112_50,
                "commission": -7,
                "swap": -1,
                "side": Deal.SELL,
                "volume": Decimal("0.0100"),
            },
            {"close_time": T0 + timedelta(hours=1), "symbol": "EURUSD"},
        ],
    )
    add_deals(other_account, [{"symbol": "XAUUSD", "close_time": T0}])
    response = signed_in.get(CSV, {"instrument": "XAUUSD"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="trading-history-')
    assert response["Cache-Control"] == "private, no-store"
    header, *rows = _csv(response)
    assert header[:4] == ["ticket", "account", "currency", "symbol"]
    assert len(rows) == 1
    row = dict(zip(header, rows[0], strict=True))
    assert row["account"] == account.login and row["currency"] == "USD"
    assert row["side"] == "sell" and row["volume"] == "0.01"
    assert (
        row["open_time"] == "2025-03-10T11:00:00Z" and row["close_time"] == "2025-03-10T12:00:00Z"
    )
    assert row["open_price"] == "2301.50" and row["close_price"] == "2290.25"
    assert row["profit"] == "-112.50" and row["commission"] == "-0.07" and row["swap"] == "-0.01"
    assert row["net"] == "-112.58"


def test_csv_neutralises_formulas(signed_in, account):
    add_deals(account, [{"symbol": "=1+2"}, {"symbol": "@SUM(A1)"}])
    rows = _csv(signed_in.get(CSV))
    symbols = sorted(r[3] for r in rows[1:])
    assert symbols == ["'=1+2", "'@SUM(A1)"]
    # Our own numbers stay numbers.
    assert rows[1][10].startswith("-") or rows[1][10][0].isdigit()


def test_csv_streams_every_deal_in_keyset_chunks(signed_in, account, monkeypatch):
    monkeypatch.setattr(deal_selectors, "EXPORT_CHUNK", 4)
    deals = add_deals(account, [{"close_time": T0 - timedelta(minutes=i // 3)} for i in range(23)])
    rows = _csv(signed_in.get(CSV))
    expected = sorted(deals, key=lambda d: (d.close_time, d.pk), reverse=True)
    assert [int(r[0]) for r in rows[1:]] == [d.ticket for d in expected]


def test_csv_ignores_a_page_cursor(signed_in, account):
    deals = add_deals(account, [{"close_time": T0 - timedelta(minutes=i)} for i in range(3)])
    cursor = DealCursor(deals[0].close_time, deals[0].pk).encode()
    assert len(_csv(signed_in.get(CSV, {"before": cursor}))) == 4


def test_an_invalid_choice_is_marked_for_screen_readers(signed_in, account):
    html = signed_in.get(HISTORY, {"side": "short"}).content.decode()
    select = html.split('<select name="side"', 1)[1].split(">", 1)[0]
    assert 'aria-invalid="true"' in select and 'aria-describedby="id_side_error"' in select
    assert 'id="id_side_error"' in html
