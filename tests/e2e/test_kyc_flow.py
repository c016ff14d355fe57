"""Verification end to end in a real browser (Debian's chromium driven by
Playwright): a trader on a phone-sized screen uploads the two sides of an
ID card (the page shows only the inputs the chosen document needs) and
passes the appropriateness test; a Compliance officer signs in with 2FA and
approves the card on the admin's review page; the trader's page then shows
level 1 with its higher limits, and withdrawals allowed. Screenshots go to
test-artifacts/screenshots/ for review.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.roles import COMPLIANCE
from kyc.models import ClientKyc, Requirement, Submission
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    assert_no_horizontal_overflow,
    enter_code,
    new_page,
    shot,
    sign_in,
)
from tests.factories import StaffFactory, TraderFactory, enable_totp, totp_code
from tests.kyc import hostile_files

pytestmark = pytest.mark.e2e


@pytest.fixture
def document_root(settings, tmp_path):
    settings.KYC_DOCUMENT_ROOT = tmp_path / "kyc-documents"
    return settings.KYC_DOCUMENT_ROOT


def test_a_trader_verifies_from_a_phone_and_compliance_approves(
    live_server, browser, document_root, tmp_path
):
    base = live_server.url
    trader = TraderFactory(kyc_level=False, first_name="Ada")
    officer = StaffFactory(roles=[COMPLIANCE])
    device = enable_totp(officer)
    front, back = tmp_path / "front.jpg", tmp_path / "back.jpg"
    front.write_bytes(hostile_files.good_jpeg())
    back.write_bytes(hostile_files.good_jpeg())

    # --- The trader, on a phone -------------------------------------------------------
    context, page = new_page(browser, PHONE, has_touch=True, is_mobile=True)
    sign_in(page, base, trader.email)
    page.wait_for_url(re.compile(r"/room/$"))
    expect(page.locator(".kyc-card")).to_contain_text("Level 0 · Unverified")
    page.get_by_role("link", name="Verify").click()
    page.wait_for_url(re.compile(r"/room/verification/$"))
    expect(page.locator(".kyc-current")).to_contain_text("$1,000.00")
    expect(page.locator(".kyc-current")).to_contain_text("Not allowed at this level.")
    assert_no_horizontal_overflow(page)
    shot(page, "kyc-room-overview-before-390")

    page.locator(".kyc-item", has_text="Identity document").get_by_role("link").click()
    # Nothing chosen yet: no file input; a card asks for both sides.
    expect(page.locator("input[name=front]")).to_be_hidden()
    page.get_by_text("National ID card").click()
    expect(page.get_by_label("Front of the card")).to_be_visible()
    expect(page.get_by_label("Back of the card")).to_be_visible()
    expect(page.get_by_label("Passport photo page")).to_be_hidden()
    page.get_by_label("Front of the card").set_input_files(str(front))
    page.get_by_label("Back of the card").set_input_files(str(back))
    expires = timezone.localdate() + timedelta(days=800)
    page.get_by_label("Expiry date").fill(expires.isoformat())
    assert_no_horizontal_overflow(page)
    shot(page, "kyc-room-upload-390")
    page.get_by_role("button", name="Send for review").click()
    page.wait_for_url(re.compile(r"/room/verification/$"))
    expect(page.get_by_text("Thank you: your identity document is uploaded.")).to_be_visible()
    card = Submission.objects.get(user=trader)
    assert sorted(card.documents.values_list("side", flat=True)) == ["back", "front"]

    page.get_by_role("link", name="Answer the questions").click()
    page.get_by_label("1 to 3 years").check()
    page.get_by_label("100 % of the margin").check()
    page.get_by_label("Positions are closed, starting with the largest loss").check()
    page.get_by_label("I understand that I can lose all the money I deposit.").check()
    page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_text("You passed the appropriateness test.")).to_be_visible()
    page.get_by_role("link", name="← Verification").click()
    expect(page.locator(".kyc-next")).to_contain_text("Pending review")
    assert ClientKyc.objects.get(user=trader).level.number == 0

    # --- Compliance approves in the admin ------------------------------------------------
    staff_context, admin = new_page(browser, DESKTOP)
    sign_in(admin, base, officer.email)
    admin.wait_for_url(re.compile(r"/accounts/2fa/$"))
    enter_code(admin, totp_code(device))
    admin.wait_for_url(re.compile(rf"^{re.escape(base)}/(room/|admin/)?$"))
    # From the admin's menu to the queue, the oldest item first: the card.
    admin.goto(f"{base}/admin/")
    admin.get_by_role("link", name="Review queue").first.click()
    admin.wait_for_url(re.compile(r"/admin/kyc/submission/queue/$"))
    rows = admin.locator("#review-queue tbody tr")
    expect(rows).to_have_count(1)  # the passed test was approved at once
    expect(rows.first).to_contain_text("Identity document")
    shot(admin, "kyc-admin-queue-1280")
    rows.first.get_by_role("link", name="Ada").click()
    admin.wait_for_url(re.compile(rf"/admin/kyc/submission/{card.pk}/change/"))
    expect(admin.locator("body")).to_contain_text("Identity document")
    shot(admin, "kyc-admin-review-1280")
    admin.locator("#approve").click()
    admin.wait_for_load_state("networkidle")
    card.refresh_from_db()
    assert card.status == Submission.APPROVED
    staff_context.close()

    # --- The trader's limits changed -------------------------------------------------------
    page.reload()
    current = page.locator(".kyc-current")
    expect(current).to_contain_text("Level 1 · Basic")
    expect(current).to_contain_text("$10,000.00")
    expect(current).to_contain_text("$5,000.00")  # withdrawals per day, now allowed
    expect(current).not_to_contain_text("Not allowed at this level.")
    expect(page.locator(".kyc-next")).to_contain_text("Next: level 2 · Verified")
    shot(page, "kyc-room-overview-after-390")
    assert ClientKyc.objects.get(user=trader).level.number == 1
    assert Requirement.objects.get(name="Identity document").level.number == 1
    context.close()
