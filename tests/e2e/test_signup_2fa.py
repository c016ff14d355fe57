"""A visitor signs up, confirms the e-mail, turns on 2FA and signs in with it,
in a real browser (Debian's chromium driven by Playwright), on a desktop and a
phone screen. Screenshots go to test-artifacts/screenshots/ for review."""

from __future__ import annotations

import os
import re
import time
from base64 import b32decode
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django_otp.oath import TOTP
from playwright.sync_api import expect, sync_playwright

from tests.conftest import ARTIFACTS, TEST_PASSWORD, require_or_skip

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ARTIFACTS / "screenshots"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
EMAIL = "ada.trader@example.com"


@pytest.fixture(scope="module")
def browser():
    require_or_skip(CHROMIUM.exists(), f"{CHROMIUM} is not installed")

    # Playwright's sync API keeps an event loop on this thread; Django would
    # otherwise refuse ORM calls (fixtures, database flush) while it runs.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Authenticator:
    """The authenticator app: codes from the secret shown on the page, never
    the same 30-second step twice (the server refuses a code used before)."""

    def __init__(self, secret: str) -> None:
        self.totp = TOTP(b32decode(secret + "=" * (-len(secret) % 8)))
        self.last_step = -1
        self.last_code = ""

    def code(self) -> str:
        self.totp.time = time.time()
        if self.totp.t() <= self.last_step:
            # Still in the step just used: the next step's code is accepted
            # too (the server allows one step of clock skew) and is unused.
            self.totp.time += self.totp.step * (self.last_step + 1 - self.totp.t())
        self.last_step = self.totp.t()
        self.last_code = f"{self.totp.token():06d}"
        return self.last_code


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def assert_no_horizontal_overflow(page) -> None:
    sizes = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth, location.pathname]"
    )
    assert sizes[0] <= sizes[1], f"{sizes[2]} is {sizes[0]}px wide on a {sizes[1]}px screen"


def sign_in(page, base: str, email: str = EMAIL) -> None:
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label(re.compile(r"^Password:?$")).fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))


def enter_code(page, code: str) -> None:
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify and sign in").click()


def test_signup_confirm_turn_on_2fa_and_sign_in_with_codes(live_server, browser):
    base = live_server.url
    desktop = browser.new_context(viewport=DESKTOP)
    page = desktop.new_page()
    page.set_default_timeout(10_000)

    # Sign up.
    page.goto(f"{base}/accounts/signup/")
    shot(page, "signup-1280")
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_label(re.compile(r"^Password:?$")).fill(TEST_PASSWORD)
    page.get_by_label("Password (again)").fill(TEST_PASSWORD)
    page.get_by_role("button", name=re.compile("Sign up|Create account", re.I)).click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    assert page.get_by_role("heading", name=re.compile("verify your email|confirm your e-mail", re.I)).is_visible()
    shot(page, "verification-sent-1280")

    # Confirm the address from the link in the e-mail.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [EMAIL]
    link = re.search(r"https?://\S+/accounts/confirm-email/\S+", mail.outbox[0].body).group(0)
    page.goto(base + urlsplit(link).path)
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))
    assert page.get_by_text(f"You have confirmed {EMAIL}").is_visible()

    # Sign in (no second factor yet) and land in the room.
    sign_in(page, base)
    page.wait_for_url(f"{base}/room/")
    assert page.get_by_role("heading", name="Welcome").is_visible()
    shot(page, "dashboard-1280")

    # Turn on two-factor authentication.
    page.goto(f"{base}/room/security/")
    page.get_by_role("button", name="Set up two-factor authentication").click()
    secret = page.locator("code.secret").get_attribute("data-secret")
    assert secret and re.fullmatch(r"[A-Z2-7]{16,}", secret)
    shot(page, "security-setup-1280")
    app = Authenticator(secret)
    page.get_by_label("Code from the app").fill(app.code())
    page.get_by_role("button", name="Confirm and turn on").click()
    assert page.get_by_role("heading", name="Your backup codes").is_visible()
    codes = page.locator("ol.codes li").all_inner_texts()
    assert len(codes) == 10
    assert all(re.fullmatch(r"[a-z2-9]{5}-[a-z2-9]{5}", c.strip()) for c in codes)
    shot(page, "backup-codes-1280")
    page.get_by_role("link", name="I saved them").click()
    assert page.locator(".status.on").is_visible()
    shot(page, "security-1280")

    # Signed out, the password alone is no longer enough: a fresh code is.
    sign_out(page)
    sign_in(page, base)
    page.wait_for_url(re.compile(r"/accounts/2fa/$"))
    shot(page, "two-factor-1280")
    expect(page.get_by_label("Authentication code")).to_be_focused()
    enter_code(page, app.code())
    page.wait_for_url(f"{base}/room/")

    # The desktop layout shows the navigation; there is no menu button.
    assert page.locator("#room-nav").is_visible()
    assert page.locator("[data-nav-toggle]").is_hidden()

    # A profile with mistakes is refused and the fields say why.
    page.goto(f"{base}/room/profile/")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Date of birth").fill("2099-01-01")
    page.get_by_role("button", name="Save profile").click()
    assert page.get_by_text("The date of birth cannot be in the future.").is_visible()
    shot(page, "profile-errors-1280")
    sign_out(page)
    desktop.close()

    # On a phone: the code used a moment ago is refused, a backup code works once.
    phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{base}/accounts/signup/")
    assert_no_horizontal_overflow(page)
    shot(page, "signup-390")
    sign_in(page, base)
    page.wait_for_url(re.compile(r"/accounts/2fa/$"))
    assert_no_horizontal_overflow(page)
    shot(page, "two-factor-390")
    enter_code(page, app.last_code)
    assert page.get_by_text("That code is not valid.").is_visible()
    assert page.url.endswith("/accounts/2fa/")
    assert_no_horizontal_overflow(page)
    shot(page, "two-factor-error-390")
    enter_code(page, codes[0])
    page.wait_for_url(f"{base}/room/")
    assert_no_horizontal_overflow(page)
    shot(page, "dashboard-390")

    # The navigation is folded away behind the menu button until opened.
    nav, toggle = page.locator("#room-nav"), page.locator("[data-nav-toggle]")
    assert nav.is_hidden()
    assert toggle.get_attribute("aria-expanded") == "false"
    toggle.click()
    assert nav.is_visible()
    assert toggle.get_attribute("aria-expanded") == "true"
    assert_no_horizontal_overflow(page)
    shot(page, "dashboard-nav-open-390")
    nav.get_by_role("link", name="Security").click()
    page.wait_for_url(f"{base}/room/security/")
    assert nav.is_hidden()
    assert page.get_by_text("You have 9 unused backup codes.").is_visible()
    assert_no_horizontal_overflow(page)
    shot(page, "security-390")

    page.goto(f"{base}/room/profile/")
    page.get_by_role("button", name="Save profile").click()
    assert page.get_by_text("Please correct the fields marked below.").is_visible()
    assert_no_horizontal_overflow(page)
    shot(page, "profile-errors-390")

    # A backup code works only once.
    sign_out(page)
    assert_no_horizontal_overflow(page)
    shot(page, "login-390")
    sign_in(page, base)
    enter_code(page, codes[0])
    assert page.get_by_text("That code is not valid.").is_visible()
    phone.close()

    # The entrance pages at desktop width, signed out.
    desktop = browser.new_context(viewport=DESKTOP)
    page = desktop.new_page()
    page.goto(f"{base}/accounts/login/")
    shot(page, "login-1280")
    desktop.close()
