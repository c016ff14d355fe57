"""Identity verification by Sumsub, through its REST API and signed webhooks.

The wire format, as Sumsub documents it (docs.sumsub.com, "Authentication",
"Create applicant", "Generate access token", "Generate external WebSDK
link", "User verification webhooks", "Receive results via API"):

- Every request is signed. Headers ``X-App-Token`` (the app token),
  ``X-App-Access-Ts`` (Unix seconds) and ``X-App-Access-Sig``: the lowercase
  hex HMAC-SHA256, keyed with the app token's secret key, of the timestamp,
  the method in upper case, the path with its query string (no host) and the
  body bytes, concatenated. We sign the request exactly as it is sent
  (``PreparedRequest.path_url`` and ``.body``).
- ``applicant_for``: ``POST /resources/applicants?levelName=<level>`` with
  ``{"externalUserId": <our id>}``. Sumsub keeps one applicant per external
  user id and answers 409 for a second one; we then find it again with
  ``GET /resources/applicants/-;externalUserId=<our id>/one``: never two
  applicants per client.
- ``start``: the hosted WebSDK (no JS from a CDN in our pages), ``POST
  /resources/sdkIntegrations/levels/-/websdkLink`` with ``{"levelName",
  "userId", "ttlInSecs", "redirect": {"successUrl", "rejectUrl"}}``; the
  answer's ``url`` is where the trader is sent. (The older form named the
  level in the path and the user in the query,
  ``/resources/sdkIntegrations/levels/{levelName}/websdkLink?ttlInSecs=&externalUserId=``;
  the current reference documents the JSON body, which we use.)
- ``access_token`` for the mobile SDK: ``POST /resources/accessTokens/sdk``
  with ``{"userId", "levelName", "ttlInSecs"}``, answering ``{"token",
  "userId"}``. (The deprecated form was ``POST
  /resources/accessTokens?userId=&levelName=&ttlInSecs=`` with no body; the
  current reference documents the JSON-body endpoint, which we use.)
- Webhooks carry ``X-Payload-Digest``: the lowercase hex HMAC of the raw body
  keyed with the webhook's secret, with the algorithm named in
  ``X-Payload-Digest-Alg`` (``HMAC_SHA1_HEX``, ``HMAC_SHA256_HEX`` (the
  default) or ``HMAC_SHA512_HEX``). Compared in constant time. Setting
  ``webhook_digest_alg`` pins the one chosen in Sumsub's dashboard.
- Types and what they mean here: ``applicantPending`` and ``applicantOnHold``
  → pending; ``applicantReviewed`` with ``reviewResult.reviewAnswer`` GREEN →
  approved, RED with ``reviewRejectType`` RETRY → resubmission (the client may
  try again), RED with FINAL → rejected (RED without a type is treated as
  RETRY: the client may try again, staff can still reject);
  ``applicantReset`` (status back to init, documents inactive) → resubmission.
  Every other type (``applicantCreated``, ``applicantPrechecked``,
  ``applicantPersonalInfoChanged``, …) is acknowledged and not acted on.
  The note shown to the client is ``moderationComment`` with the
  ``rejectLabels``; ``clientComment`` is for staff only and stays in the
  stored payload.
- Replays: an event's key is ``<applicantId>|<levelName>|<createdAtMs as
  epoch ms, 13 digits>|<type>``, the same for every redelivery; Sumsub asks
  integrators to order by ``createdAtMs`` ("2021-05-14 16:00:25.032", UTC),
  and these keys sort by it within an applicant and level.
- Sumsub sends webhooks from its sandbox with ``"sandboxMode": true``; they
  are recorded and not applied unless the provider's setting ``sandbox`` is on.

Settings: ``base_url`` (default ``https://api.sumsub.com``; plain HTTP only
to this machine), ``timeout`` (seconds, 15), ``link_ttl`` (seconds, 1800),
``token_ttl`` (seconds, 600), ``external_user_id_prefix`` (""; set one per
installation when several share a Sumsub account), ``sandbox`` (false),
``webhook_digest_alg`` (""). Secrets: ``app_token``, ``secret_key``,
``webhook_secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from .base import (
    APPROVED,
    PENDING,
    REJECTED,
    RESUBMIT,
    KycProviderBase,
    ProviderError,
    ProviderOutcome,
    ProviderStart,
    WebhookMalformed,
    WebhookRejected,
)

DIGEST_HEADER = "X-Payload-Digest"
DIGEST_ALG_HEADER = "X-Payload-Digest-Alg"
DIGEST_ALGORITHMS = {
    "HMAC_SHA1_HEX": hashlib.sha1,
    "HMAC_SHA256_HEX": hashlib.sha256,
    "HMAC_SHA512_HEX": hashlib.sha512,
}
DEFAULT_DIGEST_ALG = "HMAC_SHA256_HEX"
CONNECT_TIMEOUT = 5
MAX_KEY = 200  # ProviderEvent.event_key
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOOPBACK_NAMES = {"localhost"}

# type -> (outcome, provider status) for the types that are not reviews.
STATUS_OF_TYPE = {
    "applicantPending": (PENDING, "pending"),
    "applicantOnHold": (PENDING, "onHold"),
    "applicantReset": (RESUBMIT, "init"),
}
RESET_NOTE = "The verification was reset: please go through it again."


class SumsubProvider(KycProviderBase):
    label = "Sumsub (applicant, WebSDK link, signed webhooks)"
    secret_names = ("app_token", "secret_key", "webhook_secret")
    required_settings = ()
    optional_settings = {
        "base_url": "https://api.sumsub.com",
        "timeout": 15,
        "link_ttl": 1800,
        "token_ttl": 600,
        "external_user_id_prefix": "",
        "sandbox": False,
        "webhook_digest_alg": "",
    }

    # --- the REST API ---------------------------------------------------------------

    def _base_url(self) -> str:
        url = str(self.settings.get("base_url") or "").rstrip("/")
        parts = urlsplit(url)
        if parts.scheme == "https" and parts.hostname:
            return url
        if parts.scheme == "http" and _is_loopback(parts.hostname or ""):
            return url  # a local stand-in (tests, a proxy on this machine)
        raise ProviderError(
            "Sumsub is not configured: base_url must be an https:// address.", permanent=True
        )

    def _seconds(self, key: str) -> int:
        try:
            value = int(self.settings.get(key))
        except (TypeError, ValueError):
            raise ProviderError(
                f"Sumsub is not configured: {key} must be a number of seconds.", permanent=True
            ) from None
        if value <= 0:
            raise ProviderError(
                f"Sumsub is not configured: {key} must be positive.", permanent=True
            )
        return value

    def _level(self, requirement) -> str:
        level = (requirement.provider_level or "").strip()
        if not level:
            raise ProviderError(
                f"No Sumsub level is set for the requirement {requirement.name!r}.", permanent=True
            )
        return level

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        accept: tuple[int, ...] = (),
    ) -> tuple[int, dict]:
        """Send a signed request; the status and the JSON object answered.
        Statuses in ``accept`` are returned to the caller instead of raised."""
        app_token = self.secrets.get("app_token", "")
        secret_key = self.secrets.get("secret_key", "")
        if not app_token or not secret_key:
            raise ProviderError(
                "Sumsub is not configured: set the app token and its secret key.", permanent=True
            )
        url = self._base_url() + path
        if query:
            url += "?" + urlencode(query, quote_via=quote)
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        headers = {"Accept": "application/json", "X-App-Token": app_token}
        if data is not None:
            headers["Content-Type"] = "application/json"
        prepared = requests.Request(method, url, data=data, headers=headers).prepare()
        stamp = str(int(time.time()))
        raw_body = prepared.body or b""
        if isinstance(raw_body, str):
            raw_body = raw_body.encode()
        signed = stamp.encode() + method.upper().encode() + prepared.path_url.encode() + raw_body
        prepared.headers["X-App-Access-Ts"] = stamp
        prepared.headers["X-App-Access-Sig"] = hmac.new(
            secret_key.encode(), signed, hashlib.sha256
        ).hexdigest()
        timeout = (CONNECT_TIMEOUT, self._seconds("timeout"))
        try:
            with requests.Session() as session:
                response = session.send(prepared, timeout=timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise ProviderError("Sumsub cannot be reached at the moment.") from exc
        status = response.status_code
        if status >= 400 and status not in accept:
            raise ProviderError(
                f"Sumsub refused ({status}): {_error_message(response)}",
                permanent=400 <= status < 500 and status not in (409, 429),
            )
        if status >= 300 and status not in accept:
            raise ProviderError(f"Sumsub answered an unexpected HTTP {status}.")
        try:
            answer = response.json()
        except ValueError:
            raise ProviderError("Sumsub answered something that is not JSON.") from None
        if not isinstance(answer, dict):
            raise ProviderError("Sumsub answered something that is not a JSON object.")
        return status, answer

    def applicant_for(self, *, user, requirement) -> str:
        external_id = self.external_user_id(user)
        status, applicant = self._call(
            "POST",
            "/resources/applicants",
            query={"levelName": self._level(requirement)},
            body={"externalUserId": external_id},
            accept=(409,),
        )
        if status == 409:  # one applicant per external user id: find it again
            _, applicant = self._call(
                "GET", f"/resources/applicants/-;externalUserId={quote(external_id, safe='')}/one"
            )
            if applicant.get("externalUserId") not in (None, external_id):
                raise ProviderError("Sumsub returned another client's applicant.")
        applicant_id = applicant.get("id")
        if not isinstance(applicant_id, str) or not applicant_id or len(applicant_id) > 100:
            raise ProviderError("Sumsub returned no applicant id.")
        return applicant_id

    def start(self, *, user, requirement, applicant_id: str, return_url: str) -> ProviderStart:
        body: dict[str, Any] = {
            "levelName": self._level(requirement),
            "userId": self.external_user_id(user),
            "ttlInSecs": self._seconds("link_ttl"),
        }
        if return_url:
            body["redirect"] = {"successUrl": return_url, "rejectUrl": return_url}
        _, answer = self._call("POST", "/resources/sdkIntegrations/levels/-/websdkLink", body=body)
        link = answer.get("url")
        parts = urlsplit(link) if isinstance(link, str) else None
        if parts is None or parts.scheme != "https" or not parts.hostname:
            raise ProviderError("Sumsub returned no verification link.")
        return ProviderStart(applicant_id=applicant_id, redirect_url=link)

    def access_token(self, *, user, requirement, applicant_id: str) -> str:
        external_id = self.external_user_id(user)
        _, answer = self._call(
            "POST",
            "/resources/accessTokens/sdk",
            body={
                "userId": external_id,
                "levelName": self._level(requirement),
                "ttlInSecs": self._seconds("token_ttl"),
            },
        )
        token = answer.get("token")
        if not isinstance(token, str) or not token:
            raise ProviderError("Sumsub returned no access token.")
        if answer.get("userId") not in (None, external_id):
            raise ProviderError("Sumsub returned a token for another client.")
        return token

    # --- webhooks -----------------------------------------------------------------

    def verify_webhook(self, body: bytes, headers) -> None:
        secret = self.secrets.get("webhook_secret", "")
        if not secret:
            raise WebhookRejected("No Sumsub webhook secret is configured.")
        digest = _header(headers, DIGEST_HEADER).strip().lower()
        if not digest:
            raise WebhookRejected(f"No {DIGEST_HEADER} header.")
        pinned = str(self.settings.get("webhook_digest_alg") or "")
        algorithm = _header(headers, DIGEST_ALG_HEADER).strip() or pinned or DEFAULT_DIGEST_ALG
        if algorithm not in DIGEST_ALGORITHMS:
            raise WebhookRejected(f"Unsupported {DIGEST_ALG_HEADER}.")
        if pinned and algorithm != pinned:
            raise WebhookRejected(f"{DIGEST_ALG_HEADER} is not the configured algorithm.")
        expected = hmac.new(secret.encode(), body, DIGEST_ALGORITHMS[algorithm]).hexdigest()
        if not hmac.compare_digest(expected.encode(), digest.encode("utf-8", "replace")):
            raise WebhookRejected("The digest does not match.")

    def parse_webhook(self, body: bytes) -> ProviderOutcome | None:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise WebhookMalformed("The body is not JSON.") from None
        if not isinstance(data, dict):
            raise WebhookMalformed("The body is not a Sumsub event.")
        event_type = data.get("type")
        if not isinstance(event_type, str) or not event_type.strip():
            raise WebhookMalformed("The event has no type.")
        event_type = event_type.strip()[:50]
        applicant_id = _text(data.get("applicantId"), 100)
        level_name = _text(data.get("levelName"), 100)
        occurred_at = _event_time(data.get("createdAtMs"))
        outcome, status, note = _meaning(event_type, data)
        ignore_reason = ""
        if not outcome:
            ignore_reason = f"Event type {event_type} is not acted on."
        elif data.get("sandboxMode") is True and not self.settings.get("sandbox"):
            ignore_reason = "Sent from Sumsub's sandbox; this provider is not in sandbox mode."
        elif not applicant_id:
            raise WebhookMalformed("The event has no applicantId.")
        key, prefix = _event_key(event_type, applicant_id, level_name, occurred_at, data, body)
        return ProviderOutcome(
            event_key=key,
            event_type=event_type,
            applicant_id=applicant_id,
            external_user_id=_text(data.get("externalUserId"), 100),
            level_name=level_name,
            outcome=outcome,
            provider_status=status[:100],
            note=note,
            occurred_at=occurred_at,
            ignore_reason=ignore_reason,
            order_prefix=prefix,
            payload=data,
        )


# --- helpers -------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _header(headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), "")
    return value if isinstance(value, str) else ""


def _text(value: Any, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _event_time(value: Any) -> datetime | None:
    """``createdAtMs``: documented as "yyyy-MM-dd HH:mm:ss.fff" in UTC; epoch
    milliseconds and ISO 8601 are read too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            return EPOCH + timedelta(milliseconds=int(value))
        except (OverflowError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    for pattern in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _epoch_ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _event_key(
    event_type: str,
    applicant_id: str,
    level_name: str,
    occurred_at: datetime | None,
    data: dict,
    body: bytes,
) -> tuple[str, str]:
    """The event's key and, when it sorts by Sumsub's clock, its order prefix."""
    prefix = f"{applicant_id}|{level_name}|"
    if occurred_at is not None and 0 <= _epoch_ms(occurred_at) < 10**13:
        key = f"{prefix}{_epoch_ms(occurred_at):013d}|{event_type}"
        if len(key) <= MAX_KEY:
            return key, prefix
    # Undated: the correlation id, or the body itself, tells redeliveries apart.
    # "-" sorts before every digit, so an undated event never counts as newer.
    marker = _text(data.get("correlationId"), 100) or hashlib.sha256(body).hexdigest()
    key = f"{prefix}-|{event_type}|{marker}"
    if len(key) > MAX_KEY:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key, ""


def _labels(review: dict) -> str:
    labels = review.get("rejectLabels")
    if not isinstance(labels, list):
        return ""
    words = [str(label).replace("_", " ").lower() for label in labels if isinstance(label, str)]
    return ", ".join(words[:10])


def _meaning(event_type: str, data: dict) -> tuple[str, str, str]:
    """(outcome, provider status, note for the client) of an event."""
    if event_type in STATUS_OF_TYPE:
        outcome, status = STATUS_OF_TYPE[event_type]
        return outcome, status, RESET_NOTE if outcome == RESUBMIT else ""
    if event_type != "applicantReviewed":
        return "", _text(data.get("reviewStatus"), 50), ""
    review = data.get("reviewResult") if isinstance(data.get("reviewResult"), dict) else {}
    answer = review.get("reviewAnswer")
    if answer == "GREEN":
        return APPROVED, "completed: GREEN", ""
    if answer != "RED":
        return "", f"completed: {_text(answer, 20) or 'no answer'}", ""
    reject_type = review.get("reviewRejectType")
    comment = _text(review.get("moderationComment"), 1000)
    labels = _labels(review)
    note = " ".join(part for part in (comment, f"({labels})" if labels else "") if part)
    if reject_type == "FINAL":
        return REJECTED, "completed: RED (FINAL)", note
    return RESUBMIT, f"completed: RED ({_text(reject_type, 20) or 'RETRY'})", note


def _error_message(response: requests.Response) -> str:
    """Sumsub errors are ``{"description", "code", "correlationId",
    "errorCode", "errorName"}``."""
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(data, dict) and data.get("description"):
        return str(data["description"])[:200]
    return f"HTTP {response.status_code}"
