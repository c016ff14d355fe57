"""The sign-up page in a real browser: one step at a time, the country
changing the flow (htmx) without losing what was typed, errors taking the
visitor to their step, and the page without JavaScript. Phone and desktop
sizes; screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from accounts.models import User
from tests.accounts.test_registration_signup import german_flow
from tests.conftest import TEST_PASSWORD
from tests.e2e.conftest import (  # noqa: F401 - the browser fixture
    DESKTOP,
    PHONE,
    assert_no_horizontal_overflow,
    browser,
    new_page,
    shot,
)

pytestmark = pytest.mark.e2e

EMAIL = "emmy.noether@example.com"


def visible_step(page) -> str:
    return page.locator(".signup-step.current .step-count").text_content()


def fill_account(page) -> None:
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("textbox", name="Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("textbox", name="Password (again)").fill(TEST_PASSWORD)


def choose_country(page, code: str) -> None:
    """Pick the country and wait for the form of its flow (htmx)."""
    with page.expect_response(re.compile(rf"/accounts/signup/\?.*country={code}")):
        page.get_by_label("Country of residence").select_option(code)
    page.wait_for_function("!document.querySelector('#signup-body.htmx-request')")


def test_signup_steps_on_a_phone_with_a_country_flow(live_server, browser):  # noqa: F811
    german_flow()
    base = live_server.url
    context, page = new_page(browser, PHONE, is_mobile=True, has_touch=True)
    page.goto(f"{base}/accounts/signup/")
    # The default flow: two steps, the first shown alone.
    expect(page.locator(".signup-step.current")).to_have_count(1)
    assert visible_step(page) == "Step 1 of 2"
    expect(page.get_by_label("First name")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign up")).to_be_hidden()
    assert_no_horizontal_overflow(page)
    shot(page, "registration-signup-step1-390")

    fill_account(page)
    choose_country(page, "DE")
    # The German flow has three steps; what was typed is still there.
    assert visible_step(page) == "Step 1 of 3"
    expect(page.get_by_label("Email")).to_have_value(EMAIL)
    expect(page.get_by_role("textbox", name="Password", exact=True)).to_have_value(TEST_PASSWORD)
    expect(page.locator("select[name=country]")).to_have_value("DE")

    page.get_by_role("button", name="Next").click()
    assert visible_step(page) == "Step 2 of 3"
    expect(page.get_by_label("Vorname")).to_be_visible()
    # Required fields are checked before moving on.
    page.get_by_role("button", name="Next").click()
    assert visible_step(page) == "Step 2 of 3"
    page.get_by_label("Vorname").fill("Emmy")
    page.get_by_label("Nachname").fill("Noether")
    shot(page, "registration-signup-step2-390")
    page.get_by_role("button", name="Back").click()
    assert visible_step(page) == "Step 1 of 3"
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    assert visible_step(page) == "Step 3 of 3"

    # A wrong tax id: the server says why, on the step of the field.
    page.get_by_label("Tax identification number").fill("123")
    page.get_by_role("checkbox", name=re.compile("Client agreement")).check()
    assert_no_horizontal_overflow(page)
    shot(page, "registration-signup-step3-390")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text("Your tax id has 11 digits.")).to_be_visible()
    assert visible_step(page) == "Step 3 of 3"
    shot(page, "registration-signup-error-390")

    # The consent links open the document in a new tab.
    with context.expect_page() as new_tab:
        page.get_by_role("link", name="Client agreement (terms and conditions)").click()
    expect(new_tab.value.get_by_role("heading", level=1)).to_contain_text("Client agreement")
    shot(new_tab.value, "registration-legal-390")
    new_tab.value.close()

    page.get_by_label("Tax identification number").fill("12345678901")
    page.get_by_role("checkbox", name=re.compile("Client agreement")).check()
    # The passwords are not sent back: "Sign up" opens their step first.
    page.get_by_role("button", name="Sign up").click()
    assert visible_step(page) == "Step 1 of 3"
    expect(page.get_by_text("Enter your password again.")).to_be_visible()
    expect(page.get_by_role("textbox", name="Password", exact=True)).to_be_focused()
    page.get_by_role("textbox", name="Password", exact=True).fill(TEST_PASSWORD)
    page.get_by_role("textbox", name="Password (again)").fill(TEST_PASSWORD)
    page.get_by_role("textbox", name="Password (again)").press("Enter")  # = Next
    assert visible_step(page) == "Step 2 of 3"
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    user = User.objects.get(email=EMAIL)
    assert user.profile.registration_flow.name == "Germany"
    assert user.profile.registration_data == {"tax_id": "12345678901"}
    assert user.consents.count() == 1
    context.close()


def test_an_error_on_an_earlier_step_opens_that_step(live_server, browser):  # noqa: F811
    base = live_server.url
    context, page = new_page(browser, DESKTOP)
    page.goto(f"{base}/accounts/signup/")
    shot(page, "registration-signup-step1-1280")
    fill_account(page)
    choose_country(page, "GB")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Lovelace")
    page.get_by_label("Date of birth").fill("1990-12-10")
    page.get_by_label("Phone").fill("12")  # not a phone number
    for name in ("Client agreement", "Privacy policy", "Risk disclosure"):
        page.get_by_role("checkbox", name=re.compile(name)).check()
    shot(page, "registration-signup-step2-1280")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_text("Please correct the fields marked below.")).to_be_visible()
    # The phone is on step 2, which opens with the error.
    assert visible_step(page) == "Step 2 of 2"
    expect(page.get_by_label("Phone")).to_have_attribute("aria-invalid", "true")
    shot(page, "registration-signup-error-1280")
    assert not User.objects.filter(email=EMAIL).exists()
    context.close()


def test_without_javascript_every_step_shows(live_server, browser):  # noqa: F811
    base = live_server.url
    context, page = new_page(browser, PHONE, java_script_enabled=False)
    page.goto(f"{base}/accounts/signup/")
    expect(page.get_by_text("Step 1 of 2")).to_be_visible()
    expect(page.get_by_text("Step 2 of 2")).to_be_visible()
    expect(page.get_by_label("First name")).to_be_visible()
    expect(page.get_by_role("button", name="Sign up")).to_be_visible()
    expect(page.get_by_role("button", name="Next")).to_be_hidden()
    assert_no_horizontal_overflow(page)
    shot(page, "registration-signup-nojs-390")
    context.close()
