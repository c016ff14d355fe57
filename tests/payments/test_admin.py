"""The ledger in the admin: read-only pages, manual adjustments and reversals
through the services, each role's rights, and bounded query counts."""

from __future__ import annotations

import re
import uuid

import pytest

from accounts.roles import ADMINISTRATOR, COMPLIANCE, FINANCE, SALES, SUPPORT
from backoffice.models import Event
from payments import services
from payments.models import Currency, JournalTransaction, LedgerAccount
from payments.selectors import ledger_check
from payments.services import Line
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory

pytestmark = pytest.mark.django_db

LEDGER_PAGES = [
    "/admin/payments/ledgeraccount/",
    "/admin/payments/journaltransaction/",
]


def fund(wallet: LedgerAccount, minor: int, key: str | None = None) -> JournalTransaction:
    return services.ledger_post(
        kind="test_funding",
        idempotency_key=key or f"fund:{uuid.uuid4()}",
        lines=[
            Line(wallet, minor),
            Line(services.system_account("funding", wallet.currency_id), -minor),
        ],
        description="test funding",
    )


@pytest.fixture
def wallet(db) -> LedgerAccount:
    wallet = services.wallet_open(user=TraderFactory(email="alice@example.com"), currency="USD")
    fund(wallet, 10_000)  # 100.00 USD
    wallet.refresh_from_db()
    return wallet


@pytest.fixture
def finance():
    return StaffFactory(roles=[FINANCE])


def adjust_url(wallet: LedgerAccount) -> str:
    return f"/admin/payments/ledgeraccount/{wallet.pk}/adjust/"


def fresh_key(http, wallet: LedgerAccount) -> str:
    page = http.get(adjust_url(wallet)).content.decode()
    return re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page).group(1)


def balance(wallet: LedgerAccount) -> int:
    wallet.refresh_from_db()
    return wallet.balance


def adjustments() -> int:
    return JournalTransaction.objects.filter(kind="adjustment").count()


def test_finance_credits_then_debits_a_wallet_after_confirming(wallet, finance):
    http = signed_in_with_code(finance)
    detail = http.get(f"/admin/payments/ledgeraccount/{wallet.pk}/change/").content.decode()
    assert 'id="adjust-balance"' in detail and "100.00 USD" in detail

    key = fresh_key(http, wallet)
    data = {"amount": "25.50", "reason": "Goodwill credit", "idempotency_key": key}
    preview = http.post(adjust_url(wallet), data).content.decode()
    assert "Confirm the adjustment" in preview
    assert "25.50 USD" in preview and "125.50 USD" in preview  # the balance after
    assert balance(wallet) == 10_000  # nothing posted before confirming

    response = http.post(adjust_url(wallet), {**data, "confirm": "Yes, post it"}, follow=True)
    assert "Credited 25.50 USD (transaction #" in response.content.decode()
    assert balance(wallet) == 12_550
    journal = JournalTransaction.objects.get(kind="adjustment")
    assert journal.actor == finance and journal.description == "Goodwill credit"
    event = Event.objects.get(name="wallet.adjusted")
    assert (event.actor, event.client) == (finance, wallet.owner)
    assert event.payload == {"wallet": wallet.pk, "amount": "25.50", "currency": "USD"}

    key = fresh_key(http, wallet)
    http.post(
        adjust_url(wallet),
        {"amount": "-0.50", "reason": "Fee correction", "idempotency_key": key, "confirm": "1"},
    )
    assert balance(wallet) == 12_500
    assert Event.objects.filter(name="wallet.adjusted").count() == 2
    assert ledger_check().ok


def test_a_double_submit_posts_once(wallet, finance):
    http = signed_in_with_code(finance)
    data = {
        "amount": "10",
        "reason": "Bonus",
        "idempotency_key": fresh_key(http, wallet),
        "confirm": "1",
    }
    assert http.post(adjust_url(wallet), data).status_code == 302
    again = http.post(adjust_url(wallet), data, follow=True).content.decode()
    assert "already posted" in again
    assert balance(wallet) == 11_000
    assert adjustments() == 1
    assert Event.objects.filter(name="wallet.adjusted").count() == 1
    # The same form sent back with another amount is refused, not posted.
    response = http.post(adjust_url(wallet), {**data, "amount": "11"})
    assert "already used for another adjustment" in response.content.decode()
    assert adjustments() == 1


