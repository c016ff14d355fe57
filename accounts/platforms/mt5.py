"""MetaTrader 5 through its Web API: HTTPS requests, JSON answers that carry
a ``retcode`` such as ``"0 Done"`` (MetaQuotes, "MetaTrader 5 Web API",
support.metaquotes.net/en/docs/mt5/api/webapi and its "Manager Interface
(Rest API)" pages).

Sign-in (``webapi_rest_authentication``), as a manager account:

1. ``GET /api/auth/start?version=…&agent=…&login=<manager>&type=manager``
   answers ``srv_rand``, 16 random bytes in hex.
2. ``GET /api/auth/answer?srv_rand_answer=…&cli_rand=…`` within 10 seconds,
   where ``password hash = MD5(MD5(password as UTF-16-LE) + b"WebAPI")``
   (raw digest bytes, not hex) and ``srv_rand_answer = hex(MD5(password hash
   + bytes.fromhex(srv_rand)))``; ``cli_rand`` is our own 16 random bytes.
   The server answers ``cli_rand_answer = hex(MD5(password hash +
   bytes.fromhex(cli_rand)))``, which we check: a server that cannot compute
   it does not know the password and is not trusted (mutual authentication).
   The documentation's worked example (password ``Password1``) is pinned in
   the tests. The session is then kept on one kept-alive connection of a
   ``requests.Session`` (per thread and process), which also keeps any
   cookie the server sets: MetaQuotes' own example client uses exactly one
   connection, so the server may bind the session to it. When the server
   says the session is not (or no longer) authorised (HTTP 401/403), we sign
   in again once and repeat the request, which is safe because a refused
   request was not applied; a dropped connection also drops the session.

Operations: ``/api/user/add`` (``group``, ``name``, ``leverage`` in the query,
``PassMain``/``PassInvestor``/``Email`` in a JSON body, as the documentation
urges for passwords; the server allocates the login), ``/api/user/update``
(leverage), ``/api/user/change_password`` (JSON body ``Login``, ``Type``
``main``, ``Password``; the documented endpoint, there is no
``/api/user/pass/change``), ``/api/trade/balance`` (``type=2``, a balance
deal; ``check_margin=1`` on debits; the answered ticket is read back with
``/api/deal/get`` and must carry our key), ``/api/user/account/get`` (balance,
equity, margin, free margin, margin level), ``/api/deal/get_total`` and
``/api/deal/get_page`` (one login's deals, pages of at most 100),
``/api/deal/get_batch`` (every deal of the groups matching a mask in a time
range: the incremental sync) and ``/api/history/get_batch`` (the orders that
opened positions, for the open time of a closed trade whose opening deal is
older than the window read).

Idempotency: MT5 has no idempotency key, so the key is written as the
balance deal's comment (at most 32 characters in MT5: a longer key is refused
with ``ValueError`` before anything is sent), and
:meth:`MT5Gateway.balance_operation_find` pages backwards through the
login's deals of the last ``find_window_days`` (default 7) looking for a
balance deal with that comment. :meth:`MT5Gateway.balance_operation` asks
that first, so the same key twice is applied once (two concurrent calls with
one key are the caller's to prevent).

Errors: a retcode refusal (not enough money, invalid account or parameters,
no permission, …) is a permanent :class:`PlatformError`; "server busy",
"network", "too frequent", HTTP 503, a refused connection or a connect
timeout (nothing was sent) are transient ones. A read timeout, a dropped
connection, an unreadable answer or a 5xx other than 503 *after* a request
that changes state (balance operation, user creation) raise
:class:`OutcomeUnknown`: it may have been applied. A read whose kept-alive
connection turns out to have been closed is repeated once (harmless).

Time: MT5 stamps deals in the trade server's clock, expressed as seconds
since 1970 (servers often run at UTC+2 or +3). ``server_utc_offset`` (hours,
default 0) converts them to UTC. The deals cursor is ``"<server seconds>:
<deal ticket>"`` of the last deal returned, so a deal in the same second is
neither lost nor repeated (tickets grow with time).

Settings: ``url``, ``manager_login``; optional ``timeout`` (seconds, 10),
``verify_tls`` (true), ``deal_groups`` (group mask for the deal sync,
``*``), ``server_utc_offset`` (hours, 0), ``find_window_days`` (7),
``deals_start`` (where an empty cursor starts: ISO date or Unix seconds,
2010-01-01), ``deals_window`` (seconds read per request at first, one day).
Secret: ``manager_password``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from .base import (
    AccountState,
    DealRecord,
    DealsPage,
    OutcomeUnknown,
    PlatformError,
    PlatformGateway,
)

WEB_API_VERSION = "3470"  # the platform build we were written against (documented minimum 484)
AGENT = "backoffice"  # must be non-empty and without spaces
COMMENT_MAX = 32  # MT5 deal comments
PAGE_MAX = 100  # /api/deal/get_page returns at most 100 deals per request
TICKETS_PER_REQUEST = 100
DEFAULT_TIMEOUT = 10.0
DEFAULT_DEALS_START = int(datetime(2010, 1, 1, tzinfo=UTC).timestamp())
DEAL_WINDOW_MIN = 60
DEAL_WINDOW_MAX = 30 * 86_400
WINDOWS_PER_CALL = 400
SETTLE_SECONDS = 5  # the sync never moves its cursor past "now" minus this, in an empty stretch

# EnDealAction / EnDealEntry (IMTDeal)
ACTION_BUY, ACTION_SELL, ACTION_BALANCE = 0, 1, 2
ENTRY_IN, CLOSING_ENTRIES = 0, {1, 2, 3}  # out, in/out (reversal), out by an opposite position

#: Retcodes that say "not now" rather than "no": retrying later can help.
TRANSIENT_RETCODES = {
    7,  # network error
    9,  # operation timeout
    10,  # no connection
    11,  # service not available
    12,  # too frequent requests
    15,  # server shutdown in progress
    1018,  # server busy
    10012,  # request timeout
    10024,  # too many trade requests
    10031,  # no connection to the trade server
    12003,  # cancelled because of a possible deadlock
    12004,  # entity locked
}
#: Of those, the ones that say the trade server did not answer in time: a
#: request that changes state may still have been applied.
UNANSWERED_RETCODES = {9, 10012}

_RETCODE = re.compile(r"^\s*(-?\d+)\s*(.*)$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
_local = threading.local()


# --- the password scheme (webapi_rest_authentication) ----------------------


def password_hash(password: str) -> bytes:
    """``MD5(MD5(password as UTF-16-LE) + "WebAPI")``, as raw bytes."""
    inner = hashlib.md5(password.encode("utf-16-le"), usedforsecurity=False).digest()
    return hashlib.md5(inner + b"WebAPI", usedforsecurity=False).digest()


def rand_answer(password: str, rand_hex: str) -> str:
    """The answer to a 16-byte random challenge: ``hex(MD5(password hash +
    bytes of the challenge))``. Both sides use it (srv_rand and cli_rand)."""
    data = password_hash(password) + bytes.fromhex(rand_hex)
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# --- helpers -------------------------------------------------------------------


class _Dropped(PlatformError):
    """A read whose connection dropped after it was sent (repeatable)."""


class _Connection:
    """One kept-alive connection and whether it is signed in. MetaQuotes'
    own examples use exactly one connection ("one connection is used", with
    ``Connection: Keep-Alive``): the server may bind the session to it as
    well as to its cookie, so the session is not spread over a pool."""

    def __init__(self) -> None:
        self.http = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1)
        self.http.mount("https://", adapter)
        self.http.mount("http://", adapter)
        self.http.headers.update(
            {"Accept": "application/json", "User-Agent": AGENT, "Connection": "keep-alive"}
        )
        self.signed_in = False


def _decimal(value: Any, default: str = "0") -> Decimal:
    if value is None or value == "":
        return Decimal(default)
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise PlatformError(f"MT5 answered a number that is not one: {value!r}.") from None
    if not result.is_finite():
        raise PlatformError(f"MT5 answered a number that is not one: {value!r}.")
    return result


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        raise PlatformError(f"MT5 answered an integer that is not one: {value!r}.") from None


def _amount_text(amount: Decimal) -> str:
    return format(amount.normalize(), "f")


def _nothing_was_sent(exc: requests.exceptions.ConnectionError) -> bool:
    """Whether a connection error happened before the request left: refused,
    unresolved or timed out while connecting, or a failed TLS handshake."""
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, ConnectTimeoutError)  # NewConnectionError is one too


def _deal_time(row: dict, field: str, offset: int | tzinfo) -> datetime:
    """A time of the trade server's clock (``<field>`` seconds, with the
    milliseconds of ``<field>Msc`` when they agree) as an aware UTC datetime.
    ``offset``: the server's fixed offset in seconds, or its time zone (the
    server's wall clock, daylight saving time included)."""
    seconds = _int(row.get(field))
    msc = _int(row.get(f"{field}Msc"))
    stamp = msc / 1000 if msc and msc // 1000 == seconds else seconds
    if isinstance(offset, tzinfo):
        wall = datetime.fromtimestamp(stamp, tz=UTC).replace(tzinfo=offset)
        return wall.astimezone(UTC)
    return datetime.fromtimestamp(stamp - offset, tz=UTC)


