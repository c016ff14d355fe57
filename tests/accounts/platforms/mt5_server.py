"""A local MetaTrader 5 Web API server for the tests: the real wire format at
the network boundary, nothing mocked inside the gateway.

It speaks the documented HTTP protocol (``/api/auth/start`` and
``/api/auth/answer`` with real MD5 challenge checks in both directions, the
session bound either to the kept-alive connection, as MetaQuotes' single
connection example client implies, or to a cookie (``binding=``), HTTP 403
for a request without a signed-in session, JSON answers with ``retcode``)
for the endpoints the gateway uses, keeps users, deals and orders in memory,
and injects faults per test::

    with MT5Server() as server:
        server.fault("/api/trade/balance", "timeout_after", seconds=1.5)
        ...

Fault kinds (each consumed by the next matching request, ``times`` times):

- ``delay``: sleep, then apply and answer normally (slow, not lost);
- ``timeout_before``: sleep, then close the connection without applying;
- ``timeout_after``: apply, then sleep past the client's timeout before answering;
- ``drop_before`` / ``drop_after``: close the connection without an answer,
  before / after applying;
- ``refuse``: answer ``retcode`` without applying;
- ``answer``: answer ``payload`` (any JSON) without applying;
- ``status``: answer an HTTP ``status`` (e.g. 503, 500, 403) without applying;
- ``answer_twice``: apply once and write the answer twice on the connection
  (in one write).
"""

from __future__ import annotations

import fnmatch
import json
import secrets
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from accounts.platforms.mt5 import rand_answer

COOKIE = "MT5WebAPI"
AUTH_TIMEOUT = 10  # seconds between auth/start and auth/answer (documented)
SPECIALS = set("#@!$%&*^()-_+=[]{};:'\",.<>/?\\|~`")


@dataclass
class Fault:
    path: str
    kind: str
    seconds: float = 0.0
    retcode: str = ""
    status: int = 0
    payload: dict | None = None
    times: int = 1


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _strong(password: str) -> bool:
    """MT5's rule: 8 to 16 characters with lower, upper, digit and special."""
    return (
        8 <= len(password) <= 16
        and any(c.islower() for c in password)
        and any(c.isupper() for c in password)
        and any(c.isdigit() for c in password)
        and any(c in SPECIALS for c in password)
    )


def _group_matches(group: str, mask: str) -> bool:
    """MT5 group masks: comma-separated, ``*`` wildcard, ``!`` excludes."""
    included = False
    for part in (p.strip() for p in mask.split(",") if p.strip()):
        if part.startswith("!"):
            if fnmatch.fnmatchcase(group, part[1:]):
                return False
        elif fnmatch.fnmatchcase(group, part):
            included = True
    return included