@pytest.mark.parametrize(
    ("amount", "reason", "message"),
    [
        ("10.005", "Typo", "no more than 2 decimal places"),
        ("0", "Nothing", "cannot be zero"),
        ("ten", "Words", "Enter a number"),
        ("-100.01", "Too much", "Insufficient funds"),
        ("5", "   ", "This field is required"),
        ("1" * 19, "Huge", "no more than 18 digits"),
    ],
)
def test_bad_amounts_show_an_error_and_change_nothing(wallet, finance, amount, reason, message):
    http = signed_in_with_code(finance)
    data = {"amount": amount, "reason": reason, "idempotency_key": fresh_key(http, wallet)}
    for extra in ({}, {"confirm": "1"}):
        response = http.post(adjust_url(wallet), {**data, **extra})
        assert response.status_code == 200
        page = response.content.decode()
        assert message in page and 'class="errornote"' in page
        assert "Confirm the adjustment" not in page
    assert balance(wallet) == 10_000
    assert adjustments() == 0
    assert not Event.objects.filter(name="wallet.adjusted").exists()


def test_insufficient_funds_are_explained_in_the_currency(wallet, finance):
    http = signed_in_with_code(finance)
    data = {"amount": "-1500", "reason": "Overdraw", "idempotency_key": fresh_key(http, wallet)}
    preview = http.post(adjust_url(wallet), data).content.decode()
    assert "the wallet holds 100.00 USD, so it cannot be debited 1,500.00 USD" in preview
    # On confirming, the ledger decides under the wallet's lock.
    page = http.post(adjust_url(wallet), {**data, "confirm": "1"}).content.decode()
    assert "Insufficient funds in wallet" in page
    assert "1,500.00 USD needed, 100.00 USD available. Nothing was posted." in page
    assert balance(wallet) == 10_000 and adjustments() == 0


def test_a_double_submitted_debit_posts_once_and_says_so(wallet, finance):
    http = signed_in_with_code(finance)
    key = fresh_key(http, wallet)
    data = {"amount": "-60", "reason": "Fee", "idempotency_key": key, "confirm": "1"}
    assert http.post(adjust_url(wallet), data).status_code == 302
    again = http.post(adjust_url(wallet), data, follow=True).content.decode()
    assert "already posted" in again and "Insufficient funds" not in again
    assert balance(wallet) == 4_000 and adjustments() == 1


def test_a_system_account_cannot_be_adjusted(wallet, finance):
    funding = services.system_account("funding", "USD")
    http = signed_in_with_code(finance)
    page = http.get(f"/admin/payments/ledgeraccount/{funding.pk}/change/").content.decode()
    assert "-100.00 USD" in page  # a system account's balance: the sum of its entries
    assert 'id="adjust-balance"' not in page
    assert http.get(adjust_url(funding)).status_code == 404


@pytest.mark.parametrize("role", [SUPPORT, COMPLIANCE])
def test_support_and_compliance_read_but_cannot_adjust_or_reverse(wallet, role):
    journal = JournalTransaction.objects.get()
    http = signed_in_with_code(StaffFactory(roles=[role]))
    for url in LEDGER_PAGES:
        assert http.get(url).status_code == 200
    detail = http.get(f"/admin/payments/ledgeraccount/{wallet.pk}/change/").content.decode()
    assert "alice@example.com" in detail and "test funding" in detail
    assert 'id="adjust-balance"' not in detail
    page = http.get(f"/admin/payments/journaltransaction/{journal.pk}/change/").content.decode()
    assert "test_funding" in page and 'id="reverse-transaction"' not in page

    assert http.get(adjust_url(wallet)).status_code == 403
    data = {"amount": "5", "reason": "x", "idempotency_key": str(uuid.uuid4()), "confirm": "1"}
    assert http.post(adjust_url(wallet), data).status_code == 403
    reverse_url = f"/admin/payments/journaltransaction/{journal.pk}/reverse/"
    assert http.get(reverse_url).status_code == 403
    assert http.post(reverse_url, {"reason": "x"}).status_code == 403
    assert balance(wallet) == 10_000
    assert JournalTransaction.objects.count() == 1
    assert http.get("/admin/payments/currency/").status_code == 403


