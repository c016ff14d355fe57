"""Conversions and internal transfers: the quote's arithmetic (exact, every
rounding against the client, in currencies of 0, 2 and 8 places), expiry,
executing once, the ledger lines, events, policies, transfers between own
wallets and to other clients, and the room pages (htmx and plain), with
another trader's ids and query counts."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta
from decimal import Decimal
from fractions import Fraction
from html import unescape
from unittest import mock

import pytest
from django.db import connection, connections
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from backoffice import policies
from backoffice.models import Event
from payments import services
from payments.exceptions import LedgerError
from payments.models import (
    Conversion,
    Currency,
    JournalTransaction,
    LedgerAccount,
    Markup,
    Transfer,
)
from payments.selectors import ledger_check
from payments.selectors.rates import RateTooOld, RateUnavailable
from payments.services import Line
from payments.services import conversions as conv
from payments.services.rates import rate_set_manual
from tests.conftest import require_or_skip
from tests.factories import StaffFactory, TraderFactory

# Elsewhere than on PostgreSQL a posting is a few statements more (no database
# function).
POSTING_EXTRA_QUERIES = 0 if connection.vendor == "postgresql" else 3

pytestmark = pytest.mark.django_db


def fund(wallet: LedgerAccount, minor: int) -> LedgerAccount:
    services.ledger_post(
        kind="test_funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
        lines=[
            Line(wallet, minor),
            Line(services.system_account("funding", wallet.currency_id), -minor),
        ],
    )
    wallet.refresh_from_db()
    return wallet


def balance(wallet: LedgerAccount) -> int:
    wallet.refresh_from_db()
    return wallet.balance


def later(seconds: float):
    moment = timezone.now() + timedelta(seconds=seconds)
    return mock.patch.object(timezone, "now", return_value=moment)


@pytest.fixture(autouse=True)
def rates(db):
    for base, quote, rate in [
        ("EUR", "USD", "1.0823"),
        ("USD", "JPY", "151.37"),
        ("BTC", "USD", "63817.22"),
    ]:
        rate_set_manual(actor=None, base=base, quote=quote, rate=Decimal(rate))


@pytest.fixture
def fee():
    """A 0.25 % fee on every pair, beside the default 0.5 % markup."""
    Markup.objects.filter(base=None, quote=None).update(fee_percent=Decimal("0.25"))


@pytest.fixture
def wallets(trader) -> dict[str, LedgerAccount]:
    opened = {
        code: services.wallet_open(user=trader, currency=code)
        for code in ("USD", "EUR", "JPY", "BTC")
    }
    fund(opened["USD"], 500_000)  # 5,000.00 USD
    fund(opened["EUR"], 100_000)  # 1,000.00 EUR
    fund(opened["JPY"], 1_000_000)  # 1,000,000 JPY
    fund(opened["BTC"], 50_000_000)  # 0.5 BTC
    return opened


def quote(trader, wallets, source: str, target: str, amount: str) -> Conversion:
    return conv.conversion_quote(
        user=trader,
        from_wallet=wallets[source],
        to_wallet=wallets[target],
        sell_amount=Decimal(amount),
    )


# --- The quote's arithmetic ---------------------------------------------------------


def test_quote_applies_the_markup_against_the_client(trader, wallets):
    before = timezone.now()
    q = quote(trader, wallets, "EUR", "USD", "100")
    assert (q.sell_amount, q.fee, q.buy_amount) == (10_000, 0, 10_768)  # 107.68885 → 107.68
    assert q.mid_rate == Decimal("1.082300000000")
    assert q.rate == Decimal("1.076888500000")  # 1.0823 × 0.995
    assert q.markup_percent == Decimal("0.500")
    assert q.rate_source.identifier == "manual"
    assert q.status == Conversion.QUOTED and q.journal is None
    assert q.public_id.version == 4
    assert timedelta(seconds=30) <= q.expires_at - before < timedelta(seconds=31)
    assert balance(wallets["EUR"]) == 100_000  # a quote moves nothing


def test_quote_fee_is_a_share_of_the_amount_sold(trader, wallets, fee):
    q = quote(trader, wallets, "EUR", "USD", "100")
    assert (q.sell_amount, q.fee, q.buy_amount) == (10_000, 25, 10_741)  # 99.75 × 1.0768885


def test_quote_into_and_out_of_yen_whole_units(trader, wallets, fee):
    q = quote(trader, wallets, "USD", "JPY", "100")
    assert (q.sell_amount, q.fee, q.buy_amount) == (10_000, 25, 15_023)  # 15,023.66 → 15,023
    assert q.rate == Decimal("150.613150000000")
    q = quote(trader, wallets, "JPY", "USD", "12345")
    # Fee 30.8625 yen → 31 (half up); 12,314 × 0.006573297218 = 80.94 → 80.94 USD.
    assert (q.sell_amount, q.fee, q.buy_amount) == (12_345, 31, 8_094)
    assert q.mid_rate == Decimal("0.006606328863")  # the inverse of 151.37
    assert q.rate == Decimal("0.006573297218")


def test_quote_into_and_out_of_bitcoin_satoshi(trader, wallets, fee):
    q = quote(trader, wallets, "USD", "BTC", "1000")
    # 997.50 × 0.000015591403 = 0.0155524244925 → 0.01555242 BTC (down).
    assert (q.sell_amount, q.fee, q.buy_amount) == (100_000, 250, 1_555_242)
    assert q.mid_rate == Decimal("0.000015669752")
    assert q.rate == Decimal("0.000015591403")
    q = quote(trader, wallets, "BTC", "USD", "0.01234567")
    # Fee 3,086.4 sat → 3,086; 0.01231481 × 63,498.1339 = 781.967... → 781.96 USD.
    assert (q.sell_amount, q.fee, q.buy_amount) == (1_234_567, 3_086, 78_196)
    assert q.rate == Decimal("63498.133900000000")


def test_a_cross_rate_quote(trader, wallets):
    q = quote(trader, wallets, "EUR", "JPY", "10")  # EUR→USD→JPY
    mid = Decimal("1.0823") * Decimal("151.37")  # 163.827751
    assert q.mid_rate == mid.quantize(Decimal("1e-12"))
    assert q.buy_amount == int(Decimal(10) * mid * Decimal("0.995"))  # 1,630 yen


@pytest.mark.parametrize(
    "source, target, amount, message",
    [
        ("EUR", "EUR", "10", "Choose two different wallets."),
        ("EUR", "USD", "0", "Enter an amount greater than zero."),
        ("EUR", "USD", "-5", "Enter an amount greater than zero."),
        ("EUR", "USD", "10.001", "EUR amounts have at most 2 decimal places."),
        ("JPY", "USD", "10.5", "JPY amounts have at most 0 decimal places."),
        (
            "EUR",
            "USD",
            "1000.01",
            "Insufficient funds: your EUR wallet holds €1,000.00, less than €1,000.01.",
        ),
        (
            "BTC",
            "JPY",
            "0.00000001",
            "The amount is too small: you would receive less than the smallest JPY unit.",
        ),
    ],
)
def test_bad_quotes_are_refused_in_words(trader, wallets, source, target, amount, message):
    with pytest.raises(conv.ConversionError) as info:
        quote(trader, wallets, source, target, amount)
    assert str(info.value).startswith(message)
    assert not Conversion.objects.exists()


def test_a_quote_on_another_traders_wallet_is_refused(trader, wallets):
    other = services.wallet_open(user=TraderFactory(), currency="USD")
    fund(other, 10_000)
    for source, target in ((wallets["EUR"], other), (other, wallets["EUR"])):
        with pytest.raises(conv.ConversionError, match="Choose one of your own wallets."):
            conv.conversion_quote(
                user=trader, from_wallet=source, to_wallet=target, sell_amount=Decimal(1)
            )
    assert not Conversion.objects.exists()


def test_a_stale_or_missing_rate_is_refused(trader, wallets):
    services.wallet_open(user=trader, currency="CHF")
    wallets["CHF"] = LedgerAccount.objects.get(owner=trader, currency="CHF")
    with pytest.raises(RateUnavailable, match="No exchange rate between EUR and CHF"):
        quote(trader, wallets, "EUR", "CHF", "10")
    with later(8 * 24 * 3600), pytest.raises(RateTooOld, match="out of date"):  # manual: 7 days
        quote(trader, wallets, "EUR", "USD", "10")
    assert not Conversion.objects.exists()


@pytest.fixture
def refusing_policy():
    def policy(user, **context):
        return policies.Decision(False, reason="Verify your identity to convert or transfer.")

    policies.register(policies.CONVERT, "test-refusal", policy)
    policies.register(policies.TRANSFER, "test-refusal", policy)
    yield
    policies.unregister(policies.CONVERT, "test-refusal")
    policies.unregister(policies.TRANSFER, "test-refusal")


def test_a_policy_refusal_is_given_with_its_reason(trader, wallets, refusing_policy):
    with pytest.raises(conv.NotAllowed, match="Verify your identity to convert or transfer."):
        quote(trader, wallets, "EUR", "USD", "10")
    assert not Conversion.objects.exists()


def test_the_policy_is_asked_with_the_amount_and_currencies(trader, wallets):
    seen = []
    policies.register(policies.CONVERT, "test-spy", lambda user, **ctx: seen.append((user, ctx)))
    try:
        quote(trader, wallets, "EUR", "USD", "10")
    finally:
        policies.unregister(policies.CONVERT, "test-spy")
    assert seen == [(trader, {"amount": Decimal("10.00"), "currency": "EUR", "to_currency": "USD"})]


# --- Executing ----------------------------------------------------------------------


def test_execute_posts_the_conversion_once(trader, wallets, fee):
    q = quote(trader, wallets, "EUR", "USD", "100")
    done = conv.conversion_execute(user=trader, public_id=q.public_id)
    assert done.status == Conversion.EXECUTED and not done.replayed
    assert done.executed_at is not None
    journal = done.journal
    assert (journal.kind, journal.idempotency_key) == ("conversion", f"conversion:{q.public_id}")
    assert journal.description == "Converted €100.00 to $107.41 at 1.0768885"
    lines = sorted(
        (e.account.code or "wallet", e.currency_id, e.amount)
        for e in journal.entries.select_related("account")
    )
    assert lines == [
        ("conversion", "EUR", 9_975),
        ("conversion", "USD", -10_741),
        ("fees", "EUR", 25),
        ("wallet", "EUR", -10_000),
        ("wallet", "USD", 10_741),
    ]
    assert balance(wallets["EUR"]) == 90_000
    assert balance(wallets["USD"]) == 510_741

    again = conv.conversion_execute(user=trader, public_id=str(q.public_id))
    assert again.replayed and again.journal_id == journal.pk
    assert JournalTransaction.objects.filter(kind="conversion").count() == 1
    assert balance(wallets["USD"]) == 510_741
    event = Event.objects.get(name="conversion.executed")
    assert (event.client, event.actor, event.subject_id) == (trader, trader, str(q.pk))
    assert event.payload == {
        "conversion": str(q.public_id),
        "from_currency": "EUR",
        "to_currency": "USD",
        "sell_amount": "100.00",
        "fee": "0.25",
        "buy_amount": "107.41",
        "rate": "1.076888500000",
        "mid_rate": "1.082300000000",
        "markup_percent": "0.500",
    }
    assert ledger_check().ok


def test_a_quote_holds_30_seconds(trader, wallets):
    q = quote(trader, wallets, "EUR", "USD", "100")
    with later(31), pytest.raises(conv.QuoteExpired) as info:
        conv.conversion_execute(user=trader, public_id=q.public_id)
    assert str(info.value) == "The quote expired; ask for a new one."
    q.refresh_from_db()
    assert q.status == Conversion.QUOTED
    assert balance(wallets["EUR"]) == 100_000
    fresh = quote(trader, wallets, "EUR", "USD", "100")
    with later(29):
        assert conv.conversion_execute(user=trader, public_id=fresh.public_id).status == "executed"


def test_another_traders_quote_is_not_found(trader, wallets):
    q = quote(trader, wallets, "EUR", "USD", "100")
    for user, public_id in (
        (TraderFactory(), q.public_id),
        (trader, uuid.uuid4()),
        (trader, "nope"),
    ):
        with pytest.raises(conv.QuoteNotFound):
            conv.conversion_execute(user=user, public_id=public_id)
    q.refresh_from_db()
    assert q.status == Conversion.QUOTED
    assert not JournalTransaction.objects.filter(kind="conversion").exists()


def test_money_spent_after_the_quote_is_refused_at_execution(trader, wallets):
    q = quote(trader, wallets, "EUR", "USD", "1000")
    services.ledger_post(
        kind="test_spend",
        idempotency_key="spend",
        lines=[Line(wallets["EUR"], -1), Line(services.system_account("funding", "EUR"), 1)],
    )
    with pytest.raises(conv.ConversionError) as info:
        conv.conversion_execute(user=trader, public_id=q.public_id)
    assert str(info.value) == (
        "Insufficient funds: your EUR wallet holds €999.99, less than €1,000.00. "
        "Nothing was converted or sent."
    )
    q.refresh_from_db()
    assert q.status == Conversion.QUOTED
    assert not Event.objects.filter(name="conversion.executed").exists()
    assert ledger_check().ok


def test_execute_asks_the_policy_again(trader, wallets):
    q = quote(trader, wallets, "EUR", "USD", "10")

    def refuse(user, **context):
        return policies.Decision(False, reason="Conversions are paused for your account.")

    policies.register(policies.CONVERT, "test-late", refuse)
    try:
        with pytest.raises(conv.NotAllowed, match="paused"):
            conv.conversion_execute(user=trader, public_id=q.public_id)
    finally:
        policies.unregister(policies.CONVERT, "test-late")
    assert balance(wallets["EUR"]) == 100_000


def test_execute_query_count(trader, wallets, fee, django_assert_max_num_queries):
    q = quote(trader, wallets, "EUR", "USD", "100")
    services.system_account("fees", "EUR")
    services.system_account("conversion", "EUR")
    services.system_account("conversion", "USD")
    # Lock the quote, the three system accounts, the posting, the status,
    # the event: no query per line or per wallet beyond those. (Elsewhere than
    # on PostgreSQL the posting is four statements more: no database function.)
    with django_assert_max_num_queries(11 + POSTING_EXTRA_QUERIES):
        conv.conversion_execute(user=trader, public_id=q.public_id)


# --- Transfers ----------------------------------------------------------------------


def transfer(trader, wallets, source, target, amount, *, key="k1", **kwargs):
    return conv.transfer_execute(
        user=trader,
        from_wallet=wallets[source],
        to_wallet=wallets[target] if target else None,
        amount=Decimal(amount),
        idempotency_key=key,
        **kwargs,
    )


def test_a_transfer_to_the_same_wallet_is_refused(trader, wallets):
    # One wallet per currency: "own wallet, same currency" is the same wallet.
    with pytest.raises(conv.ConversionError, match="Choose two different wallets."):
        transfer(trader, wallets, "USD", "USD", "10")
    assert not Transfer.objects.exists()


def test_a_transfer_across_currencies_goes_through_the_quote_shown(trader, wallets, fee):
    q = quote(trader, wallets, "EUR", "USD", "100")
    done = transfer(trader, wallets, "EUR", "USD", "100", quote_id=q.public_id, reference="Margin")
    assert (done.amount, done.credited, done.conversion_id) == (10_000, 10_741, q.pk)
    assert done.journal.kind == "transfer"
    assert done.journal.idempotency_key == f"transfer:{trader.pk}:k1"
    assert done.journal.entries.count() == 5
    assert done.journal.description == "Transferred €100.00 to $107.41 at 1.0768885: Margin"
    q.refresh_from_db()
    assert q.status == Conversion.EXECUTED and q.journal_id == done.journal_id
    assert (balance(wallets["EUR"]), balance(wallets["USD"])) == (90_000, 510_741)
    event = Event.objects.get(name="transfer.executed")
    assert event.payload["conversion"] == str(q.public_id)
    assert event.payload["amount"] == "100.00" and event.payload["credited"] == "107.41"
    assert not Event.objects.filter(name="conversion.executed").exists()

    again = transfer(trader, wallets, "EUR", "USD", "100", quote_id=q.public_id)
    assert again.replayed and again.pk == done.pk
    assert (
        Transfer.objects.count() == 1
        and Event.objects.filter(name="transfer.executed").count() == 1
    )
    assert ledger_check().ok


def test_a_transfer_across_currencies_needs_its_own_fresh_quote(trader, wallets):
    with pytest.raises(conv.ConversionError, match="get a quote first"):
        transfer(trader, wallets, "EUR", "USD", "100")
    q = quote(trader, wallets, "EUR", "USD", "100")
    with pytest.raises(conv.ConversionError, match="This quote is for another transfer"):
        transfer(trader, wallets, "EUR", "USD", "99", quote_id=q.public_id)
    with pytest.raises(conv.ConversionError, match="This quote is for another transfer"):
        transfer(trader, wallets, "EUR", "JPY", "100", quote_id=q.public_id)
    with pytest.raises(conv.QuoteNotFound):
        transfer(trader, wallets, "EUR", "USD", "100", quote_id=uuid.uuid4())
    with later(31), pytest.raises(conv.QuoteExpired):
        transfer(trader, wallets, "EUR", "USD", "100", quote_id=q.public_id)
    conv.conversion_execute(user=trader, public_id=q.public_id)
    with pytest.raises(conv.ConversionError, match="already used for a conversion"):
        transfer(trader, wallets, "EUR", "USD", "100", quote_id=q.public_id, key="k2")
    assert not Transfer.objects.exists()


def test_transfers_to_other_clients_are_off_by_default(trader, wallets):
    bob = TraderFactory(email="bob@example.com")
    with pytest.raises(conv.ConversionError) as info:
        transfer(trader, wallets, "USD", None, "10", to_user_email="bob@example.com")
    assert str(info.value) == "Transfers to other clients are not available."
    assert not LedgerAccount.objects.filter(owner=bob).exists()
    assert balance(wallets["USD"]) == 500_000


def test_transfers_to_other_clients_when_the_broker_allows_them(trader, wallets, settings):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    bob = TraderFactory(email="bob@example.com")
    done = transfer(
        trader, wallets, "USD", None, "25.50", to_user_email=" Bob@Example.com ", reference="Rent"
    )
    bob_usd = LedgerAccount.objects.get(owner=bob, currency="USD")  # opened for him
    assert (done.to_wallet, done.amount, done.credited, done.conversion) == (
        bob_usd,
        2_550,
        2_550,
        None,
    )
    assert (balance(wallets["USD"]), bob_usd.balance) == (497_450, 2_550)
    assert done.journal.description == "Transfer of $25.50 between clients: Rent"
    event = Event.objects.get(name="transfer.executed")
    assert event.client == trader and event.payload["to_other_client"] is True

    again = transfer(
        trader, wallets, "USD", None, "25.50", to_user_email="bob@example.com", reference="Rent"
    )
    assert again.replayed and again.pk == done.pk
    assert balance(bob_usd) == 2_550
    assert ledger_check().ok


def test_who_is_a_client_is_not_revealed(trader, wallets, settings):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    StaffFactory(email="finance@example.com")
    TraderFactory(email="gone@example.com", is_active=False)
    for address in ("nobody@example.com", "finance@example.com", "gone@example.com"):
        with pytest.raises(conv.ConversionError) as info:
            transfer(trader, wallets, "USD", None, "10", to_user_email=address, key=address)
        assert str(info.value) == conv.RECIPIENT_REFUSED
    with pytest.raises(conv.ConversionError, match="your own e-mail address"):
        transfer(trader, wallets, "USD", None, "10", to_user_email=trader.email.upper())
    assert not Transfer.objects.exists()
    assert LedgerAccount.objects.filter(kind="wallet").exclude(owner=trader).count() == 0


def test_a_transfer_beyond_the_balance_and_a_policy_refusal(
    trader, wallets, settings, refusing_policy
):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    TraderFactory(email="bob@example.com")
    with pytest.raises(conv.NotAllowed, match="Verify your identity"):
        transfer(trader, wallets, "USD", None, "10", to_user_email="bob@example.com")
    policies.unregister(policies.TRANSFER, "test-refusal")
    with pytest.raises(conv.ConversionError, match="Insufficient funds: your USD wallet holds"):
        transfer(trader, wallets, "USD", None, "5000.01", to_user_email="bob@example.com")
    assert not Transfer.objects.exists()


def test_a_reused_transfer_key_for_another_request_is_refused(trader, wallets, settings):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    TraderFactory(email="bob@example.com")
    first = transfer(trader, wallets, "USD", None, "1", to_user_email="bob@example.com")
    # The same key with other details is refused (as the ledger refuses a key
    # reused for another posting); with the same details it finds the first.
    for changed in [
        {"amount": "2", "to_user_email": "bob@example.com"},
        {"amount": "1", "to_user_email": "carol@example.com"},
        {"amount": "1", "target": "EUR"},
    ]:
        with pytest.raises(conv.TransferKeyReused, match="already used for another transfer"):
            transfer(trader, wallets, "USD", changed.pop("target", None), **changed)
    again = transfer(trader, wallets, "USD", None, "1", to_user_email="Bob@Example.com")
    assert again.replayed and again.pk == first.pk and again.amount == 100
    assert Transfer.objects.count() == 1 and ledger_check().ok


# --- The room pages -----------------------------------------------------------------

CONVERT = "/room/wallets/convert/"
TRANSFER = "/room/wallets/transfer/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def signed_in(client, trader):
    client.force_login(trader)
    return client


def text(response) -> str:
    return unescape(re.sub(r"\s+", " ", response.content.decode()))


def quote_id(page: str) -> str:
    return re.search(r'name="quote" value="([0-9a-f-]{36})"', page).group(1)


def test_the_pages_need_sign_in(client):
    for url in (CONVERT, TRANSFER):
        assert client.get(url)["Location"].startswith("/accounts/login/")
    for url in (
        CONVERT + "quote/",
        CONVERT + "confirm/",
        TRANSFER + "review/",
        TRANSFER + "confirm/",
    ):
        response = client.post(url, {})
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert client.get(CONVERT + "quote/").status_code in (302, 405)


def test_convert_page_offers_own_wallets(signed_in, wallets, django_assert_num_queries):
    with django_assert_num_queries(4):
        response = signed_in.get(CONVERT)
    page = text(response)
    assert response.status_code == 200
    assert (
        '<label for="id_from_wallet">From' in page
        and '<label for="id_amount">Amount to convert' in page
    )
    assert f'<option value="{wallets["EUR"].pk}">EUR · €1,000.00</option>' in page
    assert 'hx-post="/room/wallets/convert/quote/"' in page
    assert re.search(r'href="/room/wallets/convert/"[^>]*aria-current="page"', page)
    assert "No conversions yet." in page


def test_convert_page_with_one_wallet_leads_to_opening_another(signed_in, trader):
    services.wallet_open(user=trader, currency="USD")
    page = text(signed_in.get(CONVERT))
    assert "You need two wallets" in page and 'href="/room/wallets/"' in page
    assert 'id="convert-form"' not in page


def test_htmx_quote_swaps_the_panel(signed_in, wallets, django_assert_num_queries):
    data = {"from_wallet": wallets["EUR"].pk, "to_wallet": wallets["USD"].pk, "amount": "100"}
    # Session, user, wallets; rate, markup, insert (in a savepoint); brand.
    with django_assert_num_queries(8):
        response = signed_in.post(CONVERT + "quote/", data, **HTMX)
    page = text(response)
    assert response.status_code == 200
    assert page.lstrip().startswith('<section class="card" id="convert-panel"')
    assert "<html" not in page
    assert 'You receive</dt><dd id="quote-receive">$107.68</dd>' in page
    assert "1 EUR = 1.0768885 USD" in page
    assert '0.5 % <span class="muted">(market rate 1.0823)</span>' in page
    assert (
        'data-quote-expires="30"' in page
        and "Valid for <strong data-countdown>30</strong> seconds" in page
    )
    assert quote_id(page) == str(Conversion.objects.get().public_id)
    assert "HX-Request" in response["Vary"]


def test_quote_without_javascript_returns_the_whole_page(signed_in, wallets):
    data = {"from_wallet": wallets["USD"].pk, "to_wallet": wallets["JPY"].pk, "amount": "100"}
    page = text(signed_in.post(CONVERT + "quote/", data))
    assert "<html" in page and "¥15,061" in page  # 100 × 150.61315, no fee


def test_quote_refusals_are_shown_in_the_panel(signed_in, wallets):
    data = {"from_wallet": wallets["EUR"].pk, "to_wallet": wallets["USD"].pk, "amount": "5000"}
    response = signed_in.post(CONVERT + "quote/", data, **HTMX)
    assert response.status_code == 200  # htmx swaps only successes; the error is inside
    assert "Insufficient funds: your EUR wallet holds €1,000.00, less than €5,000.00." in text(
        response
    )
    response = signed_in.post(CONVERT + "quote/", data)
    assert response.status_code == 400
    assert not Conversion.objects.exists()


def test_another_traders_wallet_id_is_refused_by_the_form(signed_in, wallets):
    other = fund(services.wallet_open(user=TraderFactory(), currency="GBP"), 10_000)
    for data in (
        {"from_wallet": other.pk, "to_wallet": wallets["USD"].pk, "amount": "10"},
        {"from_wallet": wallets["USD"].pk, "to_wallet": other.pk, "amount": "10"},
    ):
        response = signed_in.post(CONVERT + "quote/", data)
        assert response.status_code == 400
        assert "Choose one of your wallets." in text(response)
        response = signed_in.post(TRANSFER + "review/", {**data, "idempotency_key": uuid.uuid4()})
        assert response.status_code == 400 and "Choose one of your wallets." in text(response)
    assert not Conversion.objects.exists() and balance(other) == 10_000


def test_confirming_executes_and_leads_to_the_wallet(
    signed_in, wallets, django_assert_max_num_queries
):
    data = {"from_wallet": wallets["EUR"].pk, "to_wallet": wallets["USD"].pk, "amount": "100"}
    public_id = quote_id(text(signed_in.post(CONVERT + "quote/", data, **HTMX)))
    # The ledger's own queries (system accounts, the posting) vary with its
    # implementation: a ceiling here, the exact count for the service below.
    with django_assert_max_num_queries(17 + POSTING_EXTRA_QUERIES):
        response = signed_in.post(CONVERT + "confirm/", {"quote": public_id})
    assert (
        response.status_code == 302
        and response["Location"] == f"/room/wallets/{wallets['USD'].pk}/"
    )
    page = text(signed_in.get(response["Location"]))
    assert "Converted €100.00 to $107.68." in page
    assert balance(wallets["USD"]) == 510_768
    # A second click does not convert again.
    response = signed_in.post(CONVERT + "confirm/", {"quote": public_id}, follow=True)
    assert "This conversion was already done: €100.00 to $107.68." in text(response)
    assert JournalTransaction.objects.filter(kind="conversion").count() == 1
    recent = text(signed_in.get(CONVERT))
    assert "Recent conversions" in recent and "$107.68" in recent


def test_an_expired_quote_leads_to_a_new_one(signed_in, wallets):
    data = {"from_wallet": wallets["EUR"].pk, "to_wallet": wallets["USD"].pk, "amount": "12.50"}
    public_id = quote_id(text(signed_in.post(CONVERT + "quote/", data)))
    with later(31):
        response = signed_in.post(CONVERT + "confirm/", {"quote": public_id})
    assert response.status_code == 302
    assert response["Location"] == (
        f"/room/wallets/convert/?from={wallets['EUR'].pk}&to={wallets['USD'].pk}&amount=12.50"
    )
    page = text(signed_in.get(response["Location"]))
    assert "The quote expired; ask for a new one." in page
    assert 'value="12.50"' in page
    assert f'<option value="{wallets["EUR"].pk}" selected>' in page
    assert balance(wallets["EUR"]) == 100_000


def test_another_traders_quote_id_is_a_404(signed_in, wallets, client):
    mallory = TraderFactory()
    other = {
        c: fund(services.wallet_open(user=mallory, currency=c), 100_000) for c in ("EUR", "USD")
    }
    theirs = quote(mallory, other, "EUR", "USD", "10")
    assert signed_in.post(CONVERT + "confirm/", {"quote": str(theirs.public_id)}).status_code == 404
    assert signed_in.post(CONVERT + "confirm/", {"quote": "not-a-uuid"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Conversion.QUOTED
    # Nor may it be used for a transfer from the trader's own wallets.
    response = signed_in.post(
        TRANSFER + "confirm/",
        {
            "from_wallet": wallets["EUR"].pk,
            "to_wallet": wallets["USD"].pk,
            "amount": "10",
            "idempotency_key": uuid.uuid4(),
            "quote": str(theirs.public_id),
        },
    )
    assert response.status_code == 404


def test_transfer_page_and_a_transfer_across_currencies(
    signed_in, wallets, django_assert_num_queries
):
    with django_assert_num_queries(4):
        page = text(signed_in.get(TRANSFER))
    key = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page).group(1)
    assert 'name="to_email"' not in page  # transfers to other clients are off
    data = {
        "from_wallet": wallets["EUR"].pk,
        "to_wallet": wallets["USD"].pk,
        "amount": "100",
        "reference": "Top up",
        "idempotency_key": key,
    }
    review = text(signed_in.post(TRANSFER + "review/", data, **HTMX))
    assert review.lstrip().startswith('<section class="card" id="transfer-panel"')
    assert "$107.68" in review and "Top up" in review
    assert f'type="hidden" name="idempotency_key" value="{key}"' in review
    response = signed_in.post(TRANSFER + "confirm/", {**data, "quote": quote_id(review)})
    assert (
        response.status_code == 302
        and response["Location"] == f"/room/wallets/{wallets['EUR'].pk}/"
    )
    assert "Transferred €100.00 to your USD wallet." in text(signed_in.get(response["Location"]))
    assert Transfer.objects.get().credited == 10_768
    # The same form again: nothing more moves.
    response = signed_in.post(
        TRANSFER + "confirm/", {**data, "quote": quote_id(review)}, follow=True
    )
    assert "This transfer was already made (€100.00)." in text(response)
    assert Transfer.objects.count() == 1
    assert "Your USD wallet" in text(signed_in.get(TRANSFER))


def test_transfer_to_another_client_from_the_page(signed_in, wallets, settings):
    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    bob = TraderFactory(email="bob@example.com")
    page = text(signed_in.get(TRANSFER))
    assert '<label for="id_to_email">Client\'s e-mail address' in page
    key = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page).group(1)
    data = {
        "from_wallet": wallets["USD"].pk,
        "destination": "client",
        "to_email": "bob@example.com",
        "amount": "40",
        "idempotency_key": key,
    }
    review = text(signed_in.post(TRANSFER + "review/", data))
    assert "Send $40.00" in review and "bob@example.com" in review
    assert not LedgerAccount.objects.filter(owner=bob).exists()  # nothing looked up yet
    response = signed_in.post(TRANSFER + "confirm/", data, follow=True)
    assert "Sent $40.00 to bob@example.com." in text(response)
    assert LedgerAccount.objects.get(owner=bob, currency="USD").balance == 4_000
    # An unknown address: the same words as for any refusal.
    response = signed_in.post(
        TRANSFER + "confirm/",
        {**data, "to_email": "nobody@example.com", "idempotency_key": uuid.uuid4()},
    )
    assert response.status_code == 400 and conv.RECIPIENT_REFUSED in text(response)


def test_transfer_to_another_client_is_refused_when_off(signed_in, wallets):
    TraderFactory(email="bob@example.com")
    data = {
        "from_wallet": wallets["USD"].pk,
        "destination": "client",
        "to_email": "bob@example.com",
        "amount": "40",
        "idempotency_key": uuid.uuid4(),
    }
    # The fields are not there: the form asks for one of the trader's wallets.
    response = signed_in.post(TRANSFER + "confirm/", data)
    assert response.status_code == 400 and "Choose a wallet." in text(response)
    assert balance(wallets["USD"]) == 500_000


def test_an_expired_transfer_quote_is_explained(signed_in, wallets):
    data = {
        "from_wallet": wallets["EUR"].pk,
        "to_wallet": wallets["USD"].pk,
        "amount": "10",
        "idempotency_key": uuid.uuid4(),
    }
    review = text(signed_in.post(TRANSFER + "review/", data))
    with later(31):
        response = signed_in.post(TRANSFER + "confirm/", {**data, "quote": quote_id(review)})
    assert response.status_code == 409
    assert "The quote expired; ask for a new one. Press “Review” to get a new quote." in text(
        response
    )
    assert not Transfer.objects.exists()


def test_service_errors_are_ledger_errors():
    # Views catch LedgerError: every refusal of these services is one.
    for cls in (
        conv.ConversionError,
        conv.QuoteExpired,
        conv.NotAllowed,
        RateTooOld,
        RateUnavailable,
    ):
        assert issubclass(cls, LedgerError)


# --- Properties of the arithmetic ---------------------------------------------------


@given(
    sell=st.integers(min_value=1, max_value=10**15),
    from_exponent=st.sampled_from([0, 2, 6, 8, 9]),
    to_exponent=st.sampled_from([0, 2, 6, 8, 9]),
    mid=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("1000000"), places=9),
    markup=st.decimals(min_value=0, max_value=Decimal("49.999"), places=3),
    fee_percent=st.decimals(min_value=0, max_value=Decimal("49.999"), places=3),
)
@hypothesis_settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_quote_math_never_favours_the_client(
    sell, from_exponent, to_exponent, mid, markup, fee_percent
):
    source = Currency(code="AAA", exponent=from_exponent)
    target = Currency(code="BBB", exponent=to_exponent)
    try:
        math = conv.quote_math(
            sell=sell,
            from_currency=source,
            to_currency=target,
            mid_rate=mid,
            markup=Markup(markup_percent=markup, fee_percent=fee_percent),
        )
    except conv.ConversionError:
        return  # too small (or too large) to convert: refused, nothing to check
    exact_fee = Fraction(sell) * Fraction(fee_percent) / 100
    assert abs(math.fee - exact_fee) <= Fraction(1, 2) and 0 <= math.fee < sell
    client_rate = Fraction(mid) * (1 - Fraction(markup) / 100)
    assert Fraction(math.rate) <= client_rate < Fraction(math.rate) + Fraction(1, 10**12)
    received = Fraction(sell - math.fee, 10**from_exponent) * Fraction(math.rate)
    assert math.buy <= received * 10**to_exponent < math.buy + 1
    given_away = Fraction(sell - math.fee, 10**from_exponent)
    assert Fraction(math.buy, 10**to_exponent) <= given_away * client_rate


# --- Under real concurrency ---------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_racing_confirmations_execute_once():
    require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")
    trader = TraderFactory()
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0823"))
    eur = fund(services.wallet_open(user=trader, currency="EUR"), 100_000)
    usd = services.wallet_open(user=trader, currency="USD")
    q = conv.conversion_quote(user=trader, from_wallet=eur, to_wallet=usd, sell_amount=Decimal(100))
    start = threading.Barrier(6)
    results: list[bool] = []

    def confirm() -> None:
        try:
            start.wait()
            results.append(conv.conversion_execute(user=trader, public_id=q.public_id).replayed)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=confirm) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] + [True] * 5
    assert JournalTransaction.objects.filter(kind="conversion").count() == 1
    assert Event.objects.filter(name="conversion.executed").count() == 1
    assert (balance(eur), balance(usd)) == (90_000, 10_768)
    assert ledger_check().ok


# --- The admin ----------------------------------------------------------------------


def test_finance_reads_conversions_and_transfers_in_bounded_queries(
    trader, wallets, settings, django_assert_max_num_queries
):
    from accounts.roles import FINANCE
    from tests.accounts.test_admin import signed_in_with_code

    settings.TRANSFERS_TO_OTHER_CLIENTS = True
    TraderFactory(email="bob@example.com")
    for i in range(3):
        q = quote(trader, wallets, "EUR", "USD", "10")
        conv.conversion_execute(user=trader, public_id=q.public_id)
        transfer(trader, wallets, "USD", None, "1", to_user_email="bob@example.com", key=f"t{i}")
    q = quote(trader, wallets, "EUR", "JPY", "5")
    done = transfer(trader, wallets, "EUR", "JPY", "5", quote_id=q.public_id, key="x")
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    for url in ("/admin/payments/conversion/", "/admin/payments/transfer/"):
        with django_assert_max_num_queries(14):
            page = http.get(url).content.decode()
        assert trader.email in page
    listing = http.get("/admin/payments/transfer/").content.decode()
    assert "bob@example.com" in listing and "own JPY wallet" in listing
    detail = http.get(f"/admin/payments/transfer/{done.pk}/change/").content.decode()
    assert f"quote #{q.pk}" in detail and f"#{done.journal_id}" in detail
    detail = http.get(f"/admin/payments/conversion/{q.pk}/change/").content.decode()
    assert "€5.00" in detail or "5.00 EUR" in detail
    filtered = http.get("/admin/payments/conversion/?status__exact=quoted").content.decode()
    assert "0 conversions" in filtered or "0 results" in filtered
    # Nobody adds, changes or deletes them here.
    assert http.get("/admin/payments/conversion/add/").status_code == 403
    assert http.post(f"/admin/payments/transfer/{done.pk}/delete/").status_code == 403
