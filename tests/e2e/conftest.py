"""What the browser tests share: Debian's chromium driven by Playwright (one
browser per module), the authenticator app, pages at a desktop or phone
size, and screenshots in test-artifacts/screenshots/ for review."""

from __future__ import annotations

import os
import re
import time
from base64 import b32decode
from pathlib import Path

import pytest
from django_otp.oath import TOTP
from playwright.sync_api import sync_playwright

from tests.conftest import ARTIFACTS, TEST_PASSWORD, require_or_skip

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


@pytest.fixture(scope="module")
def browser():
    require_or_skip(CHROMIUM.exists(), f"{CHROMIUM} is not installed")
    # Playwright's sync API keeps an event loop on this thread; Django would
    # otherwise refuse ORM calls (fixtures, the database flush) while it runs.
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
    """The authenticator app, from the secret shown on the page. It never
    gives the same 30-second step twice: the server refuses a used code."""

    def __init__(self, secret: str) -> None:
        self.totp = TOTP(b32decode(secret + "=" * (-len(secret) % 8)))
        self.last_step = -1
        self.last_code = ""

    def code(self) -> str:
        self.totp.time = time.time()
        if self.totp.t() <= self.last_step:
            # Still in the step just used: the next step's code is unused and
            # accepted (the server allows one step of clock drift), so the
            # test need not wait up to 30 seconds.
            self.totp.time += self.totp.step * (self.last_step + 1 - self.totp.t())
        self.last_step = self.totp.t()
        self.last_code = f"{self.totp.token():06d}"
        return self.last_code


def new_page(browser, viewport, **options):
    context = browser.new_context(viewport=viewport, **options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    return context, page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def assert_no_horizontal_overflow(page) -> None:
    width, screen, path = page.evaluate(
        "() => [document.documentElement.scrollWidth, window.innerWidth, location.pathname]"
    )
    assert width <= screen, f"{path} is {width}px wide on a {screen}px screen"


def sign_in(page, base: str, email: str, password: str = TEST_PASSWORD) -> None:
    """Fill and send the sign-in form (the caller waits for where it leads)."""
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_role("textbox", name="Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/accounts/login/"))


def enter_code(page, code: str) -> None:
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Verify and sign in").click()
