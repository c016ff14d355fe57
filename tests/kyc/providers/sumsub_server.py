"""A local Sumsub API server for the tests: the real wire format at the
network boundary, nothing mocked inside the adapter.

It checks every request the way Sumsub does (``X-App-Token``; ``X-App-Access-Ts``
within a minute of its clock; ``X-App-Access-Sig`` = hex HMAC-SHA256 with the
secret key of ts + METHOD + path with query + body, over the bytes it
received) and answers 401 with Sumsub's error shape otherwise. It serves the
endpoints the adapter uses, as documented:

- ``POST /resources/applicants?levelName=`` with ``{"externalUserId"}``:
  the applicant (one per external user id: a second is a 409 whose
  description names the existing one);
- ``GET /resources/applicants/-;externalUserId=<id>/one``;
- ``POST /resources/accessTokens/sdk`` with ``{"userId", "levelName",
  "ttlInSecs"}``: ``{"token", "userId"}``;
- ``POST /resources/sdkIntegrations/levels/-/websdkLink`` with
  ``{"levelName", "userId", "ttlInSecs", "redirect"?}``: ``{"url"}``.

Unknown levels are a 404. Faults are injected per path prefix::

    with SumsubServer() as server:
        server.fault("/resources/applicants", "status", status=503)

Kinds: ``status`` (answer that status with an error body, apply nothing),
``delay`` (sleep ``seconds``, then answer normally), ``drop`` (close the
connection without an answer), ``text`` (answer 200 with a body that is not
JSON), ``answer`` (answer 200 with ``payload``).

``webhook()`` builds a payload as Sumsub sends it, and ``signed()`` signs a
body with ``X-Payload-Digest`` / ``X-Payload-Digest-Alg``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

APP_TOKEN = "sbx:uY0CgwELmgUAEyl4hNWxLngb.0WSeQeiYny4WEqmAALEAiK2qTC96fBad"  # noqa: S105
SECRET_KEY = "Hej2ch71kG2kTd1iIUDZFNsO5C1lh5Gq"  # noqa: S105
WEBHOOK_SECRET = "whsec-sumsub-test"  # noqa: S105
MAX_SKEW = 60
ALGORITHMS = {
    "HMAC_SHA1_HEX": hashlib.sha1,
    "HMAC_SHA256_HEX": hashlib.sha256,
    "HMAC_SHA512_HEX": hashlib.sha512,
}


@dataclass
class Fault:
    path: str
    kind: str
    status: int = 0
    seconds: float = 0.0
    payload: dict | None = None
    times: int = 1


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int = 0


@dataclass
class Applicant:
    id: str
    external_user_id: str
    level_name: str
    created_at: str
    data: dict = field(default_factory=dict)


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _error(status: int, description: str, **extra) -> tuple[int, dict]:
    return status, {
        "description": description,
        "code": status,
        "correlationId": secrets.token_hex(12),
        **extra,
    }


class SumsubServer:
    def __init__(
        self,
        *,
        app_token: str = APP_TOKEN,
        secret_key: str = SECRET_KEY,
        levels: tuple[str, ...] = ("basic-kyc-level", "enhanced-kyc-level"),
    ) -> None:
        self.app_token = app_token
        self.secret_key = secret_key
        self.levels = set(levels)
        self.lock = threading.RLock()
        self.applicants: dict[str, Applicant] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.tokens: list[dict] = []
        self.links: list[dict] = []
        self._httpd: ThreadingHTTPServer | None = None

    # --- life cycle ---------------------------------------------------------------

    def start(self) -> SumsubServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.sumsub = self  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> SumsubServer:
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

    def applicant_add(self, external_user_id: str, level_name: str = "basic-kyc-level") -> str:
        """An applicant that exists at Sumsub already (made by the WebSDK, or
        by an earlier request whose answer was lost)."""
        with self.lock:
            return self._create(external_user_id, level_name).id

    def calls_to(self, prefix: str) -> list[Call]:
        with self.lock:
            return [call for call in self.calls if call.path.startswith(prefix)]

    # --- the API ------------------------------------------------------------------------

    def _create(self, external_user_id: str, level_name: str) -> Applicant:
        applicant = Applicant(
            id=secrets.token_hex(12),
            external_user_id=external_user_id,
            level_name=level_name,
            created_at=_now_text(),
        )
        self.applicants[applicant.id] = applicant
        return applicant

    def _by_external(self, external_user_id: str) -> Applicant | None:
        return next(
            (a for a in self.applicants.values() if a.external_user_id == external_user_id), None
        )

    def _applicant_json(self, applicant: Applicant) -> dict:
        return {
            "id": applicant.id,
            "createdAt": applicant.created_at,
            "key": "GJZXXXXXXXXXXX",
            "clientId": "broker_test",
            "inspectionId": applicant.id[::-1],
            "externalUserId": applicant.external_user_id,
            "info": {},
            "requiredIdDocs": {
                "docSets": [
                    {"idDocSetType": "IDENTITY", "types": ["PASSPORT", "ID_CARD"]},
                    {"idDocSetType": "SELFIE", "types": ["SELFIE"]},
                ]
            },
            "review": {
                "reviewId": secrets.token_hex(3),
                "attemptId": secrets.token_hex(3),
                "attemptCnt": 0,
                "levelName": applicant.level_name,
                "createDate": applicant.created_at,
                "reviewStatus": "init",
                "priority": 0,
            },
            "type": "individual",
        }

    def authenticate(self, method: str, path: str, headers: dict, body: bytes) -> str:
        """Why the request is not signed as Sumsub requires ("" when it is)."""
        if headers.get("x-app-token") != self.app_token:
            return "App token is missing or invalid"
        stamp = headers.get("x-app-access-ts", "")
        if not stamp.isdigit() or abs(int(stamp) - time.time()) > MAX_SKEW:
            return "Request timestamp is missing or out of range"
        signed = stamp.encode() + method.encode() + path.encode() + body
        expected = hmac.new(self.secret_key.encode(), signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("x-app-access-sig", "")):
            return "Request signature mismatch"
        return ""

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict]:
        refusal = self.authenticate(method, path, headers, body)
        if refusal:
            return _error(401, refusal)
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "Invalid JSON")
        with self.lock:
            if method == "POST" and parts.path == "/resources/applicants":
                return self._applicant_create(query, data)
            prefix = "/resources/applicants/-;externalUserId="
            if method == "GET" and parts.path.startswith(prefix) and parts.path.endswith("/one"):
                external = unquote(parts.path[len(prefix) : -len("/one")])
                applicant = self._by_external(external)
                if applicant is None:
                    return _error(404, "Applicant not found")
                return 200, self._applicant_json(applicant)
            if method == "POST" and parts.path == "/resources/accessTokens/sdk":
                return self._token(data)
            if method == "POST" and parts.path == "/resources/sdkIntegrations/levels/-/websdkLink":
                return self._link(data)
        return _error(404, "Not found")

    def _level_error(self, level: object) -> tuple[int, dict] | None:
        if not isinstance(level, str) or level not in self.levels:
            return _error(404, f"Level '{level}' not found")
        return None

    def _applicant_create(self, query: dict, data: dict) -> tuple[int, dict]:
        level = query.get("levelName")
        if error := self._level_error(level):
            return error
        external = data.get("externalUserId")
        if not isinstance(external, str) or not external:
            return _error(400, "externalUserId is required")
        existing = self._by_external(external)
        if existing is not None:
            return _error(
                409, f"Applicant with external user id '{external}' already exists: {existing.id}"
            )
        return 201, self._applicant_json(self._create(external, level))

    def _token(self, data: dict) -> tuple[int, dict]:
        if error := self._level_error(data.get("levelName")):
            return error
        user_id = data.get("userId")
        if not isinstance(user_id, str) or not user_id:
            return _error(400, "userId is required")
        token = f"_act-sbx-{secrets.token_hex(16)}"
        self.tokens.append({"token": token, **data})
        return 200, {"token": token, "userId": user_id}

    def _link(self, data: dict) -> tuple[int, dict]:
        if error := self._level_error(data.get("levelName")):
            return error
        if not isinstance(data.get("userId"), str) or not data["userId"]:
            return _error(400, "userId is required")
        url = f"https://in.sumsub.com/websdk/p/sbx_{secrets.token_urlsafe(12)}"
        self.links.append({"url": url, **data})
        return 200, {"url": url}

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if path.startswith(fault.path) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        server: SumsubServer = self.server.sumsub  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        call = Call(self.command, self.path, headers, body)
        with server.lock:
            server.calls.append(call)
        fault = server.take_fault(self.path)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        if fault is not None and fault.kind == "status":
            status, payload = _error(fault.status, "Injected failure")
        elif fault is not None and fault.kind == "answer":
            status, payload = 200, fault.payload
        elif fault is not None and fault.kind == "text":
            self._write(200, b"<html>maintenance</html>", "text/html")
            call.answered = 200
            return
        else:
            status, payload = server.answer(self.command, self.path, headers, body)
        call.answered = status
        self._write(status, json.dumps(payload).encode(), "application/json")

    def _write(self, status: int, data: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    do_GET = do_POST = _serve

    def log_message(self, *args) -> None:
        pass


# --- webhooks, as Sumsub sends them ------------------------------------------------------


def webhook(
    event_type: str,
    applicant_id: str,
    *,
    external_user_id: str = "",
    level_name: str = "basic-kyc-level",
    created_at: datetime | None = None,
    answer: str | None = None,
    reject_type: str | None = None,
    labels: list[str] | None = None,
    moderation_comment: str = "",
    client_comment: str = "",
    review_status: str | None = None,
    sandbox: bool = False,
) -> dict:
    """A user verification webhook's payload, with the fields Sumsub documents."""
    moment = created_at or datetime.now(UTC)
    payload: dict = {
        "applicantId": applicant_id,
        "inspectionId": applicant_id[::-1],
        "correlationId": secrets.token_hex(16),
        "levelName": level_name,
        "externalUserId": external_user_id,
        "type": event_type,
        "sandboxMode": sandbox,
        "reviewStatus": review_status
        or {"applicantReviewed": "completed", "applicantOnHold": "onHold"}.get(
            event_type, "pending" if event_type == "applicantPending" else "init"
        ),
        "createdAtMs": moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}",
        "applicantType": "individual",
        "clientId": "broker_test",
    }
    if answer is not None:
        result: dict = {"reviewAnswer": answer}
        if answer == "RED":
            result["rejectLabels"] = labels or []
            if reject_type is not None:
                result["reviewRejectType"] = reject_type
            if moderation_comment:
                result["moderationComment"] = moderation_comment
            if client_comment:
                result["clientComment"] = client_comment
        payload["reviewResult"] = result
    return payload


def signed(
    payload: dict | bytes, *, secret: str = WEBHOOK_SECRET, algorithm: str = "HMAC_SHA256_HEX"
) -> tuple[bytes, dict[str, str]]:
    """The body and the headers Sumsub sends with it."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload, indent=2).encode()
    digest = hmac.new(secret.encode(), body, ALGORITHMS[algorithm]).hexdigest()
    return body, {"X-Payload-Digest": digest, "X-Payload-Digest-Alg": algorithm}
