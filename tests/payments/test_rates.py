"""Exchange rates: the ECB and crypto feed providers against their real wire
formats (sample files served by a local HTTP server standing in at the
network boundary), failures recorded, manual rates, the rate selector
(direct, inverse, cross, priority, maximum age), markups, the beat task and
the admin."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from accounts.roles import FINANCE, SUPPORT
from backoffice.secrets import decrypt, encrypt
from payments import tasks
from payments.exceptions import LedgerError
from payments.models import Currency, Markup, Rate, RateSource
from payments.providers.base import ProviderError
from payments.providers.rates import CryptoFeedRates, ECBRates, FetchedRate, ManualRates
from payments.selectors.rates import RateTooOld, RateUnavailable, markup_for, rate_for
from payments.services import rates as services
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
ECB_XML = (DATA / "ecb_eurofxref_daily.xml").read_bytes()
CRYPTO_JSON = (DATA / "coingecko_simple_price.json").read_bytes()
# 2024-03-22 16:00 in Frankfurt (CET, UTC+1): when the ECB published the sample.
ECB_AS_OF = datetime(2024, 3, 22, 15, 0, tzinfo=UTC)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01"
 xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
<Cube><Cube time="2024-03-22"><Cube currency="USD" rate="1.0823"/><x>&lol2;</x></Cube></Cube>
</gesmes:Envelope>"""


