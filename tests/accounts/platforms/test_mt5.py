"""The MetaTrader 5 Web API gateway against a local server speaking the same
protocol (tests/accounts/platforms/mt5_server.py)."""

from __future__ import annotations

import itertools
import socket
import time
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest

from accounts.platforms import GATEWAYS
from accounts.platforms.base import OutcomeUnknown, PlatformError
from accounts.platforms.mt5 import MT5Gateway, password_hash, rand_answer
from backoffice.secrets import encrypt

from .mt5_server import MT5Server

_pks = itertools.count(9_000)


@pytest.fixture(params=["connection", "cookie"])
def server(request):
    """The session bound to the kept-alive connection, or to a cookie."""
    with MT5Server(binding=request.param) as srv:
        yield srv
    MT5Gateway.sessions_close()


def gateway(server: MT5Server, *, password: str | None = None, **settings) -> MT5Gateway:
    platform = SimpleNamespace(
        pk=next(_pks),
        kind="mt5",
        settings={
            "url": server.url,
            "manager_login": server.manager_login,
            "timeout": 2,
            **settings,
        },
        secrets=encrypt({"manager_password": password or server.manager_password}),
    )
    return MT5Gateway(platform)


def open_account(gw: MT5Gateway, *, leverage: int = 100) -> str:
    return gw.account_create(
        group="real\\standard",
        currency="USD",
        currency_digits=2,
        leverage=leverage,
        name="Ada Lovelace",
        email="ada@example.com",
        password="Abcdef1#",
        investor_password="Ghijkl2#",
    )


# --- the sign-in -------------------------------------------------------------------


def test_password_hashes_match_the_documented_example():
    # MetaQuotes' worked example (webapi_rest_authentication), password "Password1".
    assert password_hash("Password1").hex() == "904ba8ecb16273d2f0ae9c3b8a023752"
    assert rand_answer("Password1", "73007dc7184747ce0f7c98516ef1c851") == (
        "77fe51827f7fa69dd80fbec9aa33f1bb"
    )
    assert rand_answer("Password1", "4db98fec17aab4dc5a240bdc659e8395") == (
        "1732021b1b332f51660b2b315eed3a35"
    )


def test_gateway_is_registered_with_its_configuration_contract():
    assert GATEWAYS.get("mt5") is MT5Gateway
    assert MT5Gateway.secret_names == ("manager_password",)
    assert set(MT5Gateway.required_settings) == {"url", "manager_login"}
    assert MT5Gateway.label


def test_handshake_signs_in_once_and_keeps_the_session(server):
    login = server.user_add(balance=Decimal("250"))
    gw = gateway(server)
    assert gw.account_state(login=str(login)).balance == Decimal("250.00")
    assert gw.account_state(login=str(login)).balance == Decimal("250.00")
    paths = [path for path, _ in server.calls]
    assert paths[:2] == ["/api/auth/start", "/api/auth/answer"]
    assert paths.count("/api/auth/start") == 1 and server.sign_ins == 1
    start = server.calls_to("/api/auth/start")[0]
    assert start["type"] == "manager" and start["login"] == server.manager_login
    assert int(start["version"]) >= 484 and start["agent"] and " " not in start["agent"]


def test_wrong_password_is_a_permanent_refusal(server):
    gw = gateway(server, password="Wrong#Pass1")
    with pytest.raises(PlatformError, match="sign-in.*1001 Invalid account") as caught:
        gw.account_state(login="1")
    assert caught.value.permanent and not isinstance(caught.value, OutcomeUnknown)
    assert server.sign_ins == 0
    assert not server.calls_to("/api/user/account/get")


def test_a_server_that_does_not_know_the_password_is_not_trusted(server):
    server.impostor = True
    with pytest.raises(PlatformError, match="could not prove") as caught:
        gateway(server).account_state(login="1")
    assert caught.value.permanent
    assert not server.calls_to("/api/user/account/get")


def test_an_expired_session_signs_in_again_once(server):
    login = server.user_add()
    gw = gateway(server)
    gw.account_state(login=str(login))
    server.sessions_expire()
    ticket = gw.balance_operation(login=str(login), amount=Decimal("5"), comment="", key="k-exp")
    assert ticket and server.sign_ins == 2
    assert len(server.calls_to("/api/trade/balance")) == 1
    assert gw.account_state(login=str(login)).balance == Decimal("5.00")


