"""Withdrawals in the admin, through the pages as staff use them (signed in
with a second factor): the list with its filters, search and export; the
detail page; approve, reject, mark paid and retry by Finance; Support and
Compliance only read; no editable status anywhere; query counts."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest

from accounts.roles import COMPLIANCE, FINANCE, SUPPORT
from payments import services
from payments.models import Currency, Withdrawal
from payments.providers.base import ProviderError
from payments.selectors import ledger_check
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory, set_kyc_level
from tests.payments.test_withdrawals import (
    FlakyPayouts,
    balance,
    bank,
    card,
    fund,
    install_flaky,
    pending_total,
    reload,
    withdraw,
)

pytestmark = pytest.mark.django_db

LIST = "/admin/payments/withdrawal/"


@pytest.fixture
def flaky(monkeypatch):
    return install_flaky(monkeypatch)


def detail(withdrawal: Withdrawal) -> str:
    return f"{LIST}{withdrawal.pk}/change/"


def action(withdrawal: Withdrawal, name: str) -> str:
    return f"{LIST}{withdrawal.pk}/{name}/"


@pytest.fixture
def alice(db):
    return TraderFactory(email="alice@example.com")


@pytest.fixture
def usd(alice):
    wallet = services.wallet_open(user=alice, currency="USD")
    fund(wallet)
    return wallet


@pytest.fixture
def finance(db):
    return StaffFactory(roles=[FINANCE], email="fiona@example.com")


@pytest.fixture
def http(finance):
    return signed_in_with_code(finance)


def test_finance_sees_the_list_with_filters_and_search(http, alice, usd):
    first = withdraw(alice, usd, bank(), "100")
    second = withdraw(alice, usd, card(), "25")
    services.withdrawals.withdrawal_cancel(user=alice, withdrawal=second)

    page = http.get(LIST).content.decode()
    assert first.reference in page and second.reference in page
    assert "alice@example.com" in page and "100.00 USD" in page and "0 of 1" in page
    for label in ("By status", "By method", "By currency", "By created at"):
        assert label in page
    assert 'class="export_link"' in page or "Export" in page
    pending = http.get(LIST, {"status__exact": "pending"}).content.decode()
    assert first.reference in pending and second.reference not in pending
    by_method = http.get(LIST, {"method__id__exact": bank().pk}).content.decode()
    assert first.reference in by_method and second.reference not in by_method
    found = http.get(LIST, {"q": second.reference}).content.decode()
    assert second.reference in found and first.reference not in found


def test_the_detail_shows_client_balance_approvals_and_buttons(http, alice, usd):
    withdrawal = withdraw(alice, usd, bank(), "100")
    page = http.get(detail(withdrawal)).content.decode()
    assert "alice@example.com" in page
    assert "balance now 900.00 USD" in page
    assert "0 of 1 (one approver for this amount)" in page
    assert "IBAN: <code>DE89370400440532013000</code>" in page
    for button in ('id="approve-withdrawal"', 'id="reject-withdrawal"'):
        assert button in page
    assert 'id="mark-paid"' not in page  # not approved yet
    # Nothing to edit: no status field, no save button; the change URL refuses a POST.
    assert 'name="status"' not in page and 'name="_save"' not in page
    assert http.post(detail(withdrawal), {"status": "paid"}).status_code == 403
    assert reload(withdrawal).status == Withdrawal.PENDING


def test_finance_approves_then_marks_a_wire_paid(http, alice, usd, finance):
    withdrawal = withdraw(alice, usd, bank(), "100")
    response = http.post(action(withdrawal, "approve"), follow=True)
    text = response.content.decode()
    assert f"{withdrawal.reference} approved. Pay it out, then record" in text
    assert reload(withdrawal).status == Withdrawal.APPROVED
    assert 'id="mark-paid"' in text and 'id="approve-withdrawal"' not in text

    empty = http.post(action(withdrawal, "mark-paid"), {"payout_reference": " "}, follow=True)
    assert "Enter the payout reference" in empty.content.decode()
    assert reload(withdrawal).status == Withdrawal.APPROVED

    paid = http.post(action(withdrawal, "mark-paid"), {"payout_reference": "BANK-77"}, follow=True)
    assert f"{withdrawal.reference} marked paid (payout reference BANK-77)." in (
        paid.content.decode()
    )
    withdrawal = reload(withdrawal)
    assert withdrawal.status == Withdrawal.PAID and withdrawal.settle_journal.actor == finance
    assert pending_total() == 0 and ledger_check().ok


def test_the_sandbox_pays_when_finance_approves(http, alice, usd):
    withdrawal = withdraw(alice, usd, card(), "100")
    text = http.post(action(withdrawal, "approve"), follow=True).content.decode()
    paid = reload(withdrawal)
    assert paid.status == Withdrawal.PAID
    assert f"approved and paid out automatically ({paid.payout_reference})" in text


def test_two_approvers_through_the_pages(http, alice, usd, finance):
    Currency.objects.filter(code="USD").update(withdrawal_two_approvers_above=Decimal("50"))
    withdrawal = withdraw(alice, usd, bank(), "100")
    first = http.post(action(withdrawal, "approve"), follow=True).content.decode()
    assert "Approval recorded (1 of 2)" in first and "needs a second approver" in first
    assert "1 of 2 (two different approvers for this amount)" in first
    assert "fiona@example.com" in first
    assert "You approved it already" in first and 'id="approve-withdrawal"' not in first
    again = http.post(action(withdrawal, "approve"), follow=True).content.decode()
    assert "already approved" in again and reload(withdrawal).status == Withdrawal.PENDING

    other = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    second = other.post(action(withdrawal, "approve"), follow=True).content.decode()
    assert f"{withdrawal.reference} approved." in second
    assert reload(withdrawal).status == Withdrawal.APPROVED


def test_finance_rejects_with_a_reason(http, alice, usd):
    withdrawal = withdraw(alice, usd, bank(), "100")
    missing = http.post(action(withdrawal, "reject"), {"reason": ""}, follow=True)
    assert "Give the reason for the rejection" in missing.content.decode()
    assert reload(withdrawal).status == Withdrawal.PENDING and balance(usd) == 90_000
    text = http.post(
        action(withdrawal, "reject"), {"reason": "Third-party account"}, follow=True
    ).content.decode()
    assert f"{withdrawal.reference} rejected; 100.00 USD returned" in text
    rejected = reload(withdrawal)
    assert rejected.status == Withdrawal.REJECTED
    assert rejected.decision_reason == "Third-party account"
    assert balance(usd) == 100_000 and pending_total() == 0
    assert 'id="reject-withdrawal"' not in text


def test_a_failed_payout_is_shown_and_retried(http, alice, usd, flaky):
    FlakyPayouts.error = ProviderError("Gateway timeout.", permanent=False)
    withdrawal = withdraw(alice, usd, flaky, "100")
    text = http.post(action(withdrawal, "approve"), follow=True).content.decode()
    assert "approved, but the payout failed: Gateway timeout. You can retry the payout." in text
    assert "The last payout attempt failed: Gateway timeout." in text
    assert 'id="retry-payout"' in text and 'id="mark-paid"' in text
    FlakyPayouts.error = None
    retried = http.post(action(withdrawal, "retry-payout"), follow=True).content.decode()
    assert f"{withdrawal.reference} paid out (flaky-{withdrawal.reference})." in retried
    assert reload(withdrawal).status == Withdrawal.PAID


def test_a_finance_member_cannot_approve_their_own_withdrawal(finance):
    set_kyc_level(finance, 3)
    own = services.wallet_open(user=finance, currency="USD")
    fund(own)
    withdrawal = withdraw(finance, own, bank(), "100")  # before their 2FA is on
    http = signed_in_with_code(finance)
    page = http.get(detail(withdrawal)).content.decode()
    assert "This is your own withdrawal: someone else must approve it." in page
    assert 'id="approve-withdrawal"' not in page
    text = http.post(action(withdrawal, "approve"), follow=True).content.decode()
    assert "cannot approve your own withdrawal" in text
    assert reload(withdrawal).status == Withdrawal.PENDING
    assert not withdrawal.approvals.exists()


@pytest.mark.parametrize("role", [SUPPORT, COMPLIANCE])
def test_support_and_compliance_only_read(alice, usd, role):
    withdrawal = withdraw(alice, usd, bank(), "100")
    http = signed_in_with_code(StaffFactory(roles=[role]))
    assert withdrawal.reference in http.get(LIST).content.decode()
    page = http.get(detail(withdrawal)).content.decode()
    assert "alice@example.com" in page and "needs the Finance role" in page
    for button in ("approve-withdrawal", "reject-withdrawal", "mark-paid", "retry-payout"):
        assert f'id="{button}"' not in page
    for name, data in [
        ("approve", {}),
        ("reject", {"reason": "No"}),
        ("mark-paid", {"payout_reference": "X"}),
        ("retry-payout", {}),
    ]:
        assert http.post(action(withdrawal, name), data).status_code == 403
    assert reload(withdrawal).status == Withdrawal.PENDING
    assert not withdrawal.approvals.exists() and balance(usd) == 90_000


def test_actions_are_post_only_and_unknown_ids_are_404(http, alice, usd):
    withdrawal = withdraw(alice, usd, bank(), "100")
    assert http.get(action(withdrawal, "approve")).status_code == 405
    assert http.post(f"{LIST}999999/approve/").status_code == 404
    assert reload(withdrawal).status == Withdrawal.PENDING


def test_nobody_adds_or_deletes_withdrawals_here(http, alice, usd):
    withdrawal = withdraw(alice, usd, bank(), "100")
    assert http.get(f"{LIST}add/").status_code == 403
    assert http.post(f"{LIST}{withdrawal.pk}/delete/").status_code == 403
    assert http.post(LIST, {"action": "delete_selected", "_selected_action": [withdrawal.pk]})
    assert Withdrawal.objects.filter(pk=withdrawal.pk).exists()


def export(http, file_format: str) -> bytes:
    """Through the export form, as staff do: choose the format, keep every field."""
    page = http.get(f"{LIST}export/").content.decode()
    select = re.search(r'<select name="format".*?</select>', page, re.S)
    if select:
        options = re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', select.group(0))
        formats = {label.strip().lower(): value for value, label in options}
    else:  # one format only: a hidden input
        formats = {"csv": re.search(r'name="format" value="(\d+)"', page).group(1)}
    fields = re.findall(r'name="(withdrawalresource_[a-z_]+)"', page)
    data = {"format": formats[file_format], "resource": "0", **dict.fromkeys(fields, "on")}
    response = http.post(f"{LIST}export/", data)
    assert response.status_code == 200
    return response.content


def test_export_csv_with_decimal_amounts(http, alice, usd):
    withdrawal = withdraw(alice, usd, card(), "100")
    rows = list(csv.DictReader(io.StringIO(export(http, "csv").decode("utf-8-sig"))))
    assert len(rows) == 1
    row = rows[0]
    assert row["reference"] == withdrawal.reference and row["client"] == "alice@example.com"
    assert (row["amount"], row["fee"], row["total"]) == ("100.00", "2.80", "102.80")
    assert (row["currency"], row["method"], row["status"]) == ("USD", "Card (sandbox)", "pending")


def test_export_xlsx_with_numeric_amounts(http, alice, usd):
    openpyxl = pytest.importorskip("openpyxl", reason="XLSX needs django-import-export[xlsx]")
    withdrawal = withdraw(alice, usd, card(), "100")
    book = openpyxl.load_workbook(io.BytesIO(export(http, "xlsx")))
    sheet = book.active
    header = [cell.value for cell in sheet[1]]
    values = dict(zip(header, [cell.value for cell in sheet[2]], strict=True))
    assert values["reference"] == withdrawal.reference
    assert Decimal(str(values["amount"])) == Decimal("100")
    assert Decimal(str(values["fee"])) == Decimal("2.8")
    assert isinstance(values["amount"], int | float | Decimal)


def test_export_needs_view_permission(alice, usd):
    withdraw(alice, usd, bank(), "100")
    sales = signed_in_with_code(StaffFactory(roles=["Sales"]))
    assert sales.get(f"{LIST}export/").status_code == 403


def test_list_query_count_does_not_grow(http, alice, usd, django_assert_max_num_queries):
    withdraw(alice, usd, bank(), "60")
    http.get(LIST)
    with django_assert_max_num_queries(12) as first:
        assert http.get(LIST).status_code == 200
    others = [TraderFactory() for _ in range(4)]
    for other in others:
        wallet = services.wallet_open(user=other, currency="USD")
        fund(wallet)
        withdraw(other, wallet, card(), "10")
        withdraw(other, wallet, bank(), "60")
    with django_assert_max_num_queries(len(first.captured_queries)):
        page = http.get(LIST).content.decode()
    assert page.count("of 1</td>") == 9


def test_detail_query_count_is_bounded(http, alice, usd, django_assert_max_num_queries):
    withdrawal = withdraw(alice, usd, bank(), "100")
    http.get(detail(withdrawal))
    with django_assert_max_num_queries(14):
        assert http.get(detail(withdrawal)).status_code == 200
