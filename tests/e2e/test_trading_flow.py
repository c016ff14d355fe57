"""Trading end to end in a real browser (Debian's chromium driven by
Playwright): a trader with money in a USD wallet opens a live trading
account on the built-in demo platform, is shown the login and password once,
moves 250 USD in, the market simulator trades the account, and the trader
reads the deals in the trading history and the analytics charts. Screenshots
go to test-artifacts/screenshots/ for review.

The platform is credited by the transfer's task after commit (eager here),
while the browser polls the transfer's status page.
"""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from accounts.models import Deal, DemoPlatformAccount, Platform, TradingAccount
from accounts.platforms import simulator
from accounts.services.deals import deals_sync_platform
from payments import services
from payments.models import TradingTransfer
from payments.selectors import ledger_check
from tests.e2e.conftest import (
    DESKTOP,
    PHONE,
    assert_no_horizontal_overflow,
    new_page,
    shot,
    sign_in,
)
from tests.factories import TraderFactory

pytestmark = pytest.mark.e2e


def at_phone_width(page, name: str) -> None:
    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    shot(page, f"{name}-390")
    page.set_viewport_size(DESKTOP)


def test_open_fund_trade_and_read_the_history(live_server, browser):
    base = live_server.url
    trader = TraderFactory(first_name="Grace", last_name="Hopper")
    wallet = services.wallet_open(user=trader, currency="USD")
    services.ledger_post(
        kind="test_funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
        lines=[
            services.Line(wallet, 100_000),
            services.Line(services.system_account("funding", "USD"), -100_000),
        ],
    )

    context, page = new_page(browser, DESKTOP)
    sign_in(page, base, trader.email)
    page.wait_for_url(f"{base}/room/")
    nav = page.locator("#room-nav")

    # --- Open a live Standard USD account ---------------------------------------------
    nav.get_by_role("link", name="Trading accounts").click()
    page.wait_for_url(f"{base}/room/accounts/")
    shot(page, "trading-accounts-empty-1280")
    page.locator("label", has_text="Standard USD").first.click()
    page.get_by_role("button", name="Open account").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Your new live account is open")
    account = TradingAccount.objects.get(user=trader)
    expect(page.get_by_text(account.login).first).to_be_visible()
    expect(page.get_by_text("it will not be shown again")).to_be_visible()
    shot(page, "trading-account-opened-1280")
    at_phone_width(page, "trading-account-opened")
    page.get_by_role("link", name="I saved it, go to the account").click()
    page.wait_for_url(f"{base}/room/accounts/{account.pk}/")

    # --- Move 250 USD in -------------------------------------------------------------------
    page.get_by_role("link", name=re.compile("^Transfer in")).click()
    page.wait_for_url(re.compile(rf"/room/accounts/{account.pk}/transfer/"))
    page.get_by_role("combobox", name="Wallet").select_option(str(wallet.pk))
    page.get_by_role("textbox", name="Amount").fill("250")
    preview = page.locator("#tt-preview")
    expect(preview).to_contain_text("250.00")
    shot(page, "trading-transfer-preview-1280")
    at_phone_width(page, "trading-transfer-preview")
    page.get_by_role("button", name="Confirm transfer").click()
    page.wait_for_url(re.compile(r"/room/accounts/transfers/TT-"))
    transfer = TradingTransfer.objects.get(user=trader)
    expect(page.locator("#tt-status")).to_contain_text("arrived in trading account", timeout=8_000)
    shot(page, "trading-transfer-completed-1280")
    assert transfer.reference in page.url
    transfer.refresh_from_db()
    assert transfer.status == TradingTransfer.COMPLETED
    assert DemoPlatformAccount.objects.get(login=account.login).balance == 25_000
    wallet.refresh_from_db()
    assert wallet.balance == 75_000
    assert ledger_check().ok

    # --- The market trades the account; the deals are pulled in -----------------------
    platform = Platform.objects.get(identifier="demo")
    written = simulator.simulate(
        platform=platform, accounts=[account.login], deals_per_account=80, days=30, seed="e2e"
    )
    assert written > 0
    deals_sync_platform(platform=platform)
    deals = Deal.objects.filter(account=account).count()
    assert deals == written

    # --- History ----------------------------------------------------------------------------
    nav.get_by_role("link", name="Trading history").click()
    page.wait_for_url(f"{base}/room/history/")
    rows = page.locator("#deals tbody tr, .deals-table tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= min(deals, 20)
    newest = Deal.objects.filter(account=account).order_by("-close_time", "-id").first()
    expect(page.locator("body")).to_contain_text(newest.symbol)
    shot(page, "trading-history-1280")
    at_phone_width(page, "trading-history")

    # --- Analytics: charts drawn on the server ---------------------------------------
    page.goto(f"{base}/room/history/analytics/?period=all")
    expect(page.get_by_role("heading", name="Equity curve")).to_be_visible()
    charts = page.locator("svg[role=img] >> visible=true")  # wide or narrow drawing
    expect(charts.first).to_be_visible()
    assert charts.count() >= 3
    expect(page.locator("body")).to_contain_text("Win rate")
    shot(page, "trading-analytics-1280")
    at_phone_width(page, "trading-analytics")
    context.close()
