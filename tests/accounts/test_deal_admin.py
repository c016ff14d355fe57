"""Deals in the admin: read-only for everyone, filters and search, export for
accounts.export_deal, the report import page for accounts.import_deal, a
sales manager's view limited to their clients, bounded query counts."""

from __future__ import annotations

import io
import re

import openpyxl
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts.models import Deal, Platform
from accounts.roles import ADMINISTRATOR, COMPLIANCE, FINANCE, SALES, SUPPORT
from accounts.services.deals import deals_ingest
from backoffice.models import Event
from tests.accounts.test_admin import signed_in_with_code
from tests.accounts.test_deal_import import HEADER, csv_file, row
from tests.accounts.test_deal_ingest import record
from tests.factories import StaffFactory, TraderFactory, open_trading_account

pytestmark = pytest.mark.django_db

LIST = "/admin/accounts/deal/"
EXPORT = "/admin/accounts/deal/export/"
IMPORT = "/admin/accounts/deal/import-report/"


@pytest.fixture
def demo() -> Platform:
    return Platform.objects.get(identifier="demo")


@pytest.fixture
def deals(demo):
    """Alice: 3 deals on a USD account; Bob: 2 on a EUR account."""
    alice = TraderFactory(email="alice@example.com")
    bob = TraderFactory(email="bob@example.com")
    usd = open_trading_account(alice)
    eur = open_trading_account(bob, type_name="Standard EUR")
    deals_ingest(
        platform=demo,
        records=[
            record(1001, usd.login, "1234.5"),
            record(1002, usd.login, "-20", symbol="XAUUSD", side="sell"),
            record(1003, usd.login, "7.25"),
            record(2001, eur.login, "99.99", symbol="GER40"),
            record(2002, eur.login, "-0.01"),
        ],
    )
    return {"alice": alice, "bob": bob, "usd": usd, "eur": eur}


def export_csv(http, query: str = "") -> str:
    page = http.get(EXPORT + query)
    assert page.status_code == 200
    form = page.context["form"]
    data = {"format": "0", "resource": "0"}
    skip = {"format", "resource", "export_items"}
    data.update({name: "on" for name in form.fields if name not in skip})
    response = http.post(EXPORT + query, data)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/csv")
    return response.content.decode()


# --- Read-only ---------------------------------------------------------------------


@pytest.mark.parametrize("role", [ADMINISTRATOR, FINANCE, COMPLIANCE, SUPPORT])
def test_deals_are_read_only_for_every_role(role, deals):
    http = signed_in_with_code(StaffFactory(roles=[role]))
    deal = Deal.objects.get(ticket=1001)
    assert http.get(LIST).status_code == 200
    assert http.get(LIST + "add/").status_code == 403
    page = http.get(f"{LIST}{deal.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "1,234.50 USD" in html
    assert http.post(f"{LIST}{deal.pk}/change/", {"symbol": "HACKED"}).status_code == 403
    assert http.post(f"{LIST}{deal.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Deal.objects.get(pk=deal.pk).symbol == "EURUSD"


def test_the_list_shows_money_in_the_accounts_currency(deals):
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    html = http.get(LIST).content.decode()
    for text in ("1,234.50 USD", "-20.00 USD", "99.99 EUR", "-0.01 EUR", "alice@example.com"):
        assert text in html
    assert deals["usd"].login in html


def test_search_by_ticket_login_or_email_and_filters(deals, demo):
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))

    def tickets(query: str) -> list[int]:
        response = http.get(LIST + query)
        assert response.status_code == 200, query
        return sorted(d.ticket for d in response.context["cl"].result_list)

    assert tickets("?q=1002") == [1002]
    assert tickets(f"?q={deals['eur'].login}") == [2001, 2002]
    assert tickets("?q=ALICE@example.com") == [1001, 1002, 1003]
    assert tickets("?q=nobody") == []
    assert tickets("?symbol=XAUUSD") == [1002]
    assert tickets("?side__exact=sell") == [1002]
    assert tickets(f"?platform__id__exact={demo.pk}") == [1001, 1002, 1003, 2001, 2002]
    # The trading account page's "Deals of this account" link.
    assert tickets(f"?account__id__exact={deals['usd'].pk}") == [1001, 1002, 1003]


def test_sales_sees_only_the_deals_of_their_clients(deals):
    sales = StaffFactory(roles=[SALES])
    profile = deals["bob"].profile
    profile.manager = sales
    profile.save()
    http = signed_in_with_code(sales)
    listed = http.get(LIST).context["cl"].result_list
    assert sorted(d.ticket for d in listed) == [2001, 2002]
    alices = Deal.objects.get(ticket=1001)
    assert http.get(f"{LIST}{alices.pk}/change/").status_code == 302  # not found: back to list


