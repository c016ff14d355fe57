"""A trader verifies with Sumsub in a real browser (Debian's chromium driven
by Playwright) on a phone-sized screen: the verification page's button sends
them to Sumsub's hosted page (a stand-in answers for in.sumsub.com; the API
behind it is the local Sumsub server), Sumsub's signed webhook arrives over
HTTP and the page shows the new level. When Sumsub cannot be reached, the
page says so. Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from kyc.models import ClientKyc, ProviderApplicant
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    assert_no_horizontal_overflow,
    new_page,
    shot,
    sign_in,
)
from tests.factories import TraderFactory

from .sumsub_server import signed, webhook

pytestmark = pytest.mark.django_db(transaction=True)

STAND_IN = "<html><body><h1>Sumsub WebSDK</h1><p>Take a photo of your document.</p></body></html>"


def sumsub_page(route) -> None:
    route.fulfill(status=200, content_type="text/html", body=STAND_IN)


@pytest.mark.parametrize(("viewport", "size"), [(PHONE, "phone"), (DESKTOP, "desktop")])
def test_a_trader_verifies_with_sumsub_and_the_level_follows(
    browser, live_server, check, sumsub, sumsub_server, viewport, size
):
    trader = TraderFactory(kyc_level=False)
    context, page = new_page(browser, viewport)
    page.route(re.compile(r"https://in\.sumsub\.com/.*"), sumsub_page)
    try:
        sign_in(page, live_server.url, trader.email)
        page.wait_for_url(re.compile(r"/room/"))
        page.goto(f"{live_server.url}/room/verification/")
        button = page.get_by_role("button", name="Start the check with Sumsub")
        expect(button).to_be_visible()
        assert_no_horizontal_overflow(page)
        shot(page, f"kyc-sumsub-{size}-1-verification")

        button.click()
        page.wait_for_url(re.compile(r"https://in\.sumsub\.com/websdk/p/"))
        expect(page.get_by_role("heading", name="Sumsub WebSDK")).to_be_visible()
        applicant = ProviderApplicant.objects.get(user=trader)

        body, headers = signed(
            webhook(
                "applicantReviewed",
                applicant.applicant_id,
                external_user_id=str(trader.pk),
                answer="GREEN",
            )
        )
        answer = requests.post(
            f"{live_server.url}/webhooks/kyc/sumsub/",
            data=body,
            headers={**headers, "Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["result"] == "applied"

        page.goto(f"{live_server.url}/room/verification/")
        expect(page.locator(".kyc-item-approved", has_text="Identity check")).to_be_visible()
        assert ClientKyc.objects.get(user=trader).level.number == 1
        assert_no_horizontal_overflow(page)
        shot(page, f"kyc-sumsub-{size}-2-approved")
    finally:
        context.close()


def test_sumsub_down_is_said_on_the_page(browser, live_server, check, sumsub, sumsub_server):
    trader = TraderFactory(kyc_level=False)
    sumsub_server.fault("/resources/applicants", "status", status=503)
    context, page = new_page(browser, PHONE)
    try:
        sign_in(page, live_server.url, trader.email)
        page.wait_for_url(re.compile(r"/room/"))
        page.goto(f"{live_server.url}/room/verification/")
        page.get_by_role("button", name="Start the check with Sumsub").click()
        page.wait_for_url(re.compile(r"/room/verification/$"))
        expect(page.get_by_text("Sumsub cannot be reached at the moment")).to_be_visible()
        assert_no_horizontal_overflow(page)
        shot(page, "kyc-sumsub-phone-3-unreachable")
        assert not ProviderApplicant.objects.filter(user=trader).exists()
    finally:
        context.close()
