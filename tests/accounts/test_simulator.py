"""The demo platform's market simulator, its command and beat task, and the
demo trading data it seeds."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum

from accounts import demo
from accounts.models import (
    Deal,
    DemoPlatformAccount,
    DemoPlatformDeal,
    Instrument,
    Platform,
    TradingAccount,
)
from accounts.platforms import gateway_for, simulator
from accounts.platforms.simulator import MARKET, ROUND_WINDOW, market_simulate_round, simulate
from kyc import demo as kyc_demo
from tests.conftest import require_or_skip
from tests.factories import TraderFactory, open_trading_account

pytestmark = pytest.mark.django_db

END = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
CRYPTO = {symbol for symbol, market in MARKET.items() if market.weekend}
FX = {Instrument.FX_MAJORS, Instrument.FX_MINORS, Instrument.FX_EXOTICS}


@pytest.fixture
def platform():
    return Platform.objects.get(identifier="demo")


def platform_account(platform, *, balance="10000", currency="USD", leverage=100) -> str:
    """An account on the demo platform (its own side only), funded by a
    balance operation as the platform would be."""
    gateway = gateway_for(platform)
    login = gateway.account_create(
        group=f"demo\\test\\{currency}",
        currency=currency,
        currency_digits=2,
        leverage=leverage,
        name="Test",
        email="test@example.com",
        password="Secret-1234",
        investor_password="Secret-5678",
    )
    if Decimal(balance):
        gateway.balance_operation(
            login=login, amount=Decimal(balance), comment="test", key=f"test:{login}"
        )
    return login


def deals_of(platform, login):
    return DemoPlatformDeal.objects.filter(platform=platform, login=login).order_by("id")


def net_of(platform, login) -> int:
    totals = deals_of(platform, login).aggregate(
        p=Sum("profit"), c=Sum("commission"), s=Sum("swap")
    )
    return sum(v or 0 for v in totals.values())


def balance_of(platform, login) -> int:
    return DemoPlatformAccount.objects.get(platform=platform, login=login).balance


def only_instruments(*symbols):
    Instrument.objects.exclude(symbol__in=symbols).update(is_active=False)


# --- The invariants -----------------------------------------------------------------------


def test_balance_is_the_initial_one_plus_every_deals_result_and_never_negative(platform):
    logins = {
        platform_account(platform): 1_000_000,
        platform_account(platform, currency="EUR", balance="5000"): 500_000,
        platform_account(platform, balance="250000", leverage=30): 25_000_000,
        platform_account(platform, balance="40", leverage=500): 4_000,
    }
    result = simulator.run(platform=platform, accounts=logins, counts=400, days=60, end=END, seed=1)

    assert result.accounts == 4
    assert result.deals == DemoPlatformDeal.objects.count()
    for login, initial in logins.items():
        balance = balance_of(platform, login)
        assert balance >= 0
        assert balance == initial + net_of(platform, login)
    # The accounts with money trade every deal asked for.
    assert deals_of(platform, list(logins)[0]).count() == 400


def test_a_loss_beyond_the_balance_is_a_stop_out_cut_at_the_balance(platform):
    only_instruments("BTCUSD", "ETHUSD")
    logins = [platform_account(platform, balance="60", leverage=500) for _ in range(5)]
    result = simulator.run(platform=platform, accounts=logins, counts=300, days=60, end=END, seed=4)

    assert result.stop_outs >= 1
    for login in logins:
        balance = balance_of(platform, login)
        assert balance == 6_000 + net_of(platform, login) >= 0
        running = 6_000
        for deal in deals_of(platform, login).order_by("close_time", "id"):
            assert running > 0, "an account without money does not trade"
            running += deal.profit + deal.commission + deal.swap
            assert running >= 0
    emptied = [login for login in logins if balance_of(platform, login) == 0]
    assert emptied
    last = deals_of(platform, emptied[0]).order_by("close_time", "id").last()
    move = (last.close_price - last.open_price) * (1 if last.side == "buy" else -1)
    assert last.profit < 0 and move < 0  # the close price matches the cut loss


def test_deals_are_plausible_trades_of_the_period(platform):
    login = platform_account(platform, balance="50000")
    simulate(platform=platform, accounts=[login], deals_per_account=600, days=30, end=END, seed=2)
    instruments = {i.symbol: i for i in Instrument.objects.all()}
    start = END - timedelta(days=30)
    deals = list(deals_of(platform, login))
    assert len(deals) == 600
    holding = []
    for deal in deals:
        market, instrument = MARKET[deal.symbol], instruments[deal.symbol]
        assert start <= deal.open_time < deal.close_time <= END
        holding.append((deal.close_time - deal.open_time).total_seconds())
        assert deal.side in ("buy", "sell")
        assert Decimal("0.01") <= deal.volume <= 2
        assert deal.volume == deal.volume.quantize(Decimal("0.01"))
        for price in (deal.open_price, deal.close_price):
            assert market.start / 2 < price < market.start * 2
            assert price == price.quantize(Decimal(1).scaleb(-instrument.digits))
        if deal.symbol not in CRYPTO:
            assert deal.open_time.weekday() < 5, "FX and CFDs open on weekdays"
        if instrument.group in FX:
            assert deal.commission == -round(7 * deal.volume * 100)  # 3.5 a lot, each side
        else:
            assert deal.commission == 0
        move = (deal.close_price - deal.open_price) * (1 if deal.side == "buy" else -1)
        if deal.profit:
            assert (deal.profit > 0) == (move > 0)
        if deal.close_time.date() == deal.open_time.date() and deal.close_time.hour < 21:
            assert deal.swap == 0
    # Minutes to days, and mostly small volumes.
    assert min(holding) < 15 * 60 and max(holding) > 2 * 86_400
    assert sum(d.volume <= Decimal("0.1") for d in deals) > len(deals) / 3
    assert any(d.swap for d in deals)
    assert {d.side for d in deals} == {"buy", "sell"}


def test_results_are_converted_to_the_accounts_currency(platform):
    only_instruments("EURUSD", "USDJPY")
    usd = platform_account(platform, balance="100000")
    eur = platform_account(platform, currency="EUR", balance="100000")
    simulate(platform=platform, accounts=[usd, eur], deals_per_account=200, days=20, end=END)
    for login, currency in ((usd, "USD"), (eur, "EUR")):
        for deal in deals_of(platform, login):
            move = (deal.close_price - deal.open_price) * (1 if deal.side == "buy" else -1)
            in_quote = move * 100_000 * deal.volume
            profit = Decimal(deal.profit) / 100
            if deal.symbol == "EURUSD" and currency == "USD":
                assert profit == in_quote.quantize(Decimal("0.01"))
                continue
            # Quoted in yen: divided by the rate; a EUR account: divided by EURUSD.
            rate = deal.close_price if deal.symbol == "USDJPY" else Decimal("1")
            expected = in_quote / rate
            if currency == "EUR":
                expected /= Decimal("1.0850")
            assert abs(profit - expected) <= abs(expected) * Decimal("0.05") + Decimal("0.02")


def test_the_same_seed_gives_the_same_deals(platform):
    login = platform_account(platform)
    fields = ("symbol", "side", "volume", "open_time", "close_time", "open_price", "close_price")
    fields += ("profit", "commission", "swap")

    def draw(seed):
        DemoPlatformDeal.objects.filter(platform=platform).delete()
        DemoPlatformAccount.objects.filter(login=login).update(
            balance=1_000_000, floating=0, margin=0
        )
        simulate(
            platform=platform, accounts=[login], deals_per_account=150, days=10, end=END, seed=seed
        )
        account = DemoPlatformAccount.objects.get(login=login)
        return list(deals_of(platform, login).values_list(*fields)), (
            account.balance,
            account.floating,
            account.margin,
        )

    first = draw(7)
    assert draw(7) == first
    assert draw(8) != first


def test_every_run_trades_the_same_market(platform):
    """Seeding 90 days, a command for a week, the beat's rounds: the same
    instrument has the same price at the same moment in all of them."""
    end = int(END.timestamp())
    long = simulator.Walk(start=end - 90 * 86_400, end=end)
    short = simulator.Walk(start=end - 86_400, end=end + 3_600)
    for ts in (end - 80_000, end - 3_000, end):
        for symbol in MARKET:
            assert long.paths[symbol][long.index(ts)] == short.paths[symbol][short.index(ts)]

    first, second = platform_account(platform), platform_account(platform)
    simulate(platform=platform, accounts=[first], deals_per_account=200, days=60, end=END, seed=1)
    later = END + timedelta(days=3)
    simulate(platform=platform, accounts=[second], deals_per_account=200, days=5, end=later, seed=2)
    market = simulator.Walk(start=end - 60 * 86_400, end=int(later.timestamp()))
    for deal in DemoPlatformDeal.objects.all():
        ts = deal.open_time.timestamp()
        quoted = market.paths[deal.symbol][market.index(ts)]
        assert abs(float(deal.open_price) - quoted) <= quoted * 0.01 + MARKET[deal.symbol].spread


def test_some_accounts_hold_open_positions(platform):
    logins = [platform_account(platform) for _ in range(8)]
    simulate(platform=platform, accounts=logins, deals_per_account=5, days=5, end=END, seed=3)
    accounts = list(DemoPlatformAccount.objects.filter(login__in=logins))
    holding = [a for a in accounts if a.margin]
    assert 0 < len(holding) < len(accounts)
    for account in holding:
        assert account.margin <= account.balance * 6 // 10
        assert account.balance + account.floating > 0  # equity positive
    state = gateway_for(platform).account_state(login=holding[0].login)
    assert state.equity != state.balance or state.margin_level is not None
    assert state.margin_level > 100


def test_accounts_without_money_do_not_trade(platform):
    empty = platform_account(platform, balance="0")
    assert simulate(platform=platform, accounts=[empty], deals_per_account=10, days=5) == 0
    assert not deals_of(platform, empty).exists()


def test_bad_arguments_are_refused_and_change_nothing(platform):
    login = platform_account(platform)
    mt5 = Platform.objects.create(identifier="mt5-test", kind="mt5", name="MT5")
    with pytest.raises(ValueError, match="not a demo platform"):
        simulate(platform=mt5, deals_per_account=5, days=5)
    with pytest.raises(ValueError):
        simulate(platform=platform, deals_per_account=5, days=0)
    with pytest.raises(ValueError):
        simulate(platform=platform, deals_per_account=-1, days=5)
    with pytest.raises(ValueError, match="aware"):
        simulate(platform=platform, deals_per_account=5, days=5, end=datetime(2026, 1, 1))
    assert not DemoPlatformDeal.objects.exists()
    assert balance_of(platform, login) == 1_000_000


@pytest.mark.django_db(transaction=True)
def test_simulator_writers_take_turns_so_deal_ids_commit_in_order(platform):
    """A second writer (the beat's round while the command runs) waits for
    the first one's commit: the deal sync's id cursor never steps over
    deals committed late."""
    require_or_skip(connection.vendor == "postgresql", "the writers' lock is PostgreSQL's")
    import threading

    import psycopg2

    login = platform_account(platform)
    other = psycopg2.connect(**connection.get_connection_params())
    try:
        other.cursor().execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [simulator.WRITER_LOCK, platform.pk]
        )
        threading.Timer(1.0, other.rollback).start()
        started = time.perf_counter()
        simulate(platform=platform, accounts=[login], deals_per_account=5, days=2, seed=1)
        assert time.perf_counter() - started >= 0.9
    finally:
        other.close()
    assert deals_of(platform, login).count() == 5


# --- The beat task and the command --------------------------------------------------------


def test_a_round_trades_funded_accounts_recently_and_syncs_them(platform):
    traders = [TraderFactory() for _ in range(4)]
    accounts = [open_trading_account(t, type_name="Demo USD") for t in traders]
    empty = platform_account(platform, balance="0")
    now = datetime(2026, 3, 18, 15, 0, tzinfo=UTC)  # a Wednesday

    written = market_simulate_round(seed=5, now=now)

    assert written > 0
    deals = DemoPlatformDeal.objects.filter(platform=platform)
    assert deals.count() == written
    assert not deals.filter(login=empty).exists()
    for deal in deals:  # closed since the previous round (300 s by default)
        assert now - ROUND_WINDOW <= deal.open_time < deal.close_time <= now
        assert deal.close_time >= now - timedelta(seconds=300)
    for account in accounts:
        per_account = deals.filter(login=account.login).count()
        assert per_account <= 3
        assert balance_of(platform, account.login) == 1_000_000 + net_of(platform, account.login)
    if _has_deal_sync():
        assert Deal.objects.filter(account__in=accounts).count() == written


def test_a_round_leaves_accounts_archived_on_our_side_alone(platform):
    from accounts.models import TradingAccount

    kept, archived = (open_trading_account(TraderFactory(), type_name="Demo USD") for _ in range(2))
    TradingAccount.objects.filter(pk=archived.pk).update(status=TradingAccount.ARCHIVED)
    now = datetime(2026, 3, 18, 15, 0, tzinfo=UTC)  # a Wednesday
    for seed in range(5):
        market_simulate_round(seed=seed, now=now + timedelta(minutes=10 * seed))
    assert deals_of(platform, kept.login).exists()
    assert not deals_of(platform, archived.login).exists()


def test_at_the_weekend_only_crypto_trades(platform):
    only_instruments("EURUSD", "XAUUSD")
    for _ in range(3):
        open_trading_account(TraderFactory(), type_name="Demo USD")
    sunday = datetime(2026, 3, 22, 15, 0, tzinfo=UTC)
    assert sum(market_simulate_round(seed=s, now=sunday) for s in range(5)) == 0
    Instrument.objects.filter(symbol="BTCUSD").update(is_active=True)
    assert sum(market_simulate_round(seed=s, now=sunday) for s in range(5)) > 0
    assert set(DemoPlatformDeal.objects.values_list("symbol", flat=True)) == {"BTCUSD"}


def test_a_round_without_the_deal_sync_still_trades(platform, monkeypatch):
    open_trading_account(TraderFactory(), type_name="Demo USD")
    monkeypatch.setitem(sys.modules, "accounts.services.deals", None)
    assert simulator.deals_sync(platform) is None
    now = datetime(2026, 3, 18, 15, 0, tzinfo=UTC)
    written = sum(market_simulate_round(seed=s, now=now) for s in range(3))
    assert written == DemoPlatformDeal.objects.count() > 0
    assert not Deal.objects.exists()


def test_the_command_simulates_then_syncs(platform):
    account = open_trading_account(TraderFactory(), type_name="Demo USD")
    other = open_trading_account(TraderFactory(), type_name="Demo USD")

    out = _command("--deals", "40", "--days", "10", "--seed", "1", "--login", account.login)

    assert "40 deals on 1 account over 10 days" in out
    assert deals_of(platform, account.login).count() == 40
    assert not deals_of(platform, other.login).exists()
    if _has_deal_sync():
        assert "Into the trading history: 40 added" in out
        account.refresh_from_db()
        assert Deal.objects.filter(account=account).count() == 40
        assert account.balance == balance_of(platform, account.login)


def test_the_command_without_sync_leaves_the_history_alone(platform):
    account = open_trading_account(TraderFactory(), type_name="Demo USD")
    out = _command("--deals", "15", "--days", "3", "--no-sync")
    assert "15 deals on 1 account" in out
    assert deals_of(platform, account.login).count() == 15
    assert not Deal.objects.exists()


def test_the_command_refuses_bad_input(platform):
    with pytest.raises(CommandError, match="negative"):
        _command("--deals", "-5")
    with pytest.raises(CommandError, match="positive"):
        _command("--days", "0")
    with pytest.raises(CommandError, match="no demo platform"):
        _command("--platform", "nope")
    assert not DemoPlatformDeal.objects.exists()


def _command(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("simulate_market", *args, stdout=out)
    return out.getvalue()


def _has_deal_sync() -> bool:
    try:
        from accounts.services import deals  # noqa: F401
    except ImportError:
        return False
    return True


# --- The demo data ------------------------------------------------------------------------


def test_seeding_the_trading_demo_twice_adds_nothing(settings):
    demo.seed_demo()
    kyc_demo.seed()
    lines = demo.seed_trading()

    accounts = TradingAccount.objects.filter(user__email__endswith="@demo.test")
    assert accounts.count() == len(demo.TRADING_ACCOUNTS)
    alice = accounts.filter(user__email="alice@demo.test")
    assert {(a.account_type.name, a.is_demo) for a in alice} == {
        ("Standard USD", False),
        ("Demo USD", True),
    }
    assert accounts.get(user__email="bruno@demo.test").currency == "EUR"
    for account in accounts:
        expected = demo.HISTORY_DEALS if account.is_demo else 0  # live: no money yet
        assert deals_of(account.platform, account.login).count() == expected
        if _has_deal_sync():
            assert Deal.objects.filter(account=account).count() == expected
            account.refresh_from_db()
            assert account.balance == balance_of(account.platform, account.login)
    text = "\n".join(lines)
    assert "alice@demo.test" in text and "/room/history/" in text
    assert settings.DEMO_PASSWORD not in text
    before = _snapshot()

    demo.seed_trading()

    assert _snapshot() == before


def test_a_live_account_funded_later_gets_its_history_once():
    demo.seed_demo()
    kyc_demo.seed()
    demo.seed_trading()
    live = TradingAccount.objects.get(user__email="alice@demo.test", is_demo=False)
    # What the payments seeder's transfer does on the platform side.
    gateway_for(live.platform).balance_operation(
        login=live.login, amount=Decimal("5000"), comment="Deposit", key="test:fund"
    )

    written = demo.seed_trading_history(emails=["alice@demo.test"])

    assert written == demo.HISTORY_DEALS
    assert balance_of(live.platform, live.login) == 500_000 + net_of(live.platform, live.login)
    assert demo.seed_trading_history() == 0


def _snapshot():
    return (
        TradingAccount.objects.count(),
        DemoPlatformDeal.objects.count(),
        Deal.objects.count(),
        sorted(DemoPlatformAccount.objects.values_list("login", "balance", "floating", "margin")),
    )


# --- Speed --------------------------------------------------------------------------------


def test_the_simulator_writes_fifty_thousand_deals_quickly(platform, capsys):
    require_or_skip(connection.vendor == "postgresql", "the speed is measured on PostgreSQL")
    logins = [platform_account(platform, balance="100000") for _ in range(10)]
    started = time.perf_counter()
    written = simulate(platform=platform, accounts=logins, deals_per_account=5_000, days=90, seed=9)
    seconds = time.perf_counter() - started
    assert written == 50_000 == DemoPlatformDeal.objects.count()
    rate = written / seconds
    with capsys.disabled():
        print(f"\nmarket simulator: {written:,} deals in {seconds:.2f} s = {rate:,.0f} deals/s")
    assert seconds < 30  # ~2.5 s on an idle machine of BASELINES.md
