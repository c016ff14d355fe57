"""Rate providers: where exchange rates come from.

A provider is built around one configured :class:`~payments.models.RateSource`
(``self.source``, its ``settings`` and decrypted ``secrets``) and fills one
hook, :meth:`RateProviderBase.fetch`. It talks to the outside system and
translates; it never writes a row. ``payments.services.rates.rates_refresh``
calls it and stores what it returns.

- :class:`ManualRates`: nothing to fetch; Finance enters the rates in the admin.
- :class:`ECBRates`: the European Central Bank's daily euro reference rates,
  in the ECB's published ``eurofxref`` XML (base EUR).
- :class:`CryptoFeedRates`: a CoinGecko-style ``/simple/price`` JSON feed.

Every network or format failure is a :class:`ProviderError` (with
``permanent`` set when retrying cannot help), never another exception, so
that the refresh task records it and carries on.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple
from xml.parsers import expat
from zoneinfo import ZoneInfo

import requests
from django.utils import timezone

from backoffice.secrets import decrypt

from .base import ProviderError

__all__ = [
    "CryptoFeedRates",
    "ECBRates",
    "FetchedRate",
    "ManualRates",
    "ProviderError",
    "RateProviderBase",
]

# A rates document is a few kilobytes; anything much larger is not one.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
USER_AGENT = "forex-backoffice rate refresher"


class FetchedRate(NamedTuple):
    """One rate as a provider publishes it: 1 ``base`` = ``rate`` ``quote``
    (currency codes upper-case, ``rate`` a positive Decimal, never a float),
    published at ``as_of`` (an aware datetime)."""

    base: str
    quote: str
    rate: Decimal
    as_of: datetime


class RateProviderBase:
    """The contract of a rate provider.

    Subclasses set ``label`` and implement :meth:`fetch`. ``automatic`` says
    whether the beat task should call ``fetch`` at all (manual rates: no).
    ``secret_fields`` names the secrets the admin asks for (name → label);
    they are stored encrypted and read here from ``self.secrets``.
    """

    label = ""
    automatic = True
    secret_fields: dict[str, str] = {}
    default_timeout = 10.0

    def __init__(self, source) -> None:
        self.source = source
        self.settings: dict[str, Any] = dict(source.settings or {})
        self.secrets: dict[str, str] = decrypt(source.secrets)

    def fetch(self) -> list[FetchedRate]:
        """The source's current rates, as ``(base, quote, rate, as_of)`` tuples.

        Pairs of currencies we do not know or have switched off may be
        returned; the service keeps only active currencies. Raise
        :class:`ProviderError` when the source cannot be reached or answers
        something that is not its format: nothing is stored then, and the
        message is kept in ``RateSource.last_error`` for Finance.
        """
        raise NotImplementedError

    # --- helpers for HTTP providers -------------------------------------------------

    @property
    def timeout(self) -> float:
        try:
            return float(self.settings.get("timeout", self.default_timeout))
        except (TypeError, ValueError):
            return self.default_timeout

    def _url(self) -> str:
        url = str(self.settings.get("url") or "").strip()
        if not url.startswith(("http://", "https://")):
            raise ProviderError(
                "Set the source's URL (http or https) in its settings.", permanent=True
            )
        return url

    def _get(
        self, url: str, *, params: dict[str, str] | None = None, headers: dict | None = None
    ) -> bytes:
        """GET ``url`` and return the body, refusing errors and oversized answers."""
        all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
        try:
            with requests.get(
                url, params=params, headers=all_headers, timeout=self.timeout, stream=True
            ) as response:
                if response.status_code >= 400:
                    raise ProviderError(
                        f"{self.label} answered HTTP {response.status_code}.",
                        permanent=400 <= response.status_code < 500
                        and response.status_code not in (408, 429),
                    )
                body = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    body.extend(chunk)
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise ProviderError(
                            f"{self.label} sent more than {MAX_RESPONSE_BYTES} bytes; "
                            "that is not a rates document.",
                            permanent=True,
                        )
                return bytes(body)
        except requests.Timeout:
            raise ProviderError(
                f"{self.label} did not answer within {self.timeout:g} seconds."
            ) from None
        except requests.RequestException as exc:
            raise ProviderError(
                f"{self.label} could not be reached: {exc.__class__.__name__}."
            ) from None


class ManualRates(RateProviderBase):
    """Rates entered by Finance in the admin (``services.rate_set_manual``)."""

    label = "Manual rates"
    automatic = False

    def fetch(self) -> list[FetchedRate]:
        return []


# --- The ECB daily reference rates --------------------------------------------------

ECB_NAMESPACE = "http://www.ecb.int/vocabulary/2002-08-01/eurofxref"
# The ECB publishes its reference rates around 16:00 CET on working days.
ECB_PUBLISHED_AT = time(16, 0)
ECB_TIMEZONE = ZoneInfo("Europe/Berlin")


class ECBRates(RateProviderBase):
    """The ECB's euro foreign exchange reference rates.

    Settings: ``url`` (the daily file
    ``https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml``, or the 90-day
    history, of which the latest day is used), ``timeout`` (seconds).

    The document is a ``gesmes:Envelope`` whose ``Cube`` holds one
    ``Cube time="YYYY-MM-DD"`` per day, holding ``Cube currency="USD"
    rate="1.0823"`` per currency: 1 EUR = rate units of that currency.
    """

    label = "ECB reference rates"

    def fetch(self) -> list[FetchedRate]:
        return parse_ecb(self._get(self._url()))


class _NoDTD(Exception):
    pass


def _refuse_dtd(*args: Any) -> None:
    raise _NoDTD


def parse_ecb(body: bytes) -> list[FetchedRate]:
    """The latest day's rates of an ECB ``eurofxref`` document.

    Parsed with expat directly, refusing any document type declaration: no
    DTD means no entity can be declared, so neither entity expansion
    ("billion laughs") nor external entities can happen (what
    ``defusedxml``'s ``forbid_dtd`` does; that library is not a dependency).
    """
    days: dict[date, list[tuple[str, str]]] = {}
    current: list[date] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        namespace, _, local = name.rpartition(" ")
        if local != "Cube" or namespace != ECB_NAMESPACE:
            return
        if "time" in attrs:
            try:
                day = date.fromisoformat(attrs["time"])
            except ValueError:
                raise ProviderError(
                    f"The ECB document has a malformed date {attrs['time'][:20]!r}.",
                    permanent=True,
                ) from None
            current[:] = [day]
            days.setdefault(day, [])
        elif "currency" in attrs and "rate" in attrs:
            if not current:
                raise ProviderError("The ECB document has a rate outside a day.", permanent=True)
            days[current[0]].append((attrs["currency"], attrs["rate"]))

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    parser.EntityDeclHandler = _refuse_dtd
    parser.StartElementHandler = start
    try:
        parser.Parse(body, True)
    except _NoDTD:
        raise ProviderError(
            "The ECB document declares a DTD; refused (the ECB's own has none).", permanent=True
        ) from None
    except expat.ExpatError as exc:
        raise ProviderError(
            f"The ECB document is not well-formed XML: {exc}.", permanent=True
        ) from None
    if not days:
        raise ProviderError(
            "The document holds no ECB reference rates (no Cube with a time).", permanent=True
        )
    latest = max(days)
    as_of = datetime.combine(latest, ECB_PUBLISHED_AT, tzinfo=ECB_TIMEZONE)
    rates = []
    for code, text in days[latest]:
        rate = _positive_decimal(text, what=f"ECB rate of {code[:8]}")
        rates.append(FetchedRate("EUR", code.strip().upper(), rate, as_of))
    return rates


# --- A crypto price feed ------------------------------------------------------------

DEFAULT_COIN_IDS = {"bitcoin": "BTC", "ethereum": "ETH", "tether": "USDT"}
DEFAULT_VS_CURRENCIES = ["usd", "eur"]


class CryptoFeedRates(RateProviderBase):
    """A CoinGecko-style simple price feed.

    ``GET {url}?ids=bitcoin,ethereum,tether&vs_currencies=usd,eur
    &include_last_updated_at=true`` answers
    ``{"bitcoin": {"usd": 67187.33, "eur": 61873.1, "last_updated_at": 1711356300}, ...}``.

    Settings: ``url`` (ending in ``/simple/price``), ``ids`` (the feed's coin
    ids → our currency codes; default bitcoin/ethereum/tether → BTC/ETH/USDT),
    ``vs_currencies`` (default usd, eur), ``api_key_header`` (default
    ``x-cg-demo-api-key``), ``timeout``. Secret: ``api_key`` (optional).
    """

    label = "Crypto price feed"
    secret_fields = {"api_key": "API key"}

    def fetch(self) -> list[FetchedRate]:
        ids = self.settings.get("ids") or DEFAULT_COIN_IDS
        vs = self.settings.get("vs_currencies") or DEFAULT_VS_CURRENCIES
        if not isinstance(ids, dict) or not isinstance(vs, list):
            raise ProviderError(
                "Settings: 'ids' maps feed ids to currency codes, 'vs_currencies' is a list.",
                permanent=True,
            )
        headers = {}
        if self.secrets.get("api_key"):
            header = str(self.settings.get("api_key_header") or "x-cg-demo-api-key")
            headers[header] = self.secrets["api_key"]
        body = self._get(
            self._url(),
            params={
                "ids": ",".join(ids),
                "vs_currencies": ",".join(str(v).lower() for v in vs),
                "include_last_updated_at": "true",
            },
            headers=headers,
        )
        return parse_crypto_feed(body, ids=ids, vs_currencies=[str(v).lower() for v in vs])


def parse_crypto_feed(
    body: bytes, *, ids: dict[str, str], vs_currencies: list[str]
) -> list[FetchedRate]:
    """The rates of a simple-price answer (numbers read as Decimal, never float)."""
    try:
        data = json.loads(body, parse_float=Decimal, parse_int=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise ProviderError("The crypto feed did not answer JSON.", permanent=True) from None
    if not isinstance(data, dict):
        raise ProviderError("The crypto feed's answer is not an object of coins.", permanent=True)
    now = timezone.now()
    rates = []
    for coin_id, code in ids.items():
        prices = data.get(coin_id)
        if prices is None:
            continue  # the feed does not know this coin (any more)
        if not isinstance(prices, dict):
            raise ProviderError(f"The crypto feed's {coin_id!r} is not an object.", permanent=True)
        as_of = _epoch(prices.get("last_updated_at")) or now
        for vs in vs_currencies:
            if vs not in prices:
                continue
            rate = _positive_decimal(prices[vs], what=f"crypto feed price of {coin_id} in {vs}")
            rates.append(FetchedRate(str(code).upper(), vs.upper(), rate, as_of))
    return rates


def _epoch(value: Any) -> datetime | None:
    if not isinstance(value, Decimal) or not value.is_finite():
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _positive_decimal(value: Any, *, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | Decimal | int):
        raise ProviderError(f"The {what} is not a number.", permanent=True)
    try:
        number = Decimal(value.strip() if isinstance(value, str) else value)
    except InvalidOperation:
        raise ProviderError(
            f"The {what} is not a number: {str(value)[:30]!r}.", permanent=True
        ) from None
    if not number.is_finite() or number <= 0:
        raise ProviderError(
            f"The {what} is not a positive number: {str(value)[:30]!r}.", permanent=True
        )
    return number