def _key_check(key: str) -> None:
    if not key:
        raise ValueError("A balance operation needs an idempotency key.")
    if len(key) > COMMENT_MAX:
        raise ValueError(
            f"The idempotency key {key!r} is {len(key)} characters long; MT5 keeps it in the "
            f"deal's comment, which holds at most {COMMENT_MAX}."
        )


class MT5Gateway(PlatformGateway):
    label = "MetaTrader 5 (Web API)"
    secret_names = ("manager_password",)
    required_settings = ("url", "manager_login")

    # --- configuration ---------------------------------------------------------

    @property
    def _url(self) -> str:
        url = str(self.settings.get("url") or "").strip().rstrip("/")
        if not url.startswith(("https://", "http://")):
            raise PlatformError(
                "MT5 is not configured: set url (https://host:port).", permanent=True
            )
        return url

    @property
    def _manager(self) -> tuple[str, str]:
        login = str(self.settings.get("manager_login") or "").strip()
        password = str(self.secrets.get("manager_password") or "")
        if not login or not password:
            raise PlatformError(
                "MT5 is not configured: set manager_login and the manager_password secret.",
                permanent=True,
            )
        return login, password

    def _number(self, name: str, default: float) -> float:
        raw = self.settings.get(name)
        if raw in (None, ""):
            return default
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise PlatformError(f"MT5 setting {name} must be a number.", permanent=True) from None

    @property
    def _timeout(self) -> float:
        return max(self._number("timeout", DEFAULT_TIMEOUT), 0.05)

    @property
    def _verify_tls(self) -> bool:
        raw = self.settings.get("verify_tls", True)
        if isinstance(raw, str):
            return raw.strip().lower() not in ("0", "false", "no", "off")
        return bool(raw)

    @property
    def _offset_seconds(self) -> int | tzinfo:
        """The server clock's offset from UTC: its time zone when the
        ``timezone`` setting names one (e.g. ``Europe/Athens``: right across
        daylight saving time changes), else ``server_utc_offset`` hours."""
        name = str(self.settings.get("timezone") or "").strip()
        if name:
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise PlatformError(
                    f"MT5 setting timezone {name!r} is not a time zone.", permanent=True
                ) from None
        return int(self._number("server_utc_offset", 0) * 3600)

    def _server_now(self) -> int:
        offset = self._offset_seconds
        if isinstance(offset, tzinfo):
            return int(datetime.now(offset).replace(tzinfo=UTC).timestamp())
        return int(time.time()) + offset

    def _deals_start(self) -> int:
        raw = self.settings.get("deals_start")
        if raw in (None, ""):
            return DEFAULT_DEALS_START
        if isinstance(raw, int | float) or str(raw).strip().isdigit():
            return int(raw)
        try:
            day = date.fromisoformat(str(raw).strip())
        except ValueError:
            raise PlatformError(
                "MT5 setting deals_start must be a date (YYYY-MM-DD) or Unix seconds.",
                permanent=True,
            ) from None
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())

    # --- the connection ----------------------------------------------------------

    def _connection(self) -> _Connection:
        login, password = self._manager
        fingerprint = hashlib.sha256(password.encode()).hexdigest()
        key = (os.getpid(), self.platform.pk, self._url, login, fingerprint)
        connections = getattr(_local, "connections", None)
        if connections is None:
            connections = _local.connections = {}
        connection = connections.get(key)
        if connection is None:
            connection = connections[key] = _Connection()
        return connection

    @classmethod
    def sessions_close(cls) -> None:
        """Close this thread's MT5 sessions (the next call signs in again)."""
        for connection in getattr(_local, "connections", {}).values():
            connection.http.close()
        _local.connections = {}

    def _send(
        self,
        connection: _Connection,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        body: dict | None = None,
        applies: bool = False,
    ) -> requests.Response:
        """One HTTP exchange, with transport failures translated: nothing sent
        → transient :class:`PlatformError`; sent without an answer →
        :class:`OutcomeUnknown` when ``applies`` (the request changes state)."""
        url = f"{self._url}{path}"
        try:
            return connection.http.request(
                method,
                url,
                params=params,
                json=body,
                timeout=self._timeout,
                verify=self._verify_tls,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            # The connection is gone, and with it a session bound to it.
            connection.signed_in = False
            raise self._transport_error(exc, path, applies=applies) from exc

    @staticmethod
    def _transport_error(exc: requests.RequestException, path: str, *, applies: bool):
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return PlatformError(f"MT5 ({path}) did not accept the connection in time.")
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _nothing_was_sent(exc):
                return PlatformError(f"MT5 ({path}) cannot be reached.")
            if applies:
                return OutcomeUnknown(
                    f"The connection to MT5 dropped after {path} was sent; it may have been "
                    "applied."
                )
            return _Dropped(f"The connection to MT5 dropped during {path}.")
        if isinstance(exc, requests.exceptions.Timeout):
            if applies:
                return OutcomeUnknown(
                    f"MT5 did not answer {path} in time; it may have been applied."
                )
            return PlatformError(f"MT5 did not answer {path} in time.")
        return PlatformError(f"MT5 ({path}) cannot be called: {exc}", permanent=True)

    def _answer(self, response: requests.Response, path: str, *, applies: bool) -> dict:
        """The JSON answer of a successful request, or the error it means."""
        status = response.status_code
        if status >= 500:
            if applies and status != 503:
                raise OutcomeUnknown(
                    f"MT5 answered HTTP {status} to {path}; it may have been applied."
                )
            raise PlatformError(f"MT5 answered HTTP {status} to {path}.")
        if status >= 400:
            raise PlatformError(f"MT5 refused {path} (HTTP {status}).", permanent=True)
        try:
            data = response.json()
        except ValueError:
            data = None
        retcode = data.get("retcode") if isinstance(data, dict) else None
        match = _RETCODE.match(str(retcode)) if retcode is not None else None
        if match is None:
            if applies:
                raise OutcomeUnknown(f"MT5 answered {path} with something unreadable.")
            raise PlatformError(f"MT5 answered {path} with something unreadable.")
        code = int(match.group(1))
        if code in (0, 1):  # done; done with no data
            return data
        text = f"{code} {match.group(2)}".strip()
        if code in TRANSIENT_RETCODES:
            if applies and code in UNANSWERED_RETCODES:
                raise OutcomeUnknown(f"MT5 answered {path} with {text}; it may have been applied.")
            raise PlatformError(f"MT5 is busy ({text}).")
        raise PlatformError(f"MT5 refused: {text}.", permanent=True)

    def _sign_in(self, connection: _Connection) -> None:
        login, password = self._manager
        connection.signed_in = False
        start = self._send(
            connection,
            "GET",
            "/api/auth/start",
            params={"version": WEB_API_VERSION, "agent": AGENT, "login": login, "type": "manager"},
        )
        if start.status_code in (401, 403):
            raise PlatformError(
                f"MT5 refused the manager sign-in (HTTP {start.status_code}).", permanent=True
            )
        srv_rand = str(self._signing_answer(start, "/api/auth/start").get("srv_rand") or "")
        if not _HEX32.match(srv_rand):
            raise PlatformError("MT5 started the sign-in without a valid srv_rand.")
        cli_rand = secrets.token_hex(16)
        answer = self._send(
            connection,
            "GET",
            "/api/auth/answer",
            params={"srv_rand_answer": rand_answer(password, srv_rand), "cli_rand": cli_rand},
        )
        if answer.status_code in (401, 403):
            raise PlatformError(
                f"MT5 refused the manager sign-in (HTTP {answer.status_code}).", permanent=True
            )
        proof = str(self._signing_answer(answer, "/api/auth/answer").get("cli_rand_answer") or "")
        expected = rand_answer(password, cli_rand)
        if not _HEX32.match(proof) or not hmac.compare_digest(proof.lower(), expected):
            raise PlatformError(
                "The MT5 server could not prove that it knows the manager password; "
                "it is not trusted (check the url).",
                permanent=True,
            )
        connection.signed_in = True

    def _signing_answer(self, response: requests.Response, path: str) -> dict:
        try:
            return self._answer(response, path, applies=False)
        except PlatformError as exc:
            if exc.permanent:
                raise PlatformError(
                    f"MT5 refused the manager sign-in: {exc}", permanent=True
                ) from exc
            raise

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        body: dict | None = None,
        applies: bool = False,
    ) -> dict:
        """A signed-in request. Signs in again once when the server says the
        session is not (or no longer) authorised, and repeats a read once when
        its kept-alive connection turns out to have been closed."""
        connection = self._connection()
        signed_in_again = repeated = False
        while True:
            if not connection.signed_in:
                self._sign_in(connection)
            try:
                response = self._send(
                    connection, method, path, params=params, body=body, applies=applies
                )
            except _Dropped:
                if repeated:
                    raise
                repeated = True
                continue
            if response.status_code in (401, 403):
                connection.signed_in = False
                if signed_in_again:
                    raise PlatformError(
                        f"MT5 refused {path} even after signing in again (HTTP "
                        f"{response.status_code}): check the manager's permissions.",
                        permanent=True,
                    )
                signed_in_again = True  # refused, so not applied: safe to repeat
                continue
            return self._answer(response, path, applies=applies)

    # --- accounts ------------------------------------------------------------------

    def account_create(
        self,
        *,
        group: str,
        currency: str,
        currency_digits: int,
        leverage: int,
        name: str,
        email: str,
        password: str,
        investor_password: str,
    ) -> str:
        """The currency is the group's on MT5 (``group`` decides it)."""
        if not group:
            raise PlatformError("The account type has no MT5 group.", permanent=True)
        params = {"group": group, "name": (name or email or "Client")[:127], "leverage": leverage}
        body = {
            "Group": group,
            "Name": params["name"],
            "Email": email or "",
            "Leverage": leverage,
            "PassMain": password,
            "PassInvestor": investor_password,
        }
        data = self._request("POST", "/api/user/add", params=params, body=body, applies=True)
        answer = data.get("answer") if isinstance(data.get("answer"), dict) else {}
        login = answer.get("Login") or data.get("login")
        if not login or str(login) == "0":
            raise OutcomeUnknown("MT5 created the user but did not say its login.")
        return str(login)

    def leverage_change(self, *, login: str, leverage: int) -> None:
        if leverage <= 0:
            raise PlatformError("Leverage must be positive.", permanent=True)
        # Setting a value is idempotent: repeating it after a timeout is harmless.
        self._request("POST", "/api/user/update", params={"login": login, "leverage": leverage})

    def password_change(self, *, login: str, password: str) -> None:
        self._request(
            "POST",
            "/api/user/change_password",
            body={"Login": str(login), "Type": "main", "Password": password},
        )

    def account_state(self, *, login: str) -> AccountState:
        data = self._request("GET", "/api/user/account/get", params={"login": login})
        answer = data.get("answer")
        if not isinstance(answer, dict) or "Balance" not in answer or "Equity" not in answer:
            raise PlatformError(f"MT5 returned no trade state for {login}.")
        margin = _decimal(answer.get("Margin"))
        level = _decimal(answer.get("MarginLevel")) if margin else None
        leverage = _int(answer.get("MarginLeverage")) or None
        return AccountState(
            balance=_decimal(answer.get("Balance")),
            equity=_decimal(answer.get("Equity")),
            margin=margin,
            free_margin=_decimal(answer.get("MarginFree")),
            margin_level=level.quantize(Decimal("0.01")) if level is not None else None,
            leverage=leverage,
        )

    # --- balance operations ----------------------------------------------------

    def balance_operation(self, *, login: str, amount: Decimal, comment: str, key: str) -> str:
        """A balance deal (``type=2``) whose comment is ``key`` (our ``comment``
        text does not fit beside it in MT5's 32 characters)."""
        _key_check(key)
        amount = Decimal(amount)
        if not amount.is_finite() or amount == 0:
            raise PlatformError("The amount must be a non-zero number.", permanent=True)
        existing = self.balance_operation_find(login=login, key=key)
        if existing is not None:
            return existing  # the same operation again: applied once
        params: dict[str, Any] = {
            "login": login,
            "type": ACTION_BALANCE,
            "balance": _amount_text(amount),
            "comment": key,
        }
        if amount < 0:
            params["check_margin"] = 1  # refuse a withdrawal beyond the free margin
        data = self._request("POST", "/api/trade/balance", params=params, applies=True)
        answer = data.get("answer") if isinstance(data.get("answer"), dict) else {}
        ticket = answer.get("Ticket") or data.get("ticket")
        if not ticket:
            raise OutcomeUnknown("MT5 applied the balance operation without saying its ticket.")
        self._balance_deal_confirm(login=login, key=key, ticket=str(ticket))
        return str(ticket)

    def _balance_deal_confirm(self, *, login: str, key: str, ticket: str) -> None:
        """Read the deal back: the ticket MT5 answered must be a balance deal of
        this login carrying our key. An answer read from the wrong exchange
        (a proxy's or a server's stray bytes on a kept-alive connection) must
        not pass for the confirmation of this operation."""
        try:
            data = self._request("GET", "/api/deal/get", params={"ticket": ticket})
        except PlatformError as exc:
            raise OutcomeUnknown(
                f"MT5 answered ticket {ticket} but it could not be read back: {exc}"
            ) from exc
        deal = data.get("answer")
        if not (
            isinstance(deal, dict)
            and str(deal.get("Deal")) == ticket
            and str(deal.get("Login")) == str(login)
            and _int(deal.get("Action"), -1) == ACTION_BALANCE
            and str(deal.get("Comment") or "") == key
        ):
            raise OutcomeUnknown(
                f"MT5 answered ticket {ticket}, which is not this balance operation."
            )

    def balance_operation_find(self, *, login: str, key: str) -> str | None:
        """Pages backwards through the login's deals of the last
        ``find_window_days`` for a balance deal whose comment is ``key``."""
        _key_check(key)
        now = self._server_now()
        days = self._number("find_window_days", 7)
        window = {"login": login, "from": int(now - days * 86_400), "to": now + 86_400}
        data = self._request("GET", "/api/deal/get_total", params=window)
        answer = data.get("answer")
        total = answer.get("total") if isinstance(answer, dict) else data.get("total")
        if total is None:
            raise PlatformError(f"MT5 did not say how many deals {login} has.")
        total = _int(total)
        end = total
        while end > 0:
            start = max(0, end - PAGE_MAX)
            page = self._request(
                "GET",
                "/api/deal/get_page",
                params={**window, "offset": start, "total": end - start},
            ).get("answer")
            for deal in reversed(page if isinstance(page, list) else []):
                if (
                    _int(deal.get("Action"), -1) == ACTION_BALANCE
                    and str(deal.get("Comment") or "") == key
                    and str(deal.get("Login") or login) == str(login)
                ):
                    return str(deal.get("Deal"))
            end = start
        return None

    # --- deals ------------------------------------------------------------------------

    @staticmethod
    def _cursor_parse(cursor: str) -> tuple[int, int] | None:
        if not cursor:
            return None
        seconds, _, ticket = cursor.partition(":")
        try:
            return int(seconds), int(ticket or 0)
        except ValueError:
            raise PlatformError(
                f"Unreadable MT5 deals cursor {cursor!r}.", permanent=True
            ) from None

    def deals_since(self, cursor: str, *, limit: int = 10_000) -> DealsPage:
        """Closed trades (``Entry`` out, in/out or out-by of buy/sell deals)
        after ``cursor``, oldest first, read window by window with
        ``/api/deal/get_batch`` over the ``deal_groups`` mask. A window starts
        at the cursor's second (inclusive) and the deals at or before the
        cursor are skipped; empty stretches widen the window, crowded ones
        narrow it."""
        limit = max(int(limit), 1)
        position = self._cursor_parse(cursor) or (self._deals_start(), 0)
        groups = str(self.settings.get("deal_groups") or "*")
        window = int(
            min(max(self._number("deals_window", 86_400), DEAL_WINDOW_MIN), DEAL_WINDOW_MAX)
        )
        settled = self._server_now() - SETTLE_SECONDS
        closing: list[dict] = []
        opened: dict[int, dict] = {}  # position id -> its earliest opening deal seen
        more = False
        for _ in range(WINDOWS_PER_CALL):
            start = position[0]
            end = start + window
            rows = self._request(
                "GET", "/api/deal/get_batch", params={"group": groups, "from": start, "to": end}
            ).get("answer")
            fresh = []
            for row in rows if isinstance(rows, list) else []:
                if _int(row.get("Action"), -1) not in (ACTION_BUY, ACTION_SELL):
                    continue  # balance, credit, charges, commissions: not trades
                entry = _int(row.get("Entry"), -1)
                if entry == ENTRY_IN:
                    position_id = _int(row.get("PositionID"))
                    earlier = opened.get(position_id)
                    if earlier is None or _int(earlier.get("Time")) > _int(row.get("Time")):
                        opened[position_id] = row
                elif entry in CLOSING_ENTRIES:
                    key = (_int(row.get("Time")), _int(row.get("Deal")))
                    if key > position:
                        fresh.append((key, row))
            fresh.sort(key=lambda item: item[0])
            room = limit - len(closing)
            if len(fresh) > room:
                closing.extend(row for _, row in fresh[:room])
                if room:
                    position = fresh[room - 1][0]
                more = True
                break
            closing.extend(row for _, row in fresh)
            if fresh:
                position = fresh[-1][0]
            if end > settled:
                break  # reached the present
            position = max(position, (end, 0))
            if not fresh:
                window = min(window * 2, DEAL_WINDOW_MAX)
            elif len(rows) > 4 * limit:
                window = max(window // 2, DEAL_WINDOW_MIN)
        else:
            more = True
        deals = self._deal_records(closing, opened)
        next_cursor = f"{position[0]}:{position[1]}"
        return DealsPage(deals, cursor=next_cursor, more=more)

    def _open_orders(self, position_ids: list[int]) -> dict[int, dict]:
        """The orders that opened these positions (an MT5 position's id is the
        ticket of the order that opened it)."""
        found: dict[int, dict] = {}
        for i in range(0, len(position_ids), TICKETS_PER_REQUEST):
            chunk = position_ids[i : i + TICKETS_PER_REQUEST]
            rows = self._request(
                "GET", "/api/history/get_batch", params={"ticket": ",".join(map(str, chunk))}
            ).get("answer")
            for row in rows if isinstance(rows, list) else []:
                found[_int(row.get("Order"))] = row
        return found

    def _deal_records(self, closing: list[dict], opened: dict[int, dict]) -> list[DealRecord]:
        missing = sorted({_int(r.get("PositionID")) for r in closing} - set(opened) - {0})
        orders = self._open_orders(missing) if missing else {}
        offset = self._offset_seconds
        records = []
        for row in closing:
            position_id = _int(row.get("PositionID"))
            close_time = _deal_time(row, "Time", offset)
            open_time = close_time
            open_price = _decimal(row.get("PricePosition"))
            if position_id in opened:
                open_time = _deal_time(opened[position_id], "Time", offset)
                open_price = open_price or _decimal(opened[position_id].get("Price"))
            elif position_id in orders:
                order = orders[position_id]
                field = "TimeDone" if _int(order.get("TimeDone")) else "TimeSetup"
                if _int(order.get(field)):
                    open_time = _deal_time(order, field, offset)
                open_price = open_price or _decimal(order.get("PriceCurrent"))
            records.append(
                DealRecord(
                    ticket=_int(row.get("Deal")),
                    login=str(row.get("Login")),
                    symbol=str(row.get("Symbol") or ""),
                    # The closing deal goes against the position it closes.
                    side="buy" if _int(row.get("Action")) == ACTION_SELL else "sell",
                    volume=self._volume(row),
                    open_time=min(open_time, close_time),
                    close_time=close_time,
                    open_price=open_price,
                    close_price=_decimal(row.get("Price")),
                    profit=_decimal(row.get("Profit")),
                    commission=_decimal(row.get("Commission")) + _decimal(row.get("Fee")),
                    swap=_decimal(row.get("Storage")),
                )
            )
        return records

    @staticmethod
    def _volume(row: dict) -> Decimal:
        """Lots closed: the extended (1e-8 lot) fields when present, else the
        classic ones (1e-4 lot)."""
        for field, scale in (
            ("VolumeClosedExt", Decimal("1e8")),
            ("VolumeClosed", Decimal("1e4")),
            ("VolumeExt", Decimal("1e8")),
            ("Volume", Decimal("1e4")),
        ):
            raw = _int(row.get(field))
            if raw:
                return (Decimal(raw) / scale).normalize()
        return Decimal("0")