def test_refused_even_after_signing_in_again_is_permanent(server):
    login = server.user_add()
    gw = gateway(server)
    server.fault("/api/user/account/get", "status", status=403, times=2)
    with pytest.raises(PlatformError, match="even after signing in again") as caught:
        gw.account_state(login=str(login))
    assert caught.value.permanent and server.sign_ins == 2


def test_misconfiguration_is_permanent(server):
    gw = gateway(server, url="ftp://nowhere")
    with pytest.raises(PlatformError, match="not configured") as caught:
        gw.account_state(login="1")
    assert caught.value.permanent


# --- accounts ----------------------------------------------------------------------------


def test_account_creation_lets_the_server_allocate_the_login(server):
    gw = gateway(server)
    login = open_account(gw, leverage=200)
    user = server.users[int(login)]
    assert user["group"] == "real\\standard" and user["leverage"] == 200
    assert user["name"] == "Ada Lovelace" and user["email"] == "ada@example.com"
    assert user["pass_main"] == "Abcdef1#" and user["pass_investor"] == "Ghijkl2#"
    # Passwords travel in the body, never in the (loggable) query string.
    query = server.calls_to("/api/user/add")[0]
    assert "Abcdef1#" not in str(query) and "Ghijkl2#" not in str(query)
    state = gw.account_state(login=login)
    assert state.balance == 0 and state.leverage == 200 and state.margin_level is None


@pytest.mark.parametrize(
    ("group", "password", "message"),
    [
        ("real\\standard", "weak", "3006 Invalid account password"),
        ("real\\nosuchgroup", "Abcdef1#", "8 Not enough permissions"),
    ],
)
def test_account_creation_refusals_are_permanent(server, group, password, message):
    with pytest.raises(PlatformError, match=message) as caught:
        gateway(server).account_create(
            group=group,
            currency="USD",
            currency_digits=2,
            leverage=100,
            name="Ada",
            email="",
            password=password,
            investor_password="Ghijkl2#",
        )
    assert caught.value.permanent and not server.users


def test_account_creation_timeout_after_sending_is_outcome_unknown(server):
    server.fault("/api/user/add", "timeout_after", seconds=1.0)
    with pytest.raises(OutcomeUnknown):
        open_account(gateway(server, timeout=0.4))
    assert len(server.users) == 1  # it was created: the caller must not assume otherwise


def test_leverage_and_password_change(server):
    gw = gateway(server)
    login = open_account(gw)
    gw.leverage_change(login=login, leverage=500)
    assert server.users[int(login)]["leverage"] == 500
    assert gw.account_state(login=login).leverage == 500
    gw.password_change(login=login, password="Newpass9!")
    assert server.users[int(login)]["pass_main"] == "Newpass9!"
    assert server.users[int(login)]["pass_investor"] == "Ghijkl2#"
    with pytest.raises(PlatformError, match="13 Not found") as caught:
        gw.leverage_change(login="999", leverage=100)
    assert caught.value.permanent
    with pytest.raises(PlatformError, match="3006") as caught:
        gw.password_change(login=login, password="short")
    assert caught.value.permanent


# --- balance operations -----------------------------------------------------------------


def test_credit_then_debit_keep_the_key_in_the_deal_comment(server):
    login = str(server.user_add())
    gw = gateway(server)
    credit = gw.balance_operation(
        login=login, amount=Decimal("100.50"), comment="Transfer in", key="tr:1:in"
    )
    debit = gw.balance_operation(
        login=login, amount=Decimal("-40"), comment="Transfer out", key="tr:2:out"
    )
    assert credit != debit
    assert gw.account_state(login=login).balance == Decimal("60.50")
    calls = server.calls_to("/api/trade/balance")
    assert [c["comment"] for c in calls] == ["tr:1:in", "tr:2:out"]
    assert [c["type"] for c in calls] == ["2", "2"]
    assert "check_margin" not in calls[0] and calls[1]["check_margin"] == "1"
    assert calls[0]["balance"] == "100.5" and calls[1]["balance"] == "-40"
    assert gw.balance_operation_find(login=login, key="tr:1:in") == credit
    assert gw.balance_operation_find(login=login, key="tr:2:out") == debit
    assert gw.balance_operation_find(login=login, key="tr:3:none") is None


