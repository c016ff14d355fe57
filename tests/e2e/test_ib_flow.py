"""The IB programme end to end in a real browser (Debian's chromium driven by
Playwright): a visitor follows a partner's link on a phone, signs up with
the link's code already in the form and confirms the e-mail; the client
trades (the market simulator and the deal sync, as the demo platform's beat
does); the partner sees the new client, masked, and the commission with its
explanation in the dashboard; Finance pays the partner out in the admin and
the partner's wallet shows the money. Screenshots go to
test-artifacts/screenshots/.

Set up on the server, as the other browser tests do them in full: the
client's verification level (tests/e2e/test_kyc_flow.py) and the money on
the trading account (tests/e2e/test_trading_flow.py).
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.models import DemoPlatformAccount, Platform, User
from accounts.platforms import simulator
from accounts.roles import FINANCE
from accounts.services.deals import deals_sync_platform
from ib.models import Commission, Payout, Referral
from ib.services.referrals import referral_link_create
from payments.models import LedgerAccount
from tests.conftest import TEST_PASSWORD
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    assert_no_horizontal_overflow,
    enter_code,
    new_page,
    shot,
    sign_in,
)
from tests.factories import (
    StaffFactory,
    TraderFactory,
    enable_totp,
    open_trading_account,
    set_kyc_level,
    totp_code,
)
from tests.ib.factories import make_partner, make_plan

pytestmark = pytest.mark.e2e

EMAIL = "grace.referred@example.com"


def test_signup_through_a_partner_link_trade_commission_and_payout(live_server, browser):
    base = live_server.url
    plan = make_plan(rebate="10", name="E2E plan")
    partner = make_partner(plan=plan, user=TraderFactory(first_name="Diego", last_name="Fernandez"))
    link = referral_link_create(partner=partner, name="YouTube channel")

    # --- A visitor follows the link on a phone and signs up -------------------------------
    context, page = new_page(browser, PHONE)
    page.goto(f"{base}/r/{link.code}/")
    page.wait_for_url(re.compile(r"/accounts/signup/"))
    cookies = {c["name"]: c for c in context.cookies()}
    assert "ref" in cookies and cookies["ref"]["httpOnly"]
    expect(page.get_by_label("Promo code")).to_have_value(link.code)
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("textbox", name="Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("textbox", name="Password (again)").fill(TEST_PASSWORD)
    with page.expect_response(re.compile(r"/accounts/signup/\?.*country=GB")):
        page.get_by_label("Country of residence").select_option("GB")
    page.wait_for_function("!document.querySelector('#signup-body.htmx-request')")
    shot(page, "ib-signup-through-link-390")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("First name").fill("Grace")
    page.get_by_label("Last name").fill("Hopper")
    page.get_by_label("Date of birth").fill("1990-12-10")
    page.get_by_label("Phone").fill("+44 20 7946 0958")
    for document in ("Client agreement", "Privacy policy", "Risk disclosure"):
        page.get_by_role("checkbox", name=re.compile(document)).check()
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    link_in_mail = re.search(r"https?://\S+/accounts/confirm-email/\S+", mail.outbox[-1].body)
    page.goto(base + urlsplit(link_in_mail.group(0)).path)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))
    context.close()

    client = User.objects.get(email=EMAIL)
    referral = Referral.objects.get(client=client, until__isnull=True)
    assert (referral.partner_id, referral.link_id, referral.source) == (
        partner.pk,
        link.pk,
        Referral.COOKIE,
    )

    # --- The client trades -----------------------------------------------------------------
    set_kyc_level(client, 1)
    account = open_trading_account(client, type_name="Standard USD")
    DemoPlatformAccount.objects.filter(login=account.login).update(balance=1_000_000)
    platform = Platform.objects.get(identifier="demo")
    # Deals that close after the sign-up (the client is the partner's from
    # then on). The platform keeps whole seconds: let a few go by, and start
    # from the second after the sign-up.
    time.sleep(3)
    written = simulator.run(
        platform=platform,
        accounts=[account.login],
        counts=12,
        days=1,
        closed_after=client.date_joined + timedelta(seconds=1),
        seed="e2e-ib",
    ).deals
    assert written > 0
    deals_sync_platform(platform=platform)  # deals.imported → accrual (eager here)
    earned = list(Commission.objects.filter(partner=partner, kind=Commission.DEAL))
    assert len(earned) == written
    total = sum(c.amount for c in earned)
    assert total > 0
    lots = sum(c.lots for c in earned)
    assert total == sum(int(c.lots * 1000) for c in earned)  # 10.00 USD per lot, in cents
    assert lots > 0

    # --- The partner sees the client and the commission ------------------------------------
    context, page = new_page(browser, DESKTOP)
    sign_in(page, base, partner.user.email)
    page.wait_for_url(re.compile(r"/room/"))
    page.goto(f"{base}/partner/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    shot(page, "ib-e2e-overview-1280")
    page.goto(f"{base}/partner/clients/")
    body = page.locator("main")
    expect(body).to_contain_text("Grace H.")
    assert "Hopper" not in page.content() and EMAIL not in page.content()
    shot(page, "ib-e2e-clients-1280")
    page.goto(f"{base}/partner/commissions/")
    expect(body).to_contain_text("Grace H.")
    expect(body).to_contain_text("10.00 USD")  # the rebate per lot, in the explanation
    shot(page, "ib-e2e-commissions-1280")
    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    shot(page, "ib-e2e-commissions-390")
    page.set_viewport_size(DESKTOP)

    # --- Finance pays the partner out in the admin -----------------------------------------
    finance = StaffFactory(roles=[FINANCE])
    device = enable_totp(finance)
    staff_context, admin = new_page(browser, DESKTOP)
    sign_in(admin, base, finance.email)
    admin.wait_for_url(re.compile(r"/accounts/2fa/$"))
    enter_code(admin, totp_code(device))
    admin.wait_for_url(re.compile(rf"^{re.escape(base)}/(room/|admin/)?$"))
    admin.goto(f"{base}/admin/ib/payout/pay/")
    admin.get_by_label("Partner's e-mail").fill(partner.user.email)
    admin.get_by_role("button", name="Continue").click()
    admin.wait_for_url(re.compile(rf"/admin/ib/payout/pay/{partner.pk}/"))
    shot(admin, "ib-e2e-admin-pay-1280")
    admin.get_by_role("button", name="Pay out now").click()
    admin.wait_for_url(re.compile(r"/admin/ib/payout/\d+/change/"))
    expect(admin.locator("body")).to_contain_text("Paid")
    staff_context.close()
    payout = Payout.objects.get(partner=partner)
    assert payout.amount == total and payout.currency_id == "USD"
    wallet = LedgerAccount.objects.get(owner=partner.user, currency="USD")
    assert wallet.balance == total

    # --- The partner's wallet shows it -----------------------------------------------------
    page.goto(f"{base}/room/wallets/")
    amount = f"{Decimal(total) / 100:,.2f}"
    expect(page.locator("main")).to_contain_text(amount)
    page.goto(f"{base}/partner/payouts/")
    expect(page.locator("main")).to_contain_text(amount)
    shot(page, "ib-e2e-payouts-1280")
    context.close()
