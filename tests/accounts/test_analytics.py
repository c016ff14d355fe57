"""Trading analytics at /room/history/analytics/: figures checked against
small data sets computed by hand, periods, scopes (one account, all accounts
of one currency, never two currencies summed), another trader's deals, and
a bounded number of queries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.selectors.deals import deal_analytics
from tests.accounts.test_history import add_deals
from tests.factories import TraderFactory, open_trading_account

ANALYTICS = reverse("room:trading_analytics")


def _noon(days_ago: int) -> datetime:
    today = timezone.localdate()
    day = today - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


# Four trades, by hand (minor units, cents):
#   EURUSD buy 1.00, +100.00 profit, −7.00 commission → net +93.00, held 2 h
#   EURUSD sell 0.50, −50.00, −3.50, −1.50 swap       → net −55.00, held 30 min
#   XAUUSD buy 0.10, +20.00                            → net +20.00, held 1 day
#   GBPUSD buy 0.20, ±0                                → net 0 (neither won nor lost), 10 min
# trades 4, won 2, lost 1: win rate 50.0 %; gross profit 113.00, gross loss 55.00:
# profit factor 2.05 (2.0545…); net 58.00, average 14.50; best +93.00, worst −55.00;
# holding (2 h + 30 min + 24 h + 10 min) / 4 = 6 h 40 min; volume 1.80 lots.
HAND = [
    {
        "symbol": "EURUSD",
        "volume": Decimal("1.00"),
        "profit": 100_00,
        "commission": -7_00,
        "held": timedelta(hours=2),
        "days_ago": 3,
    },
    {
        "symbol": "EURUSD",
        "side": "sell",
        "volume": Decimal("0.50"),
        "profit": -50_00,
        "commission": -3_50,
        "swap": -1_50,
        "held": timedelta(minutes=30),
        "days_ago": 3,
    },
    {
        "symbol": "XAUUSD",
        "volume": Decimal("0.10"),
        "profit": 20_00,
        "held": timedelta(days=1),
        "days_ago": 1,
    },
    {
        "symbol": "GBPUSD",
        "volume": Decimal("0.20"),
        "profit": 0,
        "commission": 0,
        "held": timedelta(minutes=10),
        "days_ago": 0,
    },
]


def _specs(rows: list[dict]) -> list[dict]:
    specs = []
    for row in rows:
        spec = dict(row)
        spec["close_time"] = _noon(spec.pop("days_ago"))
        spec.setdefault("commission", 0)
        specs.append(spec)
    return specs


@pytest.fixture
def account(trader):
    return open_trading_account(trader)


@pytest.fixture
def signed_in(client, trader):
    client.force_login(trader)
    return client


def test_figures_match_a_hand_computed_example(trader, account):
    add_deals(account, _specs(HAND))
    result = deal_analytics(user=trader, accounts=[account], since=None, until=None)
    assert (result.trades, result.wins, result.losses) == (4, 2, 1)
    assert result.win_rate == Decimal("50.0")
    assert (result.gross_profit, result.gross_loss) == (113_00, -55_00)
    assert result.profit_factor == Decimal("2.05")
    assert result.net == 58_00
    assert result.average == Decimal("14.50")
    assert (result.best, result.worst) == (93_00, -55_00)
    assert result.average_holding == timedelta(hours=6, minutes=40)
    assert result.volume == Decimal("1.80")
    by_symbol = {r.symbol: r for r in result.by_instrument}
    assert [r.symbol for r in result.by_instrument] == ["EURUSD", "GBPUSD", "XAUUSD"]  # by lots
    assert (by_symbol["EURUSD"].trades, by_symbol["EURUSD"].net) == (2, 38_00)
    assert by_symbol["EURUSD"].volume == Decimal("1.50")
    assert (by_symbol["XAUUSD"].wins, by_symbol["XAUUSD"].net) == (1, 20_00)
    assert (by_symbol["GBPUSD"].wins, by_symbol["GBPUSD"].losses) == (0, 0)
    days = [(d.day, d.trades, d.net, d.cumulative) for d in result.by_day]
    today = timezone.localdate()
    assert days == [
        (today - timedelta(days=3), 2, 38_00, 38_00),
        (today - timedelta(days=1), 1, 20_00, 58_00),
        (today, 1, 0, 58_00),
    ]


def test_the_page_shows_the_figures_and_charts(signed_in, account):
    add_deals(account, _specs(HAND))
    response = signed_in.get(ANALYTICS)
    assert response.status_code == 200
    html = response.content.decode()
    stats = {s.label: s for s in response.context["stats"]}
    assert stats["Net result"].value == "+58.00\u00a0USD"
    assert stats["Trades"].value == "4" and stats["Trades"].note == "2 won, 1 lost"
    assert stats["Win rate"].value == "50.0 %"
    assert stats["Profit factor"].value == "2.05"
    assert stats["Average trade"].value == "+14.50\u00a0USD"
    assert stats["Best trade"].value == "+93.00\u00a0USD"
    assert stats["Worst trade"].value == "\u221255.00\u00a0USD"
    assert stats["Average holding time"].value == "6h 40m"
    assert stats["Volume"].value == "1.80 lots"
    assert html.count('role="img"') == 6  # three charts, each for phones and for screens
    assert "Cumulative net result per day, USD" in html
    assert "Net result by instrument, USD" in html and "Volume by instrument, lots" in html
    assert f'href="/room/history/?account={account.pk}&amp;instrument=EURUSD"' in html


def test_profit_factor_without_losses_is_a_dash(signed_in, trader, account):
    add_deals(account, _specs([{"profit": 10_00, "days_ago": 1}, {"profit": 5_00, "days_ago": 2}]))
    result = deal_analytics(user=trader, accounts=[account], since=None, until=None)
    assert result.profit_factor is None and result.win_rate == Decimal("100.0")
    stats = {s.label: s for s in signed_in.get(ANALYTICS).context["stats"]}
    assert stats["Profit factor"].value == "—"
    assert stats["Profit factor"].note == "No losing trades"


def test_no_deals_shows_an_empty_state(signed_in, account):
    response = signed_in.get(ANALYTICS)
    assert response.status_code == 200
    html = response.content.decode()
    assert "No trades in this period" in html
    assert 'role="img"' not in html


def test_periods_choose_the_deals(signed_in, trader, account):
    add_deals(
        account,
        _specs(
            [
                {"profit": 1_00, "days_ago": 5},
                {"profit": 2_00, "days_ago": 45},
                {"profit": 4_00, "days_ago": 200},
                {"profit": 8_00, "days_ago": 500},
            ]
        ),
    )

    def net(**params) -> int:
        response = signed_in.get(ANALYTICS, params)
        assert response.status_code == 200, response.content
        return response.context["result"].net

    assert net() == 3_00  # 90 days by default
    assert net(period="30d") == 1_00
    assert net(period="90d") == 3_00
    assert net(period="year") == 7_00
    assert net(period="all") == 15_00
    day = timezone.localdate() - timedelta(days=45)
    assert net(date_from=day.isoformat(), date_to=day.isoformat()) == 2_00
    assert net(period="custom", date_from=day.isoformat()) == 3_00
    # The form carries the preset in a hidden field: dates typed in win over it.
    assert net(period="30d", date_from=day.isoformat(), date_to=day.isoformat()) == 2_00


def test_presets_keep_the_chosen_account(signed_in, trader, account):
    second = open_trading_account(trader)
    response = signed_in.get(ANALYTICS, {"account": second.pk, "period": "30d"})
    presets = {key: url for key, _, url in response.context["presets"]}
    assert presets["year"] == f"{ANALYTICS}?account={second.pk}&period=year"


def test_scopes_never_sum_two_currencies(signed_in, trader, account):
    second_usd = open_trading_account(trader)
    eur = open_trading_account(trader, type_name="Standard EUR")
    add_deals(account, _specs([{"profit": 1_00, "days_ago": 1}]))
    add_deals(second_usd, _specs([{"profit": 2_00, "days_ago": 1}]))
    add_deals(eur, _specs([{"profit": 40_00, "days_ago": 1}]))

    response = signed_in.get(ANALYTICS)
    choices = [key for key, _ in response.context["form"].fields["account"].choices]
    assert choices == ["all-USD", str(account.pk), str(second_usd.pk), str(eur.pk)]
    assert response.context["scope"].key == "all-USD"
    assert response.context["result"].net == 3_00
    assert response.context["result"].currency == "USD"

    response = signed_in.get(ANALYTICS, {"account": eur.pk})
    assert (response.context["result"].net, response.context["result"].currency) == (40_00, "EUR")
    assert "+40.00\u00a0EUR" in response.content.decode()
    response = signed_in.get(ANALYTICS, {"account": second_usd.pk})
    assert response.context["result"].net == 2_00
    assert signed_in.get(ANALYTICS, {"account": "all-EUR"}).status_code == 400  # one EUR account
    with pytest.raises(ValueError):
        deal_analytics(user=trader, accounts=[account, eur], since=None, until=None)


def test_another_traders_deals_and_accounts_stay_out(signed_in, trader, account):
    other = open_trading_account(TraderFactory())
    add_deals(account, _specs([{"profit": 1_00, "days_ago": 1}]))
    add_deals(other, _specs([{"profit": 9_876_54, "symbol": "ZZOTHER", "days_ago": 1}]))
    response = signed_in.get(ANALYTICS)
    assert response.context["result"].net == 1_00
    assert "ZZOTHER" not in response.content.decode()
    response = signed_in.get(ANALYTICS, {"account": other.pk, "period": "all"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Choose one of your trading accounts." in html
    assert "ZZOTHER" not in html and "9,876" not in html and other.login not in html
    # Even handed the other trader's account, the selector reads only the user's deals.
    result = deal_analytics(user=trader, accounts=[other], since=None, until=None)
    assert result.trades == 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"period": "decade"}, "Choose a period from the list."),
        ({"date_from": "31/12/2025"}, "Enter a date as YYYY-MM-DD."),
        ({"date_from": "2025-03-12", "date_to": "2025-03-01"}, "The end date is before"),
        ({"account": "all-GBP"}, "Choose one of your trading accounts."),
    ],
)
def test_bad_choices_give_a_clear_message(signed_in, account, params, message):
    response = signed_in.get(ANALYTICS, params)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_htmx_swaps_only_the_analytics(signed_in, account):
    add_deals(account, _specs(HAND))
    response = signed_in.get(ANALYTICS, {"period": "30d"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="trading-analytics"') and "<html" not in html
    assert response["HX-Push-Url"] == f"{ANALYTICS}?account={account.pk}&period=30d"
    # Dates typed in over a preset: the address bar says "custom".
    params = {"account": account.pk, "period": "30d", "date_from": "2025-01-01", "date_to": ""}
    response = signed_in.get(ANALYTICS, params, HTTP_HX_REQUEST="true")
    assert response["HX-Push-Url"] == (
        f"{ANALYTICS}?account={account.pk}&period=custom&date_from=2025-01-01"
    )


def test_without_accounts_the_page_says_how_to_open_one(client, trader):
    client.force_login(trader)
    response = client.get(ANALYTICS)
    assert response.status_code == 200
    assert "No trading accounts yet" in response.content.decode()


def _count(client, params=None) -> int:
    client.get(ANALYTICS, params)
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(ANALYTICS, params)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_query_count_is_constant(signed_in, trader, account, django_assert_max_num_queries):
    add_deals(account, _specs(HAND))
    few = _count(signed_in, {"period": "year"})
    symbols = ["EURUSD", "GBPUSD", "XAUUSD", "USDJPY", "US500", "BTCUSD", "ETHUSD"]
    for type_name in ("Standard USD", "Standard USD", "Standard EUR"):
        more = open_trading_account(trader, type_name=type_name)
        add_deals(
            more,
            _specs(
                [
                    {"symbol": symbols[i % 7], "profit": (i % 5 - 2) * 1_00, "days_ago": i % 300}
                    for i in range(300)
                ]
            ),
        )
    many = _count(signed_in, {"period": "year"})
    assert few == many
    # The user, the accounts, by instrument, by day.
    with django_assert_max_num_queries(4):
        signed_in.get(ANALYTICS, {"period": "all"})
    # No deals: the by-day query is skipped.
    with django_assert_max_num_queries(3):
        signed_in.get(ANALYTICS, {"period": "custom", "date_to": "2001-01-01"})