def test_debit_beyond_the_free_margin_is_refused_for_good(server):
    login = str(server.user_add(balance=Decimal("30")))
    gw = gateway(server)
    with pytest.raises(PlatformError, match="10019 Not enough money") as caught:
        gw.balance_operation(login=login, amount=Decimal("-31"), comment="", key="tr:4:out")
    assert caught.value.permanent and not isinstance(caught.value, OutcomeUnknown)
    assert gw.account_state(login=login).balance == Decimal("30.00")


def test_the_same_key_twice_is_applied_once(server):
    login = str(server.user_add())
    gw = gateway(server)
    first = gw.balance_operation(login=login, amount=Decimal("10"), comment="", key="tr:5:in")
    again = gw.balance_operation(login=login, amount=Decimal("10"), comment="", key="tr:5:in")
    assert first == again
    assert len(server.calls_to("/api/trade/balance")) == 1
    assert gw.account_state(login=login).balance == Decimal("10.00")


def test_a_key_longer_than_an_mt5_comment_is_refused_before_sending(server):
    login = str(server.user_add())
    gw = gateway(server)
    with pytest.raises(ValueError, match="at most 32"):
        gw.balance_operation(login=login, amount=Decimal("1"), comment="", key="k" * 33)
    with pytest.raises(ValueError, match="at most 32"):
        gw.balance_operation_find(login=login, key="k" * 33)
    assert not server.calls  # nothing was sent, not even the sign-in
    gw.balance_operation(login=login, amount=Decimal("1"), comment="", key="k" * 32)


def test_zero_amount_is_refused(server):
    login = str(server.user_add())
    with pytest.raises(PlatformError, match="non-zero") as caught:
        gateway(server).balance_operation(login=login, amount=Decimal(0), comment="", key="z")
    assert caught.value.permanent


@pytest.mark.parametrize("kind", ["timeout_after", "drop_after"])
def test_no_answer_after_applying_is_unknown_and_then_found(server, kind):
    login = str(server.user_add())
    gw = gateway(server, timeout=0.4)
    server.fault("/api/trade/balance", kind, seconds=1.0)
    with pytest.raises(OutcomeUnknown):
        gw.balance_operation(login=login, amount=Decimal("25"), comment="", key="tr:6:in")
    ticket = gw.balance_operation_find(login=login, key="tr:6:in")
    assert ticket is not None
    # Asked again with the same key, the platform is not credited twice.
    assert gw.balance_operation(login=login, amount=Decimal("25"), comment="", key="tr:6:in") == (
        ticket
    )
    assert gw.account_state(login=login).balance == Decimal("25.00")


@pytest.mark.parametrize("kind", ["timeout_before", "drop_before"])
def test_no_answer_before_applying_is_unknown_and_not_found(server, kind):
    login = str(server.user_add())
    gw = gateway(server, timeout=0.4)
    server.fault("/api/trade/balance", kind, seconds=1.0)
    with pytest.raises(OutcomeUnknown):
        gw.balance_operation(login=login, amount=Decimal("25"), comment="", key="tr:7:in")
    assert gw.balance_operation_find(login=login, key="tr:7:in") is None
    assert gw.account_state(login=login).balance == 0
    # Now known not to have happened, it can be made.
    gw.balance_operation(login=login, amount=Decimal("25"), comment="", key="tr:7:in")
    assert gw.account_state(login=login).balance == Decimal("25.00")


def test_an_answer_that_is_not_this_operation_is_not_taken_for_it(server):
    # A "Done" with the ticket of another deal (stray bytes from another
    # exchange, a confused proxy): the ticket is read back and does not match.
    login = str(server.user_add())
    gw = gateway(server)
    other = gw.balance_operation(login=login, amount=Decimal("1"), comment="", key="tr:10:in")
    stray = {"retcode": "0 Done", "answer": {"Ticket": other}}
    server.fault("/api/trade/balance", "answer", payload=stray)
    with pytest.raises(OutcomeUnknown, match="not this balance operation"):
        gw.balance_operation(login=login, amount=Decimal("2"), comment="", key="tr:11:in")
    assert gw.balance_operation_find(login=login, key="tr:11:in") is None
    server.fault("/api/trade/balance", "answer", payload={"retcode": "0 Done"})
    with pytest.raises(OutcomeUnknown, match="without saying its ticket"):
        gw.balance_operation(login=login, amount=Decimal("2"), comment="", key="tr:11:in")