# --- A stand-in for the outside feeds -----------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        parts = urlsplit(self.path)
        self.server.requests.append(
            {"path": parts.path, "query": parse_qs(parts.query), "headers": dict(self.headers)}
        )
        route = self.server.routes.get(parts.path)
        if route is None:
            self.send_response(404)
            self.end_headers()
            return
        status, content_type, body, delay = route
        if delay:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Feed:
    """A local HTTP server answering like the ECB and CoinGecko."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.requests = []
        self.server.routes = {}
        self.serve("/stats/eurofxref/eurofxref-daily.xml", ECB_XML, "text/xml")
        self.serve("/api/v3/simple/price", CRYPTO_JSON, "application/json")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.server.server_address
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[dict]:
        return self.server.requests

    def serve(self, path: str, body: bytes, content_type: str, *, status=200, delay=0.0) -> None:
        self.server.routes[path] = (status, content_type, body, delay)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed():
    server = Feed()
    yield server
    server.close()


@pytest.fixture
def ecb(feed) -> RateSource:
    source = RateSource.objects.get(identifier="ecb")
    source.enabled = True
    source.settings = {"url": f"{feed.base}/stats/eurofxref/eurofxref-daily.xml", "timeout": 2}
    source.save()
    return source


@pytest.fixture
def crypto(feed) -> RateSource:
    source = RateSource.objects.get(identifier="crypto")
    source.enabled = True
    source.settings = {"url": f"{feed.base}/api/v3/simple/price", "timeout": 2}
    source.save()
    return source


def stored(source: RateSource) -> dict[tuple[str, str], Decimal]:
    return {(r.base_id, r.quote_id): r.rate for r in Rate.objects.filter(source=source)}


def at(moment: datetime):
    return mock.patch.object(timezone, "now", return_value=moment)


# --- Providers ----------------------------------------------------------------------


def test_ecb_sample_parses_to_euro_rates_as_published(ecb, feed):
    rates = ECBRates(ecb).fetch()
    assert len(rates) == 30
    assert rates[0] == FetchedRate("EUR", "USD", Decimal("1.0823"), ECB_AS_OF)
    by_code = {r.quote: r.rate for r in rates}
    assert by_code["JPY"] == Decimal("163.74")
    assert by_code["GBP"] == Decimal("0.85753")
    assert by_code["IDR"] == Decimal("17112.27")
    assert all(r.base == "EUR" and r.as_of == ECB_AS_OF for r in rates)
    assert feed.requests[0]["path"] == "/stats/eurofxref/eurofxref-daily.xml"


def test_the_latest_day_of_an_ecb_history_file_is_used(ecb, feed):
    history = ECB_XML.replace(
        b"\t<Cube>\n",
        b"\t<Cube>\n\t\t<Cube time='2024-03-25'><Cube currency='USD' rate='1.0840'/></Cube>\n",
        1,
    )
    feed.serve("/stats/eurofxref/eurofxref-daily.xml", history, "text/xml")
    rates = ECBRates(ecb).fetch()
    assert rates == [
        FetchedRate("EUR", "USD", Decimal("1.0840"), datetime(2024, 3, 25, 15, 0, tzinfo=UTC))
    ]


def test_crypto_feed_sample_maps_coin_ids_to_currencies(crypto, feed):
    crypto.secrets = encrypt({"api_key": "cg-demo-key"})
    rates = {(r.base, r.quote): r for r in CryptoFeedRates(crypto).fetch()}
    assert set(rates) == {
        ("BTC", "USD"),
        ("BTC", "EUR"),
        ("ETH", "USD"),
        ("ETH", "EUR"),
        ("USDT", "USD"),
        ("USDT", "EUR"),
    }
    assert rates[("BTC", "USD")].rate == Decimal("63817.22")
    assert rates[("USDT", "EUR")].rate == Decimal("0.924756")
    assert rates[("ETH", "USD")].as_of == datetime.fromtimestamp(1711119603, tz=UTC)
    request = feed.requests[0]
    assert request["path"] == "/api/v3/simple/price"
    assert request["query"]["ids"] == ["bitcoin,ethereum,tether"]
    assert request["query"]["vs_currencies"] == ["usd,eur"]
    assert request["headers"]["x-cg-demo-api-key"] == "cg-demo-key"


def test_manual_rates_fetch_nothing():
    assert ManualRates(RateSource.objects.get(identifier="manual")).fetch() == []


# --- Refreshing ---------------------------------------------------------------------


def test_refresh_stores_rates_between_active_currencies_only(ecb):
    Currency.objects.filter(code="GBP").update(is_active=False)
    result = services.rates_refresh(source=ecb)
    assert result.ok and result.stored == 3 and result.skipped == 27
    assert stored(ecb) == {
        ("EUR", "USD"): Decimal("1.0823"),
        ("EUR", "JPY"): Decimal("163.74"),
        ("EUR", "CHF"): Decimal("0.9727"),
    }
    ecb.refresh_from_db()
    assert ecb.last_refreshed_at is not None and ecb.last_error == ""
    assert Rate.objects.get(source=ecb, quote="USD").as_of == ECB_AS_OF


def test_a_second_refresh_updates_the_rows_in_place(ecb, feed):
    services.rates_refresh(source=ecb)
    ids = set(Rate.objects.filter(source=ecb).values_list("id", flat=True))
    feed.serve(
        "/stats/eurofxref/eurofxref-daily.xml",
        ECB_XML.replace(b"1.0823", b"1.0901").replace(b"2024-03-22", b"2024-03-25"),
        "text/xml",
    )
    services.rates_refresh(source=ecb)
    assert set(Rate.objects.filter(source=ecb).values_list("id", flat=True)) == ids
    row = Rate.objects.get(source=ecb, quote="USD")
    assert row.rate == Decimal("1.0901")
    assert row.as_of == datetime(2024, 3, 25, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "body, status, delay, message",
    [
        (b"Service unavailable", 503, 0, "ECB reference rates answered HTTP 503."),
        (b"<html><body>Moved</body>", 200, 0, "not well-formed XML"),
        (b"<Cube/>", 200, 0, "holds no ECB reference rates"),
        (BILLION_LAUGHS, 200, 0, "declares a DTD; refused"),
        (ECB_XML.replace(b"1.0823", b"-1"), 200, 0, "not a positive number"),
        (ECB_XML.replace(b"1.0823", b"abc"), 200, 0, "not a number"),
        (ECB_XML, 200, 1.5, "did not answer within 0.5 seconds"),
    ],
)
def test_a_failing_feed_is_recorded_and_keeps_the_rates_it_had(
    ecb, feed, body, status, delay, message
):
    services.rates_refresh(source=ecb)
    before = stored(ecb)
    ecb.refresh_from_db()
    refreshed_at = ecb.last_refreshed_at
    ecb.settings = {**ecb.settings, "timeout": 0.5}
    feed.serve("/stats/eurofxref/eurofxref-daily.xml", body, "text/xml", status=status, delay=delay)

    result = services.rates_refresh(source=ecb)

    assert not result.ok and message in result.error
    ecb.refresh_from_db()
    assert message in ecb.last_error
    assert ecb.last_refreshed_at == refreshed_at
    assert stored(ecb) == before


def test_an_unreachable_feed_is_a_provider_error(ecb):
    ecb.settings = {"url": "http://127.0.0.1:9/eurofxref-daily.xml", "timeout": 2}
    with pytest.raises(ProviderError, match="could not be reached"):
        ECBRates(ecb).fetch()
    result = services.rates_refresh(source=ecb)
    ecb.refresh_from_db()
    assert (
        ecb.last_error
        == result.error
        == "ECB reference rates could not be reached: ConnectionError."
    )


def test_crypto_feed_answering_garbage_is_recorded(crypto, feed):
    feed.serve("/api/v3/simple/price", b"<html>rate limited</html>", "text/html")
    result = services.rates_refresh(source=crypto)
    assert result.error == "The crypto feed did not answer JSON."
    feed.serve("/api/v3/simple/price", b'{"bitcoin": {"usd": "NaN"}}', "application/json")
    assert "not a positive number" in services.rates_refresh(source=crypto).error
    assert not Rate.objects.filter(source=crypto).exists()


def test_the_beat_task_refreshes_enabled_sources_and_survives_failures(ecb, crypto, feed):
    feed.serve("/api/v3/simple/price", b"down", "text/plain", status=500)
    outcome = tasks.rates_refresh.delay().get()
    assert outcome == {"ecb": "4 rates stored", "crypto": "Crypto price feed answered HTTP 500."}
    crypto.refresh_from_db()
    assert crypto.last_error == "Crypto price feed answered HTTP 500."
    # The manual source is never fetched; a disabled one neither.
    assert "manual" not in outcome
    RateSource.objects.filter(pk=ecb.pk).update(enabled=False)
    assert set(tasks.rates_refresh()) == {"crypto"}


def test_an_unexpected_provider_bug_does_not_stop_the_others(ecb, crypto):
    with mock.patch.object(CryptoFeedRates, "fetch", side_effect=ZeroDivisionError):
        results = services.rates_refresh_all()
    assert [(r.source.identifier, r.ok) for r in results] == [("ecb", True), ("crypto", False)]
    crypto.refresh_from_db()
    assert crypto.last_error == "Unexpected error: ZeroDivisionError."


# --- Manual rates -------------------------------------------------------------------


def test_finance_sets_a_manual_rate():
    finance = StaffFactory(roles=[FINANCE])
    now = datetime(2024, 3, 22, 12, 0, tzinfo=UTC)
    with at(now):
        row = services.rate_set_manual(
            actor=finance, base="usd", quote="JPY", rate=Decimal("151.37")
        )
    assert (row.source.identifier, row.base_id, row.quote_id) == ("manual", "USD", "JPY")
    assert row.rate == Decimal("151.37") and row.as_of == now
    again = services.rate_set_manual(actor=finance, base="USD", quote="JPY", rate=Decimal("151.4"))
    assert again.pk == row.pk and Rate.objects.get(pk=row.pk).rate == Decimal("151.4")


@pytest.mark.parametrize(
    "base, quote, rate, message",
    [
        ("USD", "USD", Decimal("1"), "A rate needs two different currencies."),
        ("USD", "EUR", Decimal("0"), "The rate must be a positive number."),
        ("USD", "EUR", Decimal("-1.2"), "The rate must be a positive number."),
        ("USD", "EUR", Decimal("NaN"), "The rate must be a positive number."),
        ("USD", "EUR", Decimal("1.0000000000001"), "A rate has at most 12 decimal places."),
        ("USD", "EUR", Decimal("1e30"), "The rate is too large."),
        ("USD", "EUR", 1.1, "Give the rate as a decimal number."),
        ("USD", "XYZ", Decimal("1"), "Unknown currency 'XYZ'."),
    ],
)
def test_bad_manual_rates_are_refused(base, quote, rate, message):
    with pytest.raises(LedgerError) as info:
        services.rate_set_manual(actor=None, base=base, quote=quote, rate=rate)
    assert str(info.value) == message
    assert not Rate.objects.exists()


# --- The rate selector --------------------------------------------------------------


def manual(base: str, quote: str, rate: str, *, when: datetime | None = None) -> Rate:
    with at(when or timezone.now()):
        return services.rate_set_manual(actor=None, base=base, quote=quote, rate=Decimal(rate))


def test_direct_inverse_and_cross_rates(ecb):
    services.rates_refresh(source=ecb)
    now = ECB_AS_OF + timedelta(hours=1)

    direct = rate_for("EUR", "USD", at=now)
    assert (direct.rate, direct.route, direct.source, direct.as_of) == (
        Decimal("1.0823"),
        "direct",
        ecb,
        ECB_AS_OF,
    )
    inverse = rate_for("USD", "EUR", at=now)
    assert inverse.route == "inverse"
    assert inverse.rate == Decimal(1) / Decimal("1.0823")
    cross = rate_for("USD", "JPY", at=now)
    assert cross.route == "cross via EUR"
    assert cross.rate == Decimal(1) / Decimal("1.0823") * Decimal("163.74")
    assert cross.sources == (ecb, ecb)
    assert rate_for("JPY", "JPY", at=now).rate == Decimal(1)


def test_cross_rates_through_usd_when_eur_has_no_leg(crypto):
    services.rates_refresh(source=crypto)
    manual("USD", "JPY", "151.37")
    cross = rate_for("BTC", "JPY", at=datetime.fromtimestamp(1711119700, tz=UTC))
    # BTC→EUR exists but EUR→JPY does not: through USD.
    assert cross.route == "cross via USD"
    assert cross.rate == Decimal("63817.22") * Decimal("151.37")
    assert cross.as_of == datetime.fromtimestamp(1711119600, tz=UTC)


def test_the_highest_priority_fresh_source_wins(ecb):
    services.rates_refresh(source=ecb)
    now = ECB_AS_OF + timedelta(hours=1)
    manual("EUR", "USD", "1.1", when=now)  # manual: priority 10, ECB 20
    assert rate_for("EUR", "USD", at=now).rate == Decimal("1.1")
    # A disabled source is not asked.
    RateSource.objects.filter(identifier="manual").update(enabled=False)
    assert rate_for("EUR", "USD", at=now).rate == Decimal("1.0823")
    # A stale rate is passed over for a fresh one of a later source.
    RateSource.objects.filter(identifier="manual").update(enabled=True, max_age_seconds=60)
    assert rate_for("EUR", "USD", at=now + timedelta(minutes=5)).source == ecb


def test_a_rate_older_than_its_source_allows_is_refused(ecb):
    services.rates_refresh(source=ecb)  # ECB: max age 4 days
    assert rate_for("EUR", "USD", at=ECB_AS_OF + timedelta(days=4)).rate == Decimal("1.0823")
    with pytest.raises(RateTooOld) as info:
        rate_for("EUR", "USD", at=ECB_AS_OF + timedelta(days=4, seconds=1))
    assert str(info.value) == (
        "The exchange rate between EUR and USD is out of date (last updated 4\xa0days ago), "
        "so we cannot quote it now. Please try again later."
    )
    with pytest.raises(RateTooOld):  # a cross rate with a stale leg too
        rate_for("USD", "JPY", at=ECB_AS_OF + timedelta(days=5))


def test_no_rate_at_all_is_refused_in_words():
    with pytest.raises(RateUnavailable) as info:
        rate_for("BTC", "CHF")
    assert str(info.value) == (
        "No exchange rate between BTC and CHF is available at the moment. Please try again later."
    )
    assert not isinstance(info.value, RateTooOld)


def test_rate_for_costs_one_query(ecb, django_assert_num_queries):
    services.rates_refresh(source=ecb)
    with django_assert_num_queries(1):
        rate_for("USD", "CHF", at=ECB_AS_OF)


def test_the_most_specific_markup_wins(django_assert_num_queries):
    assert markup_for("EUR", "BTC").markup_percent == Decimal("0.5")  # the default row
    Markup.objects.create(quote_id="BTC", markup_percent=Decimal("1.5"))
    assert markup_for("EUR", "BTC").markup_percent == Decimal("1.5")
    Markup.objects.create(base_id="EUR", markup_percent=Decimal("0.8"))
    assert markup_for("EUR", "BTC").markup_percent == Decimal("0.8")
    Markup.objects.create(base_id="EUR", quote_id="BTC", markup_percent=Decimal("0.2"))
    with django_assert_num_queries(1):
        assert markup_for("EUR", "BTC").markup_percent == Decimal("0.2")
    assert markup_for("USD", "JPY").markup_percent == Decimal("0.5")
    Markup.objects.all().delete()
    none = markup_for("USD", "JPY")
    assert (none.pk, none.markup_percent, none.fee_percent) == (None, 0, 0)


# --- The admin ----------------------------------------------------------------------


def test_secrets_are_write_only_in_the_admin(crypto):
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    url = f"/admin/payments/ratesource/{crypto.pk}/change/"
    page = http.get(url).content.decode()
    assert 'name="secret_api_key"' in page and "Not set" in page
    data = {
        "name": crypto.name,
        "enabled": "on",
        "priority": "30",
        "max_age_seconds": "900",
        "settings": json.dumps({"url": crypto.settings["url"], "timeout": 2}),
        "secret_api_key": "cg-secret-123",
    }
    assert http.post(url, data).status_code == 302
    crypto.refresh_from_db()
    assert decrypt(crypto.secrets) == {"api_key": "cg-secret-123"}
    assert "cg-secret-123" not in crypto.secrets
    page = http.get(url).content.decode()
    assert "cg-secret-123" not in page and "Set. Leave blank to keep" in page
    # Saving with the field blank keeps the secret; "remove" clears it.
    http.post(url, {**data, "secret_api_key": ""})
    crypto.refresh_from_db()
    assert decrypt(crypto.secrets) == {"api_key": "cg-secret-123"}
    http.post(url, {**data, "secret_api_key": "", "clear_secrets": "on"})
    crypto.refresh_from_db()
    assert crypto.secrets == ""


def test_refresh_now_in_the_admin(ecb, feed):
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    response = http.post(
        "/admin/payments/ratesource/",
        {"action": "refresh_now", "_selected_action": [ecb.pk]},
        follow=True,
    )
    assert (
        "ECB daily reference rates: 4 rates stored, 26 skipped (currencies we do not offer)."
        in response.content.decode()
    )
    feed.serve("/stats/eurofxref/eurofxref-daily.xml", b"x", "text/xml", status=500)
    response = http.post(
        "/admin/payments/ratesource/",
        {"action": "refresh_now", "_selected_action": [ecb.pk]},
        follow=True,
    )
    assert "ECB daily reference rates: ECB reference rates answered HTTP 500." in (
        response.content.decode()
    )


def test_finance_adds_and_changes_manual_rates_in_the_admin(ecb):
    services.rates_refresh(source=ecb)
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    response = http.post(
        "/admin/payments/rate/add/", {"base": "USD", "quote": "CHF", "rate": "0.9012"}
    )
    assert response.status_code == 302
    row = Rate.objects.get(source__identifier="manual", base="USD", quote="CHF")
    assert row.rate == Decimal("0.9012")
    response = http.post(f"/admin/payments/rate/{row.pk}/change/", {"rate": "0.9"})
    assert response.status_code == 302
    assert Rate.objects.get(pk=row.pk).rate == Decimal("0.9")
    # Refused: the same currency twice, a rate that is not positive.
    page = http.post(
        "/admin/payments/rate/add/", {"base": "USD", "quote": "USD", "rate": "1"}
    ).content.decode()
    assert "A rate needs two different currencies." in page
    page = http.post(
        "/admin/payments/rate/add/", {"base": "USD", "quote": "EUR", "rate": "-1"}
    ).content.decode()
    assert "The rate must be a positive number." in page
    # A fetched rate cannot be changed by hand; the list shows ages.
    fetched = Rate.objects.get(source=ecb, quote="USD")
    response = http.post(f"/admin/payments/rate/{fetched.pk}/change/", {"rate": "2"})
    assert response.status_code == 403
    listing = http.get("/admin/payments/rate/").content.decode()
    assert "1 EUR = 1.0823 USD" in listing and "(too old)" in listing


def test_support_reads_conversions_and_transfers_but_not_rates_config():
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    assert http.get("/admin/payments/conversion/").status_code == 200
    assert http.get("/admin/payments/transfer/").status_code == 200
    assert http.get("/admin/payments/ratesource/").status_code == 403
    assert http.get("/admin/payments/rate/").status_code == 403


def test_markups_are_configured_in_the_admin():
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    response = http.post(
        "/admin/payments/markup/add/",
        {"base": "BTC", "quote": "", "markup_percent": "1.25", "fee_percent": "0.1"},
    )
    assert response.status_code == 302
    assert markup_for("BTC", "USD").markup_percent == Decimal("1.25")
    # A second row for "any → any" is refused by the unique constraint.
    page = http.post(
        "/admin/payments/markup/add/",
        {"base": "", "quote": "", "markup_percent": "1", "fee_percent": "0"},
    ).content.decode()
    assert re.search(r"already exists", page)
