"""The trader's wallet pages: list and open, history with filters and keyset
paging, CSV export; another trader's wallet; bad input; query counts."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from unittest import mock

import pytest
from django.utils import timezone

from payments import services
from payments.models import Currency, JournalTransaction, LedgerAccount
from payments.selectors import ledger_check
from payments.services import Line
from payments.templatetags.payments import format_amount
from payments.views import wallets as views
from tests.factories import TraderFactory

pytestmark = pytest.mark.django_db

PAGE = views.HISTORY_PAGE_SIZE


def adjust(wallet, amount: str, reason: str, *, at: datetime | None = None):
    key = f"test:{wallet.pk}:{reason}:{amount}:{at}"
    if at is None:
        return services.wallet_adjust(
            actor=None, wallet=wallet, amount=Decimal(amount), reason=reason, idempotency_key=key
        )
    with mock.patch.object(timezone, "now", return_value=at):
        return services.wallet_adjust(
            actor=None, wallet=wallet, amount=Decimal(amount), reason=reason, idempotency_key=key
        )


def transfer(source, target, minor: int, description: str):
    return services.ledger_post(
        kind="transfer",
        idempotency_key=f"test-transfer:{description}",
        lines=[Line(source, -minor), Line(target, minor)],
        description=description,
    )


def rows(page: str) -> list[list[str]]:
    """The history table's rows, as the text of their cells."""
    body = page.split("<tbody", 1)[1].split("</tbody>", 1)[0] if "<tbody" in page else ""
    return [
        [
            unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
        ]
        for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


def older_link(page: str) -> str | None:
    match = re.search(r'<a href="([^"]+)"[^>]*id="history-older"', page)
    return unescape(match.group(1)) if match else None


@pytest.fixture
def signed_in(client, trader):
    client.force_login(trader)
    return client


@pytest.fixture
def usd(trader):
    return services.wallet_open(user=trader, currency="USD")


# --- Sign-in and navigation ----------------------------------------------------------


def test_wallet_pages_need_sign_in(client, trader):
    wallet = services.wallet_open(user=trader, currency="USD")
    for url in (
        "/room/wallets/",
        f"/room/wallets/{wallet.pk}/",
        f"/room/wallets/{wallet.pk}/export.csv",
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    response = client.post("/room/wallets/open/", {"currency": "EUR"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not LedgerAccount.objects.filter(currency="EUR").exists()


def test_the_room_navigation_shows_wallets(signed_in):
    page = signed_in.get("/room/").content.decode()
    assert re.search(r'<a href="/room/wallets/"[^>]*>Wallets</a>', page)
    wallets_page = signed_in.get("/room/wallets/").content.decode()
    assert re.search(r'href="/room/wallets/"[^>]*aria-current="page"', wallets_page)


# --- The list and opening a wallet ---------------------------------------------------------


def test_wallet_list_empty_state_and_open_form(signed_in):
    page = signed_in.get("/room/wallets/").content.decode()
    assert "No wallets yet" in page
    # Every active currency is offered; inactive ones are not.
    for code in ("USD", "EUR", "BTC", "JPY"):
        assert f'<option value="{code}">' in page


def test_wallet_list_shows_balances_in_each_currency_precision(signed_in, trader):
    usd = services.wallet_open(user=trader, currency="USD")
    btc = services.wallet_open(user=trader, currency="BTC")
    jpy = services.wallet_open(user=trader, currency="JPY")
    adjust(usd, "1234.5", "Bonus")
    adjust(btc, "0.00000001", "Dust")
    adjust(jpy, "150000", "Bonus")
    page = signed_in.get("/room/wallets/").content.decode()
    assert "$1,234.50" in page
    assert "0.00000001\u00a0BTC" in page
    assert "¥150,000" in page
    assert "No wallets yet" not in page
    # The open form offers only the currencies without a wallet.
    assert '<option value="USD">' not in page
    assert '<option value="EUR">' in page
    assert f'href="/room/wallets/{usd.pk}/"' in page


def test_opening_a_wallet_and_opening_it_again(signed_in, trader):
    response = signed_in.post("/room/wallets/open/", {"currency": "eur"}, follow=True)
    assert response.redirect_chain == [("/room/wallets/", 302)]
    assert "Your EUR wallet is open." in response.content.decode()
    assert LedgerAccount.objects.filter(owner=trader, currency="EUR").count() == 1
    # A second submission (double click, back button) finds it open.
    response = signed_in.post("/room/wallets/open/", {"currency": "EUR"}, follow=True)
    assert "You already have a EUR wallet." in response.content.decode()
    assert LedgerAccount.objects.filter(owner=trader, currency="EUR").count() == 1


@pytest.mark.parametrize(
    "code, message",
    [
        ("XYZ", "XYZ is not a currency you can open a wallet in."),
        ("GBP", "GBP is not a currency you can open a wallet in."),  # inactive
        ("", "Choose a currency."),
        ("<script>", "&lt;SCRIPT&gt; is not a currency you can open a wallet in."),
        ("USD' OR 1=1 --", "at most 8 characters"),
    ],
)
def test_opening_refuses_unknown_or_inactive_currencies(signed_in, trader, code, message):
    Currency.objects.filter(code="GBP").update(is_active=False)
    response = signed_in.post("/room/wallets/open/", {"currency": code})
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert '<option value="GBP">' not in page
    assert not LedgerAccount.objects.filter(owner=trader).exists()


def test_open_form_cannot_touch_another_traders_wallet(signed_in, trader):
    other = TraderFactory()
    theirs = services.wallet_open(user=other, currency="USD")
    for data in (
        {"currency": str(theirs.pk)},
        {"currency": "EUR", "wallet": theirs.pk, "owner": other.pk, "user": other.pk},
    ):
        signed_in.post("/room/wallets/open/", data)
    assert list(LedgerAccount.objects.filter(owner=other).values_list("currency", flat=True)) == [
        "USD"
    ]
    # The extra fields were ignored: the wallet opened is the trader's own.
    assert list(LedgerAccount.objects.filter(owner=trader).values_list("currency", flat=True)) == [
        "EUR"
    ]


def test_open_is_post_only(signed_in):
    assert signed_in.get("/room/wallets/open/").status_code == 405


# --- History -----------------------------------------------------------------------------


def test_history_empty_state(signed_in, usd):
    page = signed_in.get(f"/room/wallets/{usd.pk}/").content.decode()
    assert "No transactions yet" in page
    assert "Download CSV" not in page
    assert older_link(page) is None


def test_history_shows_type_description_signed_amount_and_balance_after(signed_in, trader, usd):
    other = services.wallet_open(user=TraderFactory(), currency="USD")
    adjust(usd, "100.00", "Welcome bonus", at=datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    transfer(usd, other, 2_550, "Rent share")
    page = signed_in.get(f"/room/wallets/{usd.pk}/").content.decode()
    newest, oldest = rows(page)
    assert newest[1:] == ["Transfer", "Rent share", "\u2212$25.50", "$74.50", "Completed"]
    assert oldest == [
        "1 Mar 2026, 09:30",
        "Adjustment",
        "Welcome bonus",
        "+$100.00",
        "$100.00",
        "Completed",
    ]
    assert 'class="num amount debit"' in page and 'class="num amount credit"' in page
    assert "$74.50" in page  # the balance in the header


def test_history_filters_by_type_and_period(signed_in, usd):
    other = services.wallet_open(user=TraderFactory(), currency="USD")
    adjust(usd, "500", "March bonus", at=datetime(2026, 3, 10, 12, tzinfo=UTC))
    adjust(usd, "-5", "April fee", at=datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
    adjust(usd, "7", "April refund", at=datetime(2026, 4, 30, 23, 59, tzinfo=UTC))
    adjust(usd, "9", "May bonus", at=datetime(2026, 5, 1, 0, 0, tzinfo=UTC))
    with mock.patch.object(timezone, "now", return_value=datetime(2026, 4, 15, tzinfo=UTC)):
        transfer(usd, other, 1_000, "April transfer")
    url = f"/room/wallets/{usd.pk}/"

    def descriptions(query):
        response = signed_in.get(url, query)
        assert response.status_code == 200
        return [row[2] for row in rows(response.content.decode())]

    assert descriptions({"type": "transfer"}) == ["April transfer"]
    # Whole days, both ends included.
    # With a period, newest first by time (the transfer was posted last but is
    # dated 15 April); without one, by posting order.
    assert descriptions({"date_from": "2026-04-01", "date_to": "2026-04-30"}) == [
        "April refund",
        "April transfer",
        "April fee",
    ]
    assert descriptions(
        {"type": "adjustment", "date_from": "2026-04-01", "date_to": "2026-04-30"}
    ) == [
        "April refund",
        "April fee",
    ]
    assert descriptions({"date_from": "2026-05-01"}) == ["May bonus"]
    assert descriptions({"date_to": "2026-03-31"}) == ["March bonus"]
    page = signed_in.get(url, {"type": "reversal"}).content.decode()
    assert "No transactions match these filters." in page
    # The export link keeps the filters.
    page = signed_in.get(url, {"type": "transfer", "date_from": "2026-04-01"}).content.decode()
    assert f'href="{url}export.csv?type=transfer&amp;date_from=2026-04-01"' in page


@pytest.mark.parametrize("query", [{}, {"type": "adjustment"}, {"date_from": "2026-01-02"}])
def test_keyset_paging_reaches_the_end_with_no_duplicates_or_gaps(signed_in, usd, query):
    other = services.wallet_open(user=TraderFactory(), currency="USD")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    posted = []  # (description, kind, time), oldest first
    for i in range(2 * PAGE + 7):
        at = start + timedelta(hours=6 * i)
        adjust(usd, "10", f"Credit {i:03d}", at=at)
        posted.append((f"Credit {i:03d}", "adjustment", at))
        if i % 5 == 0:
            with mock.patch.object(timezone, "now", return_value=at):
                transfer(usd, other, 1, f"Transfer {i:03d}")
            posted.append((f"Transfer {i:03d}", "transfer", at))
    expected = (
        [
            text
            for text, kind, at in reversed(posted)
            if kind == query.get("type", kind) and at >= datetime(2026, 1, 2, tzinfo=UTC)
        ]
        if "date_from" in query
        else [text for text, kind, _ in reversed(posted) if kind == query.get("type", kind)]
    )
    assert len(expected) > 2 * PAGE

    seen: list[str] = []
    url: str | None = f"/room/wallets/{usd.pk}/"
    pages = 0
    while url:
        response = signed_in.get(url, query if pages == 0 else None)
        assert response.status_code == 200
        page = response.content.decode()
        got = [row[2] for row in rows(page)]
        assert 0 < len(got) <= PAGE
        seen += got
        url = older_link(page)
        pages += 1
        if url:
            assert "before=" in url
            for name, value in query.items():
                assert f"{name}={value}" in url  # the filters stay
    assert pages == 3
    assert seen == expected  # newest first; no duplicates, no gaps
    assert "No older transactions" not in page and "Newest" in page


@pytest.mark.parametrize(
    "query, message",
    [
        ({"date_from": "2026-13-01"}, "Enter a date as YYYY-MM-DD."),
        ({"date_to": "yesterday"}, "Enter a date as YYYY-MM-DD."),
        ({"date_from": "2026-05-02", "date_to": "2026-05-01"}, "The end date is before the start"),
        ({"type": "bogus"}, "Choose a type from the list."),
        ({"before": "abc"}, "This page link is not valid."),
        ({"before": "-5"}, "This page link is not valid."),
        ({"before": "0"}, "This page link is not valid."),
        ({"before": "99999999999999999999999"}, "This page link is not valid."),
        ({"before": "1e3"}, "This page link is not valid."),
    ],
)
def test_bad_history_input_gives_a_message_not_an_error(signed_in, usd, query, message):
    adjust(usd, "10", "Credit")
    url = f"/room/wallets/{usd.pk}/"
    response = signed_in.get(url, query)
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert "Correct the filters above to see the history." in page
    # The export says the same, instead of a file.
    response = signed_in.get(url + "export.csv", query)
    assert response.status_code == 400
    assert message in response.content.decode()
    # With htmx: the history part with the message (htmx swaps only 2xx).
    response = signed_in.get(url, query, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert message in response.content.decode()


def test_date_at_the_end_of_the_calendar_does_not_overflow(signed_in, usd):
    adjust(usd, "10", "Credit")
    response = signed_in.get(f"/room/wallets/{usd.pk}/", {"date_to": "9999-12-31"})
    assert response.status_code == 200
    assert [row[2] for row in rows(response.content.decode())] == ["Credit"]


def test_htmx_gets_only_the_history_part(signed_in, usd):
    adjust(usd, "10", "Credit")
    url = f"/room/wallets/{usd.pk}/"
    response = signed_in.get(url, {"type": "adjustment"}, headers={"HX-Request": "true"})
    page = response.content.decode()
    assert response.status_code == 200
    assert page.lstrip().startswith('<section class="card history" id="wallet-history"')
    assert "<html" not in page and "Credit" in page
    assert "HX-Request" in response["Vary"]
    # The back button's history restore wants the whole page.
    restore = signed_in.get(
        url, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )
    assert "<html" in restore.content.decode()


# --- CSV export ---------------------------------------------------------------------------


def read_csv(response) -> list[list[str]]:
    assert response.streaming
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body)))


def test_csv_export_streams_the_filtered_history(signed_in, trader, usd, monkeypatch):
    monkeypatch.setattr(views, "EXPORT_CHUNK", 4)  # several keyset chunks
    other = services.wallet_open(user=TraderFactory(), currency="USD")
    for i in range(9):
        adjust(usd, f"{i + 1}.05", f"Credit {i}", at=datetime(2026, 2, 1 + i, 8, tzinfo=UTC))
    with mock.patch.object(timezone, "now", return_value=datetime(2026, 2, 20, tzinfo=UTC)):
        transfer(usd, other, 1_250, "Sent to a friend")
    response = signed_in.get(f"/room/wallets/{usd.pk}/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert re.fullmatch(
        r'attachment; filename="wallet-USD-\d{8}\.csv"', response["Content-Disposition"]
    )
    assert "no-store" in response["Cache-Control"]
    table = read_csv(response)
    assert table[0] == [
        "date",
        "type",
        "description",
        "amount",
        "currency",
        "balance_after",
        "status",
    ]
    assert table[1] == [
        "2026-02-20T00:00:00Z",
        "Transfer",
        "Sent to a friend",
        "-12.50",
        "USD",
        "32.95",  # 1.05 + 2.05 + … + 9.05 − 12.50
        "completed",
    ]
    assert table[-1] == [
        "2026-02-01T08:00:00Z",
        "Adjustment",
        "Credit 0",
        "1.05",
        "USD",
        "1.05",
        "completed",
    ]
    assert len(table) == 1 + 10
    assert len({tuple(r) for r in table[1:]}) == 10
    # Filtered, and a page cursor does not cut the export.
    first = JournalTransaction.objects.filter(description="Credit 8").get().entries.get(account=usd)
    filtered = read_csv(
        signed_in.get(
            f"/room/wallets/{usd.pk}/export.csv",
            {"type": "adjustment", "date_from": "2026-02-03", "before": first.pk},
        )
    )
    assert [r[2] for r in filtered[1:]] == [f"Credit {i}" for i in range(8, 1, -1)]


def test_csv_amounts_keep_the_currency_precision(signed_in, trader):
    btc = services.wallet_open(user=trader, currency="BTC")
    adjust(btc, "0.00000001", "Dust")
    adjust(btc, "1.5", "Bonus")
    table = read_csv(signed_in.get(f"/room/wallets/{btc.pk}/export.csv"))
    assert [(r[3], r[4], r[5]) for r in table[1:]] == [
        ("1.50000000", "BTC", "1.50000001"),
        ("0.00000001", "BTC", "0.00000001"),
    ]


def test_csv_export_guards_against_formula_injection(signed_in, usd):
    texts = [
        '=HYPERLINK("http://evil.example","Click")',
        "+1+1",
        "-2+3",
        "@SUM(A1:A2)",
        "\t=1+1",
        "Plain text - with a dash",
    ]
    for text in texts:
        adjust(usd, "1", text)
    table = read_csv(signed_in.get(f"/room/wallets/{usd.pk}/export.csv"))
    descriptions = [r[2] for r in reversed(table[1:])]
    assert descriptions == [
        '\'=HYPERLINK("http://evil.example","Click")',
        "'+1+1",
        "'-2+3",
        "'@SUM(A1:A2)",
        "'\t=1+1",
        "Plain text - with a dash",
    ]
    # Amounts stay numbers, negative ones too.
    adjust(usd, "-3", "Fee")
    assert read_csv(signed_in.get(f"/room/wallets/{usd.pk}/export.csv"))[1][3] == "-3.00"


def test_csv_safe_leaves_numbers_alone():
    assert views.csv_safe("-12.50") == "-12.50"
    assert views.csv_safe("-1+2") == "'-1+2"
    assert views.csv_safe("=1") == "'=1"
    assert views.csv_safe("") == ""


# --- Another trader's wallet -----------------------------------------------------------


def test_another_traders_wallet_is_not_found(signed_in, usd):
    theirs = services.wallet_open(user=TraderFactory(), currency="USD")
    adjust(theirs, "99", "Their secret bonus")
    system = services.system_account("adjustments", "USD")
    for wallet_id in (theirs.pk, system.pk, 999_999, 2**63 - 1, 2**70):
        for suffix in ("", "export.csv", "?type=adjustment", f"?before={theirs.pk + 10}"):
            response = signed_in.get(f"/room/wallets/{wallet_id}/{suffix}")
            assert response.status_code == 404, (wallet_id, suffix)
            assert b"Their secret bonus" not in response.content
    # Their entries never show through the trader's own wallet either.
    assert "Their secret bonus" not in signed_in.get(f"/room/wallets/{usd.pk}/").content.decode()


# --- Query counts -------------------------------------------------------------------------


def test_wallet_list_query_count_does_not_grow_with_wallets(
    signed_in, trader, django_assert_max_num_queries
):
    services.wallet_open(user=trader, currency="USD")
    signed_in.get("/room/wallets/")  # warm the brand cache
    with django_assert_max_num_queries(4):
        assert signed_in.get("/room/wallets/").status_code == 200
    for code in ("EUR", "GBP", "JPY", "CHF", "BTC", "ETH", "USDT"):
        services.wallet_open(user=trader, currency=code)
    with django_assert_max_num_queries(4):
        page = signed_in.get("/room/wallets/").content.decode()
    assert "You have a wallet in every currency we offer." in page


def test_history_query_count_does_not_grow_with_entries(
    signed_in, usd, django_assert_max_num_queries
):
    other = services.wallet_open(user=TraderFactory(), currency="USD")
    adjust(usd, "10", "Credit")
    url = f"/room/wallets/{usd.pk}/"
    signed_in.get(url)
    # Session and user, the wallet, a page of entries, the deposits and the
    # withdrawals in progress.
    with django_assert_max_num_queries(6):
        assert signed_in.get(url).status_code == 200
    for i in range(3 * PAGE + 3):  # more than a page of each type
        adjust(usd, "10", f"Credit {i}")
        if i % 3 == 0:
            transfer(usd, other, 100, f"Transfer {i}")
    for query in ({}, {"type": "transfer", "date_from": "2020-01-01", "date_to": "2099-12-31"}):
        with django_assert_max_num_queries(6):
            response = signed_in.get(url, query)
        assert len(rows(response.content.decode())) == PAGE


# --- Money formatting and demo data ------------------------------------------------------


@pytest.mark.parametrize(
    "code, minor, signed, text",
    [
        ("USD", 123456, False, "$1,234.56"),
        ("USD", -5, False, "\u2212$0.05"),
        ("USD", 5, True, "+$0.05"),
        ("USD", 0, True, "$0.00"),
        ("CHF", 100050, False, "CHF\u00a01,000.50"),
        ("JPY", 1500, False, "¥1,500"),
        ("BTC", 1, False, "0.00000001\u00a0BTC"),
        ("ETH", -1_500_000_000, True, "\u22121.500000000\u00a0ETH"),
    ],
)
def test_money_is_formatted_exactly_in_the_currency_precision(code, minor, signed, text):
    assert format_amount(minor, Currency.objects.get(code=code), signed=signed) == text


def test_demo_seed_gives_traders_history_and_runs_once(django_assert_max_num_queries):
    from accounts.demo import seed_demo
    from kyc import demo as kyc_demo
    from payments import demo

    seed_demo()
    kyc_demo.seed()
    lines = "\n".join(demo.seed())
    assert "transactions added" in lines
    alice_wallets = LedgerAccount.objects.filter(owner__email="alice@demo.test")
    assert sorted(alice_wallets.values_list("currency", flat=True)) == ["BTC", "EUR", "USD"]
    usd = alice_wallets.get(currency="USD")
    assert usd.entries.count() > PAGE  # enough for the paging to show
    times = list(usd.entries.order_by("id").values_list("created_at", flat=True))
    assert times == sorted(times) and times[-1] - times[0] > timedelta(days=90)
    transactions = JournalTransaction.objects.count()
    assert 60 <= transactions <= 200
    assert ledger_check().ok
    again = "\n".join(demo.seed())
    assert JournalTransaction.objects.count() == transactions
    assert f"0 transactions added, {transactions} already there" in again


def test_period_paging_walks_every_entry_once(signed_in, usd):
    for day in range(1, 29):
        adjust(usd, "1", f"Feb {day}", at=datetime(2026, 2, day, 12, tzinfo=UTC))
    url = f"/room/wallets/{usd.pk}/"
    query = {"date_from": "2026-02-01", "date_to": "2026-02-28"}
    seen, pages = [], 0
    while query is not None and pages < 10:
        html = signed_in.get(url, query).content.decode()
        seen += [row[2] for row in rows(html)]
        match = re.search(r'href="[^"]*before=(\d+)[^"]*"', html)
        query = {**query, "before": match.group(1)} if match else None
        pages += 1
    assert seen == [f"Feb {day}" for day in range(28, 0, -1)]


# --- All wallets' history: currency and status filters -----------------------------


def test_all_transactions_filter_by_currency(signed_in, trader, usd, django_assert_max_num_queries):
    eur = services.wallet_open(user=trader, currency="EUR")
    adjust(usd, "10", "Dollar credit")
    adjust(eur, "7", "Euro credit")
    signed_in.get("/room/wallets/history/")
    with django_assert_max_num_queries(5):
        page = signed_in.get("/room/wallets/history/").content.decode()
    assert [r[2] for r in rows(page)] == ["Euro credit", "Dollar credit"]
    assert "+€7.00" in page and "+$10.00" in page
    page = signed_in.get("/room/wallets/history/", {"currency": "EUR"}).content.decode()
    assert [r[2] for r in rows(page)] == ["Euro credit"]


def test_all_transactions_refuse_a_currency_the_trader_has_no_wallet_in(signed_in, usd):
    other = TraderFactory()
    services.wallet_open(user=other, currency="GBP")
    response = signed_in.get("/room/wallets/history/", {"currency": "GBP"})
    assert response.status_code == 400
    assert "Choose one of your wallets" in response.content.decode()


def test_status_filter_is_validated(signed_in, usd):
    response = signed_in.get(f"/room/wallets/{usd.pk}/", {"status": "bogus"})
    assert response.status_code == 400
    assert "Choose a status from the list." in response.content.decode()
    response = signed_in.get(f"/room/wallets/{usd.pk}/", {"status": "completed"})
    assert response.status_code == 200


def test_wallet_page_links_to_deposit_withdraw_and_convert_for_this_wallet(signed_in, usd):
    page = signed_in.get(f"/room/wallets/{usd.pk}/").content.decode()
    assert 'href="/room/wallets/deposit/?currency=USD"' in page
    assert f'href="/room/wallets/withdraw/?wallet={usd.pk}"' in page
    assert f'href="/room/wallets/convert/?from={usd.pk}"' in page
