"""A visitor signs up, confirms the e-mail, turns on 2FA and signs in with it,
in a real browser (Debian's chromium driven by Playwright), on a desktop and a
phone screen. Screenshots go to test-artifacts/screenshots/ for review."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.core import mail
from playwright.sync_api import expect

from tests.conftest import TEST_PASSWORD
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    Authenticator,
    assert_no_horizontal_overflow,
    enter_code,
    new_page,
    shot,
    sign_out,
)
from tests.e2e.conftest import sign_in as sign_in_as

pytestmark = pytest.mark.e2e

EMAIL = "ada.trader@example.com"
NOT_VALID = "That code is not valid."


def sign_in(page, base: str, password: str = TEST_PASSWORD) -> None:
    sign_in_as(page, base, EMAIL, password)


def test_signup_confirm_turn_on_2fa_and_sign_in_with_codes(live_server, browser):
    base = live_server.url
    desktop, page = new_page(browser, DESKTOP)

    # Sign up; the page says to confirm the address.
    page.goto(f"{base}/accounts/signup/")
    shot(page, "signup-1280")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("textbox", name="Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("textbox", name="Password (again)").fill(TEST_PASSWORD)
    # The default registration flow: the country, then names, birth date,
    # phone and the three documents to accept on the second step.
    with page.expect_response(re.compile(r"/accounts/signup/\?.*country=GB")):
        page.get_by_label("Country of residence").select_option("GB")
    page.wait_for_function("!document.querySelector('#signup-body.htmx-request')")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_label("Date of birth").fill("1990-12-10")
    page.get_by_label("Phone").fill("+44 20 7946 0958")
    for document in ("Client agreement", "Privacy policy", "Risk disclosure"):
        page.get_by_role("checkbox", name=re.compile(document)).check()
    shot(page, "signup-step2-1280")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("verify", re.I))
    shot(page, "verification-sent-1280")

    # Confirm it from the link in the e-mail.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [EMAIL]
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+", mail.outbox[0].body).group(0)
    page.goto(base + urlsplit(link).path)
    shot(page, "email-confirm-1280")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))
    expect(page.get_by_text(f"You have confirmed {EMAIL}")).to_be_visible()

    # Sign in with the password alone (no second factor yet).
    sign_in(page, base)
    page.wait_for_url(f"{base}/room/")
    expect(page.get_by_role("heading", name="Welcome")).to_be_visible()
    shot(page, "dashboard-1280")

    # Turn on two-factor authentication with the key shown on the page.
    page.goto(f"{base}/room/security/")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    secret = page.locator("code.secret").get_attribute("data-secret")
    assert secret and re.fullmatch(r"[A-Z2-7]{16,}", secret)
    shot(page, "security-setup-1280")
    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    expect(page.get_by_role("link", name="Open in the authenticator app")).to_be_visible()
    shot(page, "security-setup-390")
    page.set_viewport_size(DESKTOP)
    app = Authenticator(secret)
    page.get_by_label("Code from the app").fill(app.code())
    page.get_by_role("button", name="Confirm and turn on").click()
    expect(page.get_by_role("heading", name="Your backup codes")).to_be_visible()
    codes = [c.strip() for c in page.locator("ol.codes li").all_inner_texts()]
    assert len(codes) == 10
    assert all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", c) for c in codes)
    shot(page, "backup-codes-1280")
    page.get_by_role("link", name="I saved them").click()
    expect(page.locator(".status.on")).to_be_visible()
    shot(page, "security-1280")

    # Signed out, the password alone no longer opens the room: a fresh code does.
    sign_out(page)
    sign_in(page, base)
    page.wait_for_url(re.compile(r"/accounts/2fa/$"))
    expect(page.get_by_label("Authentication code")).to_be_focused()
    shot(page, "two-factor-1280")
    enter_code(page, app.code())
    page.wait_for_url(f"{base}/room/")

    # On a desktop the navigation is shown and there is no menu button.
    expect(page.locator("#room-nav")).to_be_visible()
    expect(page.locator("[data-nav-toggle]")).to_be_hidden()

    # A profile with mistakes is refused, and each field says why.
    page.goto(f"{base}/room/profile/")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Date of birth").fill("2099-01-01")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("The date of birth cannot be in the future.")).to_be_visible()
    shot(page, "profile-errors-1280")

    # allauth's own pages for a signed-in user open inside the room.
    page.get_by_role("link", name="Change your password").click()
    page.wait_for_url(re.compile(r"/accounts/password/change/$"))
    expect(page.locator("#room-nav")).to_be_visible()
    shot(page, "password-change-1280")
    sign_out(page)
    desktop.close()

    # On a phone, with a backup code instead of the app.
    phone, page = new_page(browser, PHONE, is_mobile=True, has_touch=True)
    page.goto(f"{base}/accounts/signup/")
    assert_no_horizontal_overflow(page)
    shot(page, "signup-390")
    sign_in(page, base)
    page.wait_for_url(re.compile(r"/accounts/2fa/$"))
    assert_no_horizontal_overflow(page)
    shot(page, "two-factor-390")
    enter_code(page, codes[0])
    page.wait_for_url(f"{base}/room/")
    assert_no_horizontal_overflow(page)
    shot(page, "dashboard-390")

    # The navigation is folded away behind the menu button until opened.
    nav, toggle = page.locator("#room-nav"), page.locator("[data-nav-toggle]")
    expect(nav).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    toggle.click()
    expect(nav).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    assert_no_horizontal_overflow(page)
    shot(page, "dashboard-nav-open-390")
    nav.get_by_role("link", name="Security").click()
    page.wait_for_url(f"{base}/room/security/")
    expect(nav).to_be_hidden()
    # The backup code is used up.
    expect(page.get_by_text("You have 9 unused backup codes.")).to_be_visible()
    assert_no_horizontal_overflow(page)
    shot(page, "security-390")

    page.goto(f"{base}/room/profile/")
    page.get_by_role("button", name="Save profile").click()
    expect(page.get_by_text("Please correct the fields marked below.")).to_be_visible()
    assert_no_horizontal_overflow(page)
    shot(page, "profile-errors-390")

    # Without JavaScript there is no menu button: the navigation stays open.
    no_js, plain = new_page(
        browser, PHONE, java_script_enabled=False, storage_state=phone.storage_state()
    )
    plain.goto(f"{base}/room/")
    expect(plain.locator("#room-nav")).to_be_visible()
    expect(plain.locator("[data-nav-toggle]")).to_be_hidden()
    no_js.close()

    # The code from the app used a moment ago does not open the room again.
    sign_out(page)
    assert_no_horizontal_overflow(page)
    shot(page, "login-390")
    sign_in(page, base)
    page.wait_for_url(re.compile(r"/accounts/2fa/$"))
    enter_code(page, app.last_code)
    expect(page.get_by_text(NOT_VALID)).to_be_visible()
    assert page.url.endswith("/accounts/2fa/")
    assert_no_horizontal_overflow(page)
    shot(page, "two-factor-error-390")
    phone.close()

    # A wrong password is refused with a message above the form.
    desktop, page = new_page(browser, DESKTOP)
    page.goto(f"{base}/accounts/login/")
    shot(page, "login-1280")
    sign_in(page, base, password="not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("not correct")
    assert page.url.endswith("/accounts/login/")
    shot(page, "login-error-1280")
    desktop.close()