class MT5Server:
    def __init__(
        self,
        *,
        manager_login: str = "1001",
        manager_password: str = "Manager#Pass1",  # noqa: S107 - a test server's
        groups: tuple[str, ...] = ("real\\standard", "demo\\demo"),
        utc_offset_hours: float = 0,
        binding: str = "connection",
    ) -> None:
        assert binding in ("connection", "cookie")
        self.binding = binding
        self.manager_login = manager_login
        self.manager_password = manager_password
        self.groups = set(groups)
        self.offset = int(utc_offset_hours * 3600)
        self.lock = threading.RLock()
        self.users: dict[int, dict] = {}
        self.deals: list[dict] = []
        self.orders: dict[int, dict] = {}
        self.sessions: dict[str, dict] = {}
        self.faults: list[Fault] = []
        self.calls: list[tuple[str, dict]] = []
        self.sign_ins = 0
        self.impostor = False  # True: answer cli_rand without knowing the password
        self.next_login = 700_000
        self.next_ticket = 10_000
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> MT5Server:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.mt5 = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> MT5Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # --- test controls --------------------------------------------------------------

    def fault(self, path: str, kind: str, **options) -> None:
        with self.lock:
            self.faults.append(Fault(path, kind, **options))

    def sessions_expire(self) -> None:
        """Every signed-in session lapses (as after the server's idle timeout)."""
        with self.lock:
            for session in self.sessions.values():
                session["signed_in"] = False

    def now(self) -> int:
        """The trade server's clock (UTC plus its offset), in seconds."""
        return int(time.time()) + self.offset

    def calls_to(self, path: str) -> list[dict]:
        with self.lock:
            return [params for p, params in self.calls if p == path]

    def _ticket(self) -> int:
        self.next_ticket += 1
        return self.next_ticket

    def user_add(
        self, *, group: str = "real\\standard", leverage: int = 100, balance: Decimal = Decimal(0)
    ) -> int:
        with self.lock:
            self.next_login += 1
            login = self.next_login
            self.users[login] = {
                "login": login,
                "group": group,
                "name": f"Client {login}",
                "email": "",
                "leverage": leverage,
                "pass_main": "",
                "pass_investor": "",
                "balance": Decimal(balance),
                "floating": Decimal(0),
                "margin": Decimal(0),
            }
            return login

    def trade_add(
        self,
        login: int,
        *,
        symbol: str = "EURUSD",
        side: str = "buy",
        lots: Decimal = Decimal("0.1"),
        open_time: int,
        close_time: int,
        open_price: Decimal = Decimal("1.10000"),
        close_price: Decimal = Decimal("1.10100"),
        profit: Decimal = Decimal("10.00"),
        commission: Decimal = Decimal("0"),
        swap: Decimal = Decimal("0"),
    ) -> int:
        """A closed trade in server time: the opening order, its IN deal and
        the OUT deal. Returns the OUT deal's ticket."""
        with self.lock:
            order = self._ticket()
            action_in = 0 if side == "buy" else 1
            volume_ext = int(lots * 100_000_000)
            self.orders[order] = {
                "Order": str(order),
                "Login": str(login),
                "Symbol": symbol,
                "Type": str(action_in),
                "TimeSetup": str(open_time),
                "TimeDone": str(open_time),
                "PriceOrder": str(open_price),
                "PriceCurrent": str(open_price),
                "PositionID": str(order),
            }
            self._deal(login, action_in, 0, open_time, symbol, open_price, volume_ext, order)
            ticket = self._deal(
                login,
                1 - action_in,
                1,
                close_time,
                symbol,
                close_price,
                volume_ext,
                order,
                profit=profit,
                commission=commission,
                swap=swap,
                price_position=open_price,
            )
            self.users[login]["balance"] += profit + commission + swap
            return ticket

    def _deal(
        self,
        login: int,
        action: int,
        entry: int,
        when: int,
        symbol: str = "",
        price: Decimal = Decimal(0),
        volume_ext: int = 0,
        position: int = 0,
        *,
        profit: Decimal = Decimal(0),
        commission: Decimal = Decimal(0),
        swap: Decimal = Decimal(0),
        price_position: Decimal = Decimal(0),
        comment: str = "",
    ) -> int:
        ticket = self._ticket()
        self.deals.append(
            {
                "Deal": str(ticket),
                "ExternalID": "",
                "Login": str(login),
                "Dealer": "0",
                "Order": str(position),
                "Action": str(action),
                "Entry": str(entry),
                "Reason": "0",
                "Digits": "5",
                "DigitsCurrency": "2",
                "ContractSize": "100000.00",
                "Time": str(when),
                "TimeMsc": str(when * 1000 + 250),
                "Symbol": symbol,
                "Price": str(price),
                "Volume": str(volume_ext // 10_000),
                "VolumeExt": str(volume_ext),
                "Profit": _money(profit),
                "Storage": _money(swap),
                "Commission": _money(commission),
                "Fee": "0.00",
                "PositionID": str(position),
                "Comment": comment,
                "PricePosition": str(price_position),
                "VolumeClosed": str(volume_ext // 10_000) if entry else "0",
                "VolumeClosedExt": str(volume_ext) if entry else "0",
            }
        )
        return ticket

    # --- the protocol ---------------------------------------------------------------

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path == path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def signed_in(self, token: str) -> bool:
        with self.lock:
            session = self.sessions.get(token)
            return bool(session and session["signed_in"])

    def auth_start(self, params: dict) -> tuple[dict, str]:
        version = params.get("version", "")
        agent = params.get("agent", "")
        if (
            not version.isdigit()
            or int(version) < 484
            or not agent
            or " " in agent
            or params.get("type") != "manager"
        ):
            return {"retcode": "3 Invalid parameters"}, ""
        token = secrets.token_hex(16)
        srv_rand = secrets.token_hex(16)
        with self.lock:
            self.sessions[token] = {
                "login": params.get("login", ""),
                "srv_rand": srv_rand,
                "started": time.monotonic(),
                "signed_in": False,
            }
        return {"retcode": "0 Done", "version_access": "1290", "srv_rand": srv_rand}, token

    def auth_answer(self, token: str, params: dict) -> dict:
        with self.lock:
            session = self.sessions.get(token)
            if session is None or not session["srv_rand"]:
                return {"retcode": "3 Invalid parameters"}
            srv_rand, session["srv_rand"] = session["srv_rand"], ""  # one use only
            if time.monotonic() - session["started"] > AUTH_TIMEOUT:
                return {"retcode": "9 Operation timeout"}
            expected = rand_answer(self.manager_password, srv_rand)
            if session["login"] != self.manager_login or params.get("srv_rand_answer") != expected:
                return {"retcode": "1001 Invalid account"}
            cli_rand = params.get("cli_rand", "")
            try:
                if len(bytes.fromhex(cli_rand)) != 16:
                    raise ValueError
            except ValueError:
                return {"retcode": "3 Invalid parameters"}
            session["signed_in"] = True
            self.sign_ins += 1
        secret = "not-the-password" if self.impostor else self.manager_password
        return {
            "retcode": "0 Done",
            "version_access": "1290",
            "version_trade": "1290",
            "cli_rand_answer": rand_answer(secret, cli_rand),
        }

    def dispatch(self, path: str, params: dict, body: dict) -> dict:
        handler = {
            "/api/user/add": self._user_add,
            "/api/user/update": self._user_update,
            "/api/user/change_password": self._change_password,
            "/api/user/account/get": self._account_get,
            "/api/trade/balance": self._trade_balance,
            "/api/deal/get": self._deal_get,
            "/api/deal/get_total": self._deal_get_total,
            "/api/deal/get_page": self._deal_get_page,
            "/api/deal/get_batch": self._deal_get_batch,
            "/api/history/get_batch": self._history_get_batch,
        }.get(path)
        if handler is None:
            return {"retcode": "12002 Command not supported"}
        with self.lock:
            return handler(params, body)

    def _user(self, params: dict, body: dict | None = None) -> dict | None:
        raw = (body or {}).get("Login") or params.get("login", "")
        try:
            return self.users.get(int(raw))
        except (TypeError, ValueError):
            return None

    def _user_add(self, params: dict, body: dict) -> dict:
        group = body.get("Group") or params.get("group", "")
        name = body.get("Name") or params.get("name", "")
        leverage = int(body.get("Leverage") or params.get("leverage") or 0)
        main = body.get("PassMain") or params.get("pass_main", "")
        investor = body.get("PassInvestor") or params.get("pass_investor", "")
        if not name or leverage <= 0:
            return {"retcode": "3 Invalid parameters"}
        if group not in self.groups:
            return {"retcode": "8 Not enough permissions"}
        if not _strong(main) or not _strong(investor):
            return {"retcode": "3006 Invalid account password"}
        login = self.user_add(group=group, leverage=leverage)
        user = self.users[login]
        user.update(name=name, email=body.get("Email", ""), pass_main=main, pass_investor=investor)
        return {
            "retcode": "0 Done",
            "answer": {
                "Login": str(login),
                "Group": group,
                "Name": name,
                "Leverage": str(leverage),
                "Rights": "2531",
                "Registration": str(self.now()),
            },
        }

    def _user_update(self, params: dict, body: dict) -> dict:
        user = self._user(params, body)
        if user is None:
            return {"retcode": "13 Not found"}
        leverage = int(body.get("Leverage") or params.get("leverage") or 0)
        if leverage <= 0:
            return {"retcode": "3 Invalid parameters"}
        user["leverage"] = leverage
        return {
            "retcode": "0 Done",
            "answer": {"Login": str(user["login"]), "Leverage": str(leverage)},
        }

    def _change_password(self, params: dict, body: dict) -> dict:
        user = self._user(params, body)
        if user is None:
            return {"retcode": "13 Not found"}
        kind = body.get("Type") or params.get("type", "")
        password = body.get("Password") or params.get("password", "")
        if kind not in ("main", "investor"):
            return {"retcode": "3 Invalid parameters"}
        if not _strong(password):
            return {"retcode": "3006 Invalid account password"}
        user["pass_main" if kind == "main" else "pass_investor"] = password
        return {"retcode": "0 Done"}

    def _account_get(self, params: dict, body: dict) -> dict:
        user = self._user(params)
        if user is None:
            return {"retcode": "13 Not found"}
        equity = user["balance"] + user["floating"]
        margin = user["margin"]
        level = equity * 100 / margin if margin else Decimal(0)
        return {
            "retcode": "0 Done",
            "answer": {
                "Login": str(user["login"]),
                "CurrencyDigits": "2",
                "Balance": _money(user["balance"]),
                "Credit": "0.00",
                "Margin": _money(margin),
                "MarginFree": _money(equity - margin),
                "MarginLevel": _money(level),
                "MarginLeverage": str(user["leverage"]),
                "Profit": _money(user["floating"]),
                "Storage": "0.00",
                "Floating": _money(user["floating"]),
                "Equity": _money(equity),
            },
        }

    def _trade_balance(self, params: dict, body: dict) -> dict:
        user = self._user(params)
        if user is None:
            return {"retcode": "13 Not found"}
        comment = params.get("comment", "")
        try:
            amount = Decimal(params.get("balance", ""))
        except ArithmeticError:
            return {"retcode": "3 Invalid parameters"}
        if params.get("type") != "2" or not amount.is_finite() or amount == 0:
            return {"retcode": "3 Invalid parameters"}
        if len(comment) > 32:
            return {"retcode": "3 Invalid parameters"}
        free = user["balance"] + user["floating"] - user["margin"]
        if amount < 0 and params.get("check_margin") == "1" and -amount > free:
            return {"retcode": "10019 Not enough money"}
        ticket = self._deal(user["login"], 2, 0, self.now(), profit=amount, comment=comment)
        user["balance"] += amount
        return {"retcode": "0 Done", "answer": {"Ticket": str(ticket)}}

    def _login_range(self, params: dict) -> list[dict] | None:
        try:
            login, start, end = (int(params[k]) for k in ("login", "from", "to"))
        except (KeyError, ValueError):
            return None
        return [
            d for d in self.deals if int(d["Login"]) == login and start <= int(d["Time"]) <= end
        ]

    def _deal_get(self, params: dict, body: dict) -> dict:
        for deal in self.deals:
            if deal["Deal"] == params.get("ticket"):
                return {"retcode": "0 Done", "answer": deal}
        return {"retcode": "13 Not found"}

    def _deal_get_total(self, params: dict, body: dict) -> dict:
        deals = self._login_range(params)
        if deals is None:
            return {"retcode": "3 Invalid parameters"}
        return {"retcode": "0 Done", "answer": {"total": str(len(deals))}}

    def _deal_get_page(self, params: dict, body: dict) -> dict:
        deals = self._login_range(params)
        if deals is None:
            return {"retcode": "3 Invalid parameters"}
        offset = int(params.get("offset", 0))
        total = min(int(params.get("total", 0)), 100)  # documented maximum
        deals.sort(key=lambda d: (int(d["Time"]), int(d["Deal"])))
        return {"retcode": "0 Done", "answer": deals[offset : offset + total]}

    def _deal_get_batch(self, params: dict, body: dict) -> dict:
        if "ticket" in params:
            wanted = {t for t in params["ticket"].split(",") if t}
            return {"retcode": "0 Done", "answer": [d for d in self.deals if d["Deal"] in wanted]}
        try:
            start, end = int(params["from"]), int(params["to"])
        except (KeyError, ValueError):
            return {"retcode": "3 Invalid parameters"}
        if "login" in params:
            logins = {int(x) for x in params["login"].split(",") if x}
        else:
            mask = params.get("group", "")
            logins = {u["login"] for u in self.users.values() if _group_matches(u["group"], mask)}
        rows = [
            d for d in self.deals if int(d["Login"]) in logins and start <= int(d["Time"]) <= end
        ]
        return {"retcode": "0 Done", "answer": rows}

    def _history_get_batch(self, params: dict, body: dict) -> dict:
        wanted = [int(t) for t in params.get("ticket", "").split(",") if t]
        return {"retcode": "0 Done", "answer": [self.orders[t] for t in wanted if t in self.orders]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real server
    wbufsize = 65536  # one write per answer (headers and body apart meet delayed ACKs)

    def log_message(self, format, *args) -> None:  # noqa: A002 - quiet in tests
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    connection_token = ""  # the session of this connection (binding="connection")

    def _token(self, server: MT5Server) -> str:
        if server.binding == "connection":
            return self.connection_token
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        morsel = cookie.get(COOKIE)
        return morsel.value if morsel else ""

    def _write(
        self, payload: dict | None, *, status: int = 200, cookie: str = "", times: int = 1
    ) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        for _ in range(times):
            self._write_one(data, status=status, cookie=cookie)
        self.wfile.flush()

    def _write_one(self, data: bytes, *, status: int, cookie: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cookie:
            self.send_header("Set-Cookie", f"{COOKIE}={cookie}; Path=/; HttpOnly")
        if self.close_connection:  # the client asked for it
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        server: MT5Server = self.server.mt5  # type: ignore[attr-defined]
        split = urlsplit(self.path)
        path = split.path
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        with server.lock:
            server.calls.append((path, params))
        if path == "/api/auth/start":
            payload, token = server.auth_start(params)
            if server.binding == "connection":
                self.connection_token, token = token, ""
            self._write(payload, cookie=token)
            return
        if path == "/api/auth/answer":
            self._write(server.auth_answer(self._token(server), params))
            return
        if not server.signed_in(self._token(server)):
            self._write({"retcode": "8 Not enough permissions"}, status=403)
            return
        fault = server.take_fault(path)
        kind = fault.kind if fault else ""
        if kind in ("timeout_before", "delay"):
            time.sleep(fault.seconds)
        if kind in ("timeout_before", "drop_before"):
            self.close_connection = True
            return
        if kind == "refuse":
            self._write({"retcode": fault.retcode})
            return
        if kind == "answer":
            self._write(fault.payload)
            return
        if kind == "status":
            self._write({"retcode": "2 Common error"}, status=fault.status)
            return
        payload = server.dispatch(path, params, body if isinstance(body, dict) else {})
        if kind == "drop_after":
            self.close_connection = True
            return
        if kind == "timeout_after":
            time.sleep(fault.seconds)
        try:
            self._write(payload, times=2 if kind == "answer_twice" else 1)
        except OSError:
            self.close_connection = True  # the client gave up waiting