def test_sales_cannot_see_the_ledger(wallet):
    http = signed_in_with_code(StaffFactory(roles=[SALES]))
    for url in [*LEDGER_PAGES, "/admin/payments/currency/", adjust_url(wallet)]:
        assert http.get(url).status_code == 403, url
    assert "/admin/payments/" not in http.get("/admin/").content.decode()


def test_finance_reverses_a_transaction_once(wallet, finance):
    journal = JournalTransaction.objects.get()
    http = signed_in_with_code(finance)
    change_url = f"/admin/payments/journaltransaction/{journal.pk}/change/"
    reverse_url = f"/admin/payments/journaltransaction/{journal.pk}/reverse/"
    assert 'id="reverse-transaction"' in http.get(change_url).content.decode()
    form = http.get(reverse_url).content.decode()
    assert "100.00 USD" in form and "-100.00 USD" in form

    missing_reason = http.post(reverse_url, {"reason": ""})
    assert missing_reason.status_code == 200 and JournalTransaction.objects.count() == 1

    response = http.post(reverse_url, {"reason": "Duplicate deposit"}, follow=True)
    reversal = JournalTransaction.objects.get(reverses=journal)
    assert f"reversed by #{reversal.pk}" in response.content.decode()
    assert reversal.actor == finance and reversal.metadata["reason"] == "Duplicate deposit"
    assert balance(wallet) == 0
    assert 'id="reverse-transaction"' not in http.get(change_url).content.decode()

    again = http.post(reverse_url, {"reason": "Again"}, follow=True).content.decode()
    assert f"already reversed by #{reversal.pk}" in again
    assert JournalTransaction.objects.filter(kind="reversal").count() == 1
    # Nor is the reversal itself reversed.
    page = http.post(
        f"/admin/payments/journaltransaction/{reversal.pk}/reverse/", {"reason": "x"}, follow=True
    ).content.decode()
    assert "is itself a reversal" in page
    assert JournalTransaction.objects.count() == 2
    assert ledger_check().ok


def test_a_reversal_that_would_overdraw_a_wallet_changes_nothing(wallet, finance):
    deposit = JournalTransaction.objects.get()
    other = services.wallet_open(user=TraderFactory(), currency="USD")
    services.ledger_post(
        kind="transfer", idempotency_key="spend", lines=[Line(wallet, -6_000), Line(other, 6_000)]
    )
    http = signed_in_with_code(finance)
    response = http.post(
        f"/admin/payments/journaltransaction/{deposit.pk}/reverse/", {"reason": "Chargeback"}
    )
    page = response.content.decode()
    assert "Insufficient funds" in page and "Nothing was posted" in page
    assert balance(wallet) == 4_000
    assert not JournalTransaction.objects.filter(kind="reversal").exists()


def test_no_add_change_or_delete_of_ledger_rows_even_for_the_administrator(wallet):
    journal = JournalTransaction.objects.get()
    http = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    for url in LEDGER_PAGES:
        page = http.get(url).content.decode()
        assert f'href="{url}add/"' not in page and 'name="action"' not in page
    for url in [
        f"/admin/payments/ledgeraccount/{wallet.pk}/change/",
        f"/admin/payments/journaltransaction/{journal.pk}/change/",
    ]:
        page = http.get(url).content.decode()
        assert 'class="deletelink"' not in page and 'name="_save"' not in page
    assert http.get("/admin/payments/ledgeraccount/add/").status_code == 403
    assert http.get("/admin/payments/journaltransaction/add/").status_code == 403
    assert http.post(f"/admin/payments/ledgeraccount/{wallet.pk}/delete/").status_code == 403
    response = http.post(
        f"/admin/payments/ledgeraccount/{wallet.pk}/change/", {"balance": "99999999"}
    )
    assert response.status_code == 403
    assert balance(wallet) == 10_000
    # Entries are listed (and exported), never added or changed.
    assert http.get("/admin/payments/entry/add/").status_code == 403
    entry = journal.entries.first()
    page = http.get(f"/admin/payments/entry/{entry.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_administrator_edits_currencies_but_not_their_exponent():
    http = signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))
    page = http.get("/admin/payments/currency/BTC/change/").content.decode()
    assert 'name="name"' in page and 'name="exponent"' not in page
    assert 'class="deletelink"' not in page
    response = http.post(
        "/admin/payments/currency/BTC/change/",
        {
            "name": "Bitcoin (BTC)",
            "kind": "crypto",
            "symbol": "₿",
            "display_order": "60",
            "is_active": "on",
            "exponent": "2",
        },
    )
    assert response.status_code == 302
    btc = Currency.objects.get(code="BTC")
    assert (btc.name, btc.exponent) == ("Bitcoin (BTC)", 8)

    finance_http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    assert finance_http.get("/admin/payments/currency/").status_code == 200
    response = finance_http.post(
        "/admin/payments/currency/USD/change/", {"name": "Changed", "kind": "fiat"}
    )
    assert response.status_code == 403