def test_a_slow_read_is_a_transient_error_not_an_unknown_outcome(server):
    login = str(server.user_add())
    server.fault("/api/user/account/get", "delay", seconds=1.0)
    with pytest.raises(PlatformError) as caught:
        gateway(server, timeout=0.4).account_state(login=login)
    assert not caught.value.permanent and not isinstance(caught.value, OutcomeUnknown)


def test_a_read_whose_connection_drops_once_is_repeated(server):
    # As when the server closes an idle kept-alive connection just as we use it.
    login = str(server.user_add(balance=Decimal("3")))
    server.fault("/api/user/account/get", "drop_after")
    assert gateway(server).account_state(login=login).balance == Decimal("3.00")
    assert len(server.calls_to("/api/user/account/get")) == 2


def test_an_answer_sent_twice_does_not_leak_into_the_next_call(server):
    login = str(server.user_add())
    gw = gateway(server)
    server.fault("/api/trade/balance", "answer_twice")
    ticket = gw.balance_operation(login=login, amount=Decimal("7"), comment="", key="tr:8:in")
    state = gw.account_state(login=login)
    assert state.balance == Decimal("7.00")
    assert gw.balance_operation_find(login=login, key="tr:8:in") == ticket
    assert len(server.calls_to("/api/trade/balance")) == 1


@pytest.mark.parametrize(
    ("path", "fault", "expected"),
    [
        ("/api/trade/balance", {"kind": "refuse", "retcode": "3 Invalid parameters"}, "permanent"),
        ("/api/trade/balance", {"kind": "refuse", "retcode": "13 Not found"}, "permanent"),
        ("/api/trade/balance", {"kind": "refuse", "retcode": "1018 Server busy"}, "transient"),
        ("/api/trade/balance", {"kind": "refuse", "retcode": "12 Too frequent"}, "transient"),
        ("/api/trade/balance", {"kind": "refuse", "retcode": "9 Operation timeout"}, "unknown"),
        ("/api/trade/balance", {"kind": "status", "status": 503}, "transient"),
        ("/api/trade/balance", {"kind": "status", "status": 500}, "unknown"),
        ("/api/trade/balance", {"kind": "status", "status": 502}, "unknown"),
        ("/api/user/account/get", {"kind": "status", "status": 500}, "transient"),
        (
            "/api/user/account/get",
            {"kind": "refuse", "retcode": "9 Operation timeout"},
            "transient",
        ),
        ("/api/user/account/get", {"kind": "drop_after", "times": 2}, "transient"),
        ("/api/user/account/get", {"kind": "status", "status": 404}, "permanent"),
    ],
)
def test_errors_are_mapped(server, path, fault, expected):
    login = str(server.user_add(balance=Decimal("100")))
    gw = gateway(server)
    server.fault(path, **fault)
    with pytest.raises(PlatformError) as caught:
        if path == "/api/trade/balance":
            gw.balance_operation(login=login, amount=Decimal("-5"), comment="", key="tr:9:out")
        else:
            gw.account_state(login=login)
    error = caught.value
    got = (
        "unknown"
        if isinstance(error, OutcomeUnknown)
        else ("permanent" if error.permanent else "transient")
    )
    assert got == expected, str(error)