def test_the_list_costs_a_bounded_number_of_queries(deals, django_assert_max_num_queries):
    usd = deals["usd"]
    deals_ingest(platform=usd.platform, records=[record(n, usd.login) for n in range(5000, 5080)])
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    http.get(LIST)  # warm the session and caches
    with django_assert_max_num_queries(10):
        response = http.get(LIST)
    assert len(response.context["cl"].result_list) == 50
    with django_assert_max_num_queries(10):
        http.get(LIST + "?q=alice@example.com&symbol=EURUSD")


# --- Export ------------------------------------------------------------------------


def test_finance_exports_deals_and_the_export_imports_back_as_nothing_new(deals, demo):
    finance = StaffFactory(roles=[FINANCE])
    http = signed_in_with_code(finance)
    text = export_csv(http)
    header, *lines = [line for line in text.splitlines() if line]
    assert header.split(",")[:12] == HEADER
    assert any(line.startswith(f"1001,{deals['usd'].login},EURUSD,buy,") for line in lines)
    assert any(",1234.50,-0.70,0.00,USD,alice@example.com,demo" in line for line in lines)
    assert any(",99.99,-0.70,0.00,EUR,bob@example.com,demo" in line for line in lines)

    response = http.post(
        IMPORT,
        {"platform": demo.pk, "file": SimpleUploadedFile("export.csv", text.encode())},
    )
    assert response.context["report"].summary() == "0 added, 5 already imported."


def test_the_export_follows_the_lists_filters(deals):
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    lines = [line for line in export_csv(http, "?symbol=XAUUSD").splitlines() if line]
    assert len(lines) == 2 and lines[1].startswith("1002,")


@pytest.mark.parametrize("role", [SUPPORT, COMPLIANCE, SALES])
def test_roles_without_the_export_permission_cannot_export(role, deals):
    http = signed_in_with_code(StaffFactory(roles=[role]))
    assert http.get(EXPORT).status_code == 403
    assert 'class="export_link"' not in http.get(LIST).content.decode()


# --- Import page ---------------------------------------------------------------------


def test_finance_imports_a_report_and_sees_what_was_added(deals, demo):
    finance = StaffFactory(roles=[FINANCE])
    http = signed_in_with_code(finance)
    assert 'id="import-deal-report"' in http.get(LIST).content.decode()
    assert http.get(IMPORT).status_code == 200
    login = deals["usd"].login
    upload = csv_file([row(9001, login), row(9002, login), row(1001, login)])
    response = http.post(IMPORT, {"platform": demo.pk, "file": upload})
    assert response.status_code == 200
    html = response.content.decode()
    assert "2 added, 1 already imported." in html
    assert Deal.objects.filter(ticket__in=[9001, 9002]).count() == 2
    assert Event.objects.get(name="deals.file_imported").actor == finance


def test_a_report_with_bad_rows_is_listed_by_line_and_nothing_is_saved(deals, demo):
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    login = deals["usd"].login
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(row(9001, login))
    sheet.append(row(9002, login, side="long"))
    sheet.append(row(9003, "no-such-login"))
    buffer = io.BytesIO()
    workbook.save(buffer)
    upload = SimpleUploadedFile("report.xlsx", buffer.getvalue())
    response = http.post(IMPORT, {"platform": demo.pk, "file": upload})
    html = response.content.decode()
    assert "Nothing was imported: 2 bad rows among 3 rows." in html
    cells = re.findall(r'<td class="line">(\d+)</td><td>([^<]+)</td>', html)
    assert cells == [
        ("3", "side: unknown side &#x27;long&#x27; (buy or sell)"),
        ("4", "login: no account &#x27;no-such-login&#x27; on Demo platform (built-in)"),
    ]
    assert not Deal.objects.filter(ticket__gte=9001).exists()


def test_a_disguised_file_is_refused_on_the_form(deals, demo):
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    upload = SimpleUploadedFile("deals.csv", b"MZ\x90\x00" + b"\x00" * 64)
    response = http.post(IMPORT, {"platform": demo.pk, "file": upload})
    html = response.content.decode()
    assert "The file is a Windows program, not a CSV or XLSX deal report." in html
    assert response.context["report"] is None


@pytest.mark.parametrize("role", [SUPPORT, COMPLIANCE, SALES])
def test_roles_without_the_import_permission_cannot_import(role, deals, demo):
    http = signed_in_with_code(StaffFactory(roles=[role]))
    assert 'id="import-deal-report"' not in http.get(LIST).content.decode()
    assert http.get(IMPORT).status_code == 403
    upload = csv_file([row(9001, deals["usd"].login)])
    assert http.post(IMPORT, {"platform": demo.pk, "file": upload}).status_code == 403
    assert not Deal.objects.filter(ticket=9001).exists()