def test_balances_show_in_each_currencys_precision(finance):
    btc = services.wallet_open(user=TraderFactory(email="sat@example.com"), currency="BTC")
    fund(btc, 1_2345_6789)
    jpy = services.wallet_open(user=TraderFactory(email="yen@example.com"), currency="JPY")
    fund(jpy, 1_500_000)
    page = signed_in_with_code(finance).get("/admin/payments/ledgeraccount/").content.decode()
    assert "1.23456789 BTC" in page
    assert "1,500,000 JPY" in page
    assert "-1,500,000 JPY" in page  # the funding system account, summed from entries


def test_search_by_owner_email_and_filter_by_kind(wallet, finance):
    services.wallet_open(user=TraderFactory(email="bob@example.com"), currency="EUR")
    http = signed_in_with_code(finance)
    page = http.get("/admin/payments/ledgeraccount/?q=alice").content.decode()
    assert "alice@example.com" in page and "bob@example.com" not in page
    page = http.get("/admin/payments/ledgeraccount/?kind__exact=system").content.decode()
    assert "funding" in page and "alice@example.com" not in page
    journal = JournalTransaction.objects.get()
    page = http.get(
        f"/admin/payments/journaltransaction/?q={journal.idempotency_key}"
    ).content.decode()
    assert f"/admin/payments/journaltransaction/{journal.pk}/change/" in page


def test_ledger_pages_run_a_bounded_number_of_queries(finance, django_assert_max_num_queries):
    wallets = [
        services.wallet_open(user=TraderFactory(), currency=code)
        for code in ["USD", "EUR", "GBP", "BTC"] * 6
    ]
    for n, wallet in enumerate(wallets):
        fund(wallet, 1_000 + n)
    for n in range(60):
        fund(wallets[0], 1, key=f"many:{n}")
    http = signed_in_with_code(finance)
    journal = JournalTransaction.objects.first()
    pages = {
        "/admin/payments/ledgeraccount/": 12,
        "/admin/payments/journaltransaction/": 12,
        f"/admin/payments/ledgeraccount/{wallets[0].pk}/change/": 12,
        f"/admin/payments/journaltransaction/{journal.pk}/change/": 14,
    }
    for url, most in pages.items():
        http.get(url)  # warm caches (content types, brand)
        with django_assert_max_num_queries(most):
            assert http.get(url).status_code == 200


# --- Ledger entries: list and export ------------------------------------------------


def test_finance_exports_ledger_entries_as_csv_with_decimal_amounts(wallet, finance):
    http = signed_in_with_code(finance)
    assert http.get("/admin/payments/entry/").status_code == 200
    page = http.get("/admin/payments/entry/export/")
    assert page.status_code == 200
    form = page.context["form"]
    data = {"format": "0", "resource": "0"}
    # django-import-export asks which fields to export: all of them.
    skip = {"format", "resource", "export_items"}
    data.update({name: "on" for name in form.fields if name not in skip})
    response = http.post("/admin/payments/entry/export/", data)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode()
    header, *rows = [line for line in text.splitlines() if line]
    assert header.split(",")[:4] == ["id", "transaction", "date", "type"]
    assert any(",alice@example.com,USD,100.00," in row for row in rows)
    assert any("funding,,USD,-100.00," in row for row in rows)


def test_support_cannot_export_ledger_entries(wallet):
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    assert http.get("/admin/payments/entry/export/").status_code == 403