def test_connection_refused_is_transient_even_for_a_write(server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there
    gw = gateway(server, url=f"http://127.0.0.1:{port}")
    with pytest.raises(PlatformError) as caught:
        open_account(gw)
    assert not caught.value.permanent and not isinstance(caught.value, OutcomeUnknown)


def test_find_pages_back_through_more_than_one_page(server):
    login = server.user_add()
    gw = gateway(server)
    ticket = gw.balance_operation(login=str(login), amount=Decimal("1000"), comment="", key="dep")
    now = server.now()
    for i in range(230):
        server.trade_add(login, open_time=now, close_time=now + 1 + i % 20)
    assert gw.balance_operation_find(login=str(login), key="dep") == ticket
    pages = server.calls_to("/api/deal/get_page")
    assert len(pages) >= 5 and all(int(p["total"]) <= 100 for p in pages)


# --- deals -------------------------------------------------------------------------------


def test_a_closed_trade_is_mapped_to_a_deal_record():
    with MT5Server(utc_offset_hours=2) as server:
        login = server.user_add()
        close = server.now() - 3600
        ticket = server.trade_add(
            login,
            symbol="XAUUSD",
            side="sell",
            lots=Decimal("0.25"),
            open_time=close - 600,
            close_time=close,
            open_price=Decimal("1786.02"),
            close_price=Decimal("1783.45"),
            profit=Decimal("64.25"),
            commission=Decimal("-1.50"),
            swap=Decimal("-0.30"),
        )
        server.user_add()  # and a balance deal: not a trade
        gw = gateway(server, server_utc_offset=2, deals_start=close - 86_400)
        gw.balance_operation(login=str(login), amount=Decimal("5"), comment="", key="b")
        page = gw.deals_since("")
    MT5Gateway.sessions_close()
    assert [d.ticket for d in page.deals] == [ticket]
    deal = page.deals[0]
    utc_close = datetime.fromtimestamp(close - 7200, tz=UTC)
    assert deal.login == str(login) and deal.symbol == "XAUUSD" and deal.side == "sell"
    assert deal.volume == Decimal("0.25")
    assert deal.close_time.replace(microsecond=0) == utc_close
    assert deal.open_time.replace(microsecond=0) == datetime.fromtimestamp(
        close - 600 - 7200, tz=UTC
    )
    assert deal.open_price == Decimal("1786.02") and deal.close_price == Decimal("1783.45")
    assert deal.profit == Decimal("64.25")
    assert deal.commission == Decimal("-1.50") and deal.swap == Decimal("-0.30")
    assert page.cursor and not page.more


def test_open_time_of_a_position_opened_before_the_window_comes_from_history(server):
    login = server.user_add()
    close = server.now() - 100
    opened = close - 60 * 86_400
    ticket = server.trade_add(login, open_time=opened, close_time=close)
    gw = gateway(server)
    page = gw.deals_since(f"{close - 10}:0")
    assert [d.ticket for d in page.deals] == [ticket]
    assert page.deals[0].open_time.replace(microsecond=0) == datetime.fromtimestamp(opened, UTC)
    assert len(server.calls_to("/api/history/get_batch")) == 1


def test_group_mask_limits_the_sync(server):
    real = server.user_add(group="real\\standard")
    demo = server.user_add(group="demo\\demo")
    now = server.now()
    kept = server.trade_add(real, open_time=now - 500, close_time=now - 400)
    server.trade_add(demo, open_time=now - 500, close_time=now - 400)
    page = gateway(server, deal_groups="*,!demo*", deals_start=now - 1000).deals_since("")
    assert [d.ticket for d in page.deals] == [kept]
    assert server.calls_to("/api/deal/get_batch")[0]["group"] == "*,!demo*"


def test_paging_2500_deals_with_the_cursor_loses_and_repeats_nothing(server):
    logins = [server.user_add() for _ in range(5)]
    now = server.now()
    base = now - 3 * 86_400
    expected = []
    # A sparse old stretch first (the window widens over empty days), then
    # 2,500 closed trades about seven to a second, with balance deals between.
    expected.append(
        server.trade_add(logins[0], open_time=base - 41 * 86_400, close_time=base - 40 * 86_400)
    )
    for i in range(2_499):
        login = logins[i % 5]
        close = base + i // 7
        expected.append(server.trade_add(login, open_time=close - 300, close_time=close))
        if i % 400 == 0:
            server._deal(login, 2, 0, close, profit=Decimal("1"), comment=f"dep{i}")
    gw = gateway(server, deals_start=base - 50 * 86_400)
    cursor, seen, calls = "", [], 0
    started = time.perf_counter()
    while True:
        page = gw.deals_since(cursor, limit=300)
        calls += 1
        assert len(page.deals) <= 300
        seen.extend(page.deals)
        cursor = page.cursor
        if not page.more:
            break
    elapsed = time.perf_counter() - started
    tickets = [d.ticket for d in seen]
    assert len(tickets) == 2_500 and len(set(tickets)) == 2_500
    assert sorted(tickets) == sorted(expected)
    order = [(d.close_time, d.ticket) for d in seen]
    assert order == sorted(order)
    assert calls >= 9
    assert elapsed < 30, elapsed

    # From the final cursor: nothing new, then exactly the deals added since,
    # including one in the very second of the cursor.
    assert gw.deals_since(cursor).deals == []
    last_second = int(cursor.split(":")[0])
    late = server.trade_add(logins[1], open_time=last_second - 5, close_time=last_second)
    later = server.trade_add(logins[2], open_time=now - 5, close_time=now - 1)
    page = gw.deals_since(cursor)
    assert [d.ticket for d in page.deals] == [late, later]
    assert gw.deals_since(page.cursor).deals == []


def test_an_empty_cursor_starts_at_deals_start_and_walks_to_the_present(server):
    login = server.user_add()
    now = server.now()
    ticket = server.trade_add(login, open_time=now - 7_200, close_time=now - 3_600)
    page = gateway(server, deals_start="2024-01-01").deals_since("")
    assert [d.ticket for d in page.deals] == [ticket] and not page.more
    windows = server.calls_to("/api/deal/get_batch")
    assert int(windows[0]["from"]) == int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    assert len(windows) < 120  # empty stretches are crossed in widening windows


def test_an_unreadable_cursor_is_a_permanent_error(server):
    with pytest.raises(PlatformError, match="cursor") as caught:
        gateway(server).deals_since("yesterday")
    assert caught.value.permanent


# --- through the trading-account service -----------------------------------------------


@pytest.mark.django_db
def test_trading_account_open_on_an_mt5_platform(server):
    from accounts.models import AccountType, Platform, TradingAccount
    from accounts.services.trading import trading_account_open
    from tests.factories import TraderFactory

    platform = Platform.objects.create(
        identifier="mt5-local",
        kind="mt5",
        name="MT5 (local test server)",
        settings={"url": server.url, "manager_login": server.manager_login, "timeout": 2},
        secrets=encrypt({"manager_password": server.manager_password}),
    )
    account_type = AccountType.objects.create(
        platform=platform,
        name="MT5 Demo USD",
        is_demo=True,
        currency="USD",
        currency_digits=2,
        leverage_choices=[100, 200],
        default_leverage=100,
        demo_balance=Decimal("10000"),
        platform_group="demo\\demo",
    )
    trader = TraderFactory()
    opened = trading_account_open(user=trader, account_type=account_type, leverage=200)
    account = TradingAccount.objects.get(pk=opened.account.pk)
    user = server.users[int(account.login)]
    assert user["group"] == "demo\\demo" and user["leverage"] == 200
    assert user["pass_main"] == opened.password
    assert user["pass_investor"] == opened.investor_password
    assert account.balance == 1_000_000 and account.equity == 1_000_000
    assert account.leverage == 200 and account.state_updated_at is not None
    credit = server.calls_to("/api/trade/balance")
    assert len(credit) == 1 and credit[0]["comment"] == f"demo-open:{platform.pk}:{account.login}"


def test_a_server_time_zone_follows_daylight_saving_time():
    """MT5 stamps deals with the server's wall clock; a server in Athens is
    UTC+3 in July and UTC+2 in January, which a fixed offset gets wrong half
    the year."""
    from zoneinfo import ZoneInfo

    from accounts.platforms.mt5 import _deal_time

    athens = ZoneInfo("Europe/Athens")
    july_noon = int(datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp())
    january_noon = int(datetime(2026, 1, 1, 12, 0, tzinfo=UTC).timestamp())
    assert _deal_time({"Time": july_noon}, "Time", athens) == datetime(2026, 7, 1, 9, tzinfo=UTC)
    assert _deal_time({"Time": january_noon}, "Time", athens) == datetime(
        2026, 1, 1, 10, tzinfo=UTC
    )


def test_an_unknown_time_zone_setting_is_refused_in_words():
    from accounts.models import Platform
    from accounts.platforms.base import PlatformError
    from accounts.platforms.mt5 import MT5Gateway

    gateway = MT5Gateway(Platform(kind="mt5", settings={"timezone": "Atlantis/Capital"}))
    with pytest.raises(PlatformError, match="not a time zone"):
        gateway._server_now()
