"""The payout pages in a real browser, at phone and desktop widths: the
partner requests a payout with the button and reads the statement; nothing
overflows the screen. Screenshots in test-artifacts/screenshots/."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from ib.models import Commission, Payout
from ib.services.payouts import payout_create
from payments.models import LedgerAccount
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    assert_no_horizontal_overflow,
    browser,  # noqa: F401  (the module's browser fixture)
    new_page,
    shot,
    sign_in,
)
from tests.factories import TraderFactory
from tests.ib.test_payouts import earn, partner_with

from .money_helpers import set_rate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def history(partner) -> None:
    """Two earlier payouts, and what has been earned since."""
    set_rate("EUR", "USD", "1.0850")
    names = [("Maria", "Kowalska"), ("John", "Smith"), ("Aiko", "Tanaka")]
    clients = [TraderFactory(first_name=f, last_name=last) for f, last in names]
    for days in (20, 10):
        for i, client in enumerate(clients):
            earn(
                partner,
                1250 + 100 * i,
                client=client,
                earned_at=timezone.now() - timedelta(days=days),
            )
        earn(
            partner,
            25000,
            kind=Commission.CPA,
            client=clients[0 if days == 20 else 2],
            earned_at=timezone.now() - timedelta(days=days),
        )
        payout_create(partner=partner, actor=None, kind=Payout.MANUAL)
    for client in clients:
        earn(partner, 3275, client=client)
    earn(partner, 4200, "EUR", client=clients[1])


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280", "390"])
def test_a_partner_requests_a_payout_and_reads_the_statement(live_server, browser, viewport):  # noqa: F811
    partner = partner_with(payout_minimum=Decimal("50"))
    history(partner)
    context, page = new_page(browser, viewport)
    width = viewport["width"]
    try:
        sign_in(page, live_server.url, partner.user.email)
        page.wait_for_url(re.compile(r"/room/"))
        page.goto(f"{live_server.url}/partner/payouts/")
        assert page.get_by_role("heading", name="Payouts", exact=True).is_visible()
        assert_no_horizontal_overflow(page)
        shot(page, f"ib-payouts-{width}")

        page.get_by_role("button", name="Request payout").click()
        page.wait_for_url(re.compile(r"/partner/payouts/\d+/$"))
        assert "was paid into your USD wallet" in page.content()
        assert "Maria K." in page.content() and "Kowalska" not in page.content()
        assert_no_horizontal_overflow(page)
        shot(page, f"ib-payout-statement-{width}")

        page.goto(f"{live_server.url}/partner/payouts/")
        assert page.get_by_role("button", name="Request payout").is_disabled()
        assert_no_horizontal_overflow(page)
        shot(page, f"ib-payouts-after-{width}")
    finally:
        context.close()
    wallet = LedgerAccount.objects.get(owner_id=partner.user_id, currency_id="USD")
    latest = Payout.objects.filter(partner=partner).order_by("-id").first()
    assert latest.kind == Payout.REQUESTED and wallet.balance == sum(
        p.amount for p in Payout.objects.filter(partner=partner)
    )


def test_an_empty_payouts_page(live_server, browser):  # noqa: F811
    partner = partner_with()
    context, page = new_page(browser, PHONE)
    try:
        sign_in(page, live_server.url, partner.user.email)
        page.wait_for_url(re.compile(r"/room/"))
        page.goto(f"{live_server.url}/partner/payouts/")
        assert page.get_by_text("No payouts yet").is_visible()
        assert page.get_by_role("button", name="Request payout").is_disabled()
        assert_no_horizontal_overflow(page)
        shot(page, "ib-payouts-empty-390")
    finally:
        context.close()
