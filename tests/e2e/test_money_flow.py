"""Money end to end in a real browser (Debian's chromium driven by
Playwright): a trader deposits through the sandbox PSP's hosted checkout,
converts, asks to withdraw by bank wire, and a Finance user approves and
pays the withdrawal in the admin. Screenshots go to
test-artifacts/screenshots/ for review.

The sandbox PSP sends its signed webhook over HTTP to SITE_URL (pointed at
the live server): in eager mode the Pay click makes that call while the
checkout request is still being served, which pytest-django's threaded live
server answers on another thread.

The amounts fit the default methods: the bank wire takes 50.00 at least
(deposits and withdrawals alike), so after 100 USD by card (97.20 credited)
and 40 USD converted to EUR, 20 EUR by wire is refused on the form and
50 USD is withdrawn instead.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.db.models.functions import Coalesce
from playwright.sync_api import expect

from accounts.roles import FINANCE
from payments.models import (
    Conversion,
    Deposit,
    Entry,
    LedgerAccount,
    PaymentMethod,
    Withdrawal,
)
from payments.selectors import ledger_check
from payments.services import system_account
from payments.services.rates import rate_set_manual
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

pytestmark = pytest.mark.e2e

IBAN = "GB33BUKB20201555555555"
HOLDER = "Ada Lovelace"
PAYOUT_REFERENCE = "BANK-PAY-0001"


def balance(user, code: str) -> int:
    return LedgerAccount.objects.get(owner=user, currency_id=code).balance


def posted(code: str, currency: str) -> int:
    """What the entries put on a system account (only wallets keep a balance)."""
    return Entry.objects.filter(account=system_account(code, currency)).aggregate(
        total=Coalesce(Sum("amount"), 0)
    )["total"]


def htmx_settled(page) -> None:
    """Wait until htmx has no request in flight and has settled its swaps."""
    page.wait_for_function(
        "() => !document.querySelector("
        "'.htmx-request, .htmx-swapping, .htmx-settling, .htmx-added')"
    )


def at_phone_width(page, name: str) -> None:
    """The page as it is, on a phone screen, then back to the desktop."""
    page.set_viewport_size(PHONE)
    assert_no_horizontal_overflow(page)
    shot(page, f"{name}-390")
    page.set_viewport_size(DESKTOP)


def test_deposit_convert_withdraw_and_finance_pays_it(live_server, browser, settings):
    base = live_server.url
    settings.SITE_URL = base  # where the sandbox PSP sends its webhook
    trader = TraderFactory(first_name="Ada", last_name="Lovelace", profile__country="GB")
    finance = StaffFactory(roles=[FINANCE])
    device = enable_totp(finance)
    # Finance set a rate by hand: 1 USD = 0.92 EUR (markup 0.5 %, no fee).
    rate_set_manual(actor=finance, base="USD", quote="EUR", rate=Decimal("0.92"))
    wire = PaymentMethod.objects.get(name="Bank wire")  # no fee; 50.00 at least

    desktop, page = new_page(browser, DESKTOP)

    # --- The trader signs in and opens a USD and a EUR wallet ---------------------
    sign_in(page, base, trader.email)
    page.wait_for_url(f"{base}/room/")
    nav = page.locator("#room-nav")
    nav.get_by_role("link", name="Wallets").click()
    expect(page.get_by_role("heading", name="No wallets yet")).to_be_visible()
    for code in ("USD", "EUR"):
        page.get_by_label("Currency").select_option(code)
        page.get_by_role("button", name="Open wallet").click()
        expect(page.get_by_text(f"Your {code} wallet is open.")).to_be_visible()
    expect(page.locator(".wallet-card")).to_have_count(2)
    shot(page, "money-wallets-open-1280")

    # --- Deposit 100 USD by card through the sandbox PSP ---------------------------
    nav.get_by_role("link", name="Deposit").click()
    page.wait_for_url(re.compile(r"/room/wallets/deposit/"))
    # Choosing the wallet swaps in its methods (htmx): wait for them.
    with page.expect_response(re.compile(r"/room/wallets/deposit/\?currency=USD")):
        page.get_by_label("Wallet to credit").select_option("USD")
    htmx_settled(page)
    expect(page.get_by_text("Payment method for USD")).to_be_visible()
    card = page.locator("label.method-option", has_text="Card (sandbox)")
    # What the method charges, on its card: 2.5 % + 0.30 USD.
    expect(card).to_contain_text("Fee 2.5 % + 0.30 USD")
    card.click()
    page.get_by_label("Amount you pay").fill("100")
    # The fee and what the wallet receives, before anything is confirmed.
    preview = page.locator("#deposit-preview")
    expect(preview).to_contain_text("You pay$100.00")
    expect(preview).to_contain_text("Fee$2.80")
    expect(preview).to_contain_text("Your USD wallet receives$97.20")
    assert not Deposit.objects.exists()
    shot(page, "money-deposit-preview-1280")
    at_phone_width(page, "money-deposit-preview")
    page.get_by_role("button", name=re.compile("^(Continue|Confirm and pay)$")).click()

    # The sandbox PSP's hosted checkout; Pay sends the webhook and comes back.
    page.wait_for_url(re.compile(r"/sandbox-psp/checkout/"))
    deposit = Deposit.objects.get(user=trader)
    expect(page.get_by_role("heading", level=1)).to_have_text("100.00 USD")
    expect(page.get_by_text(deposit.reference)).to_be_visible()
    shot(page, "money-sandbox-checkout-1280")
    at_phone_width(page, "money-sandbox-checkout")
    page.get_by_role("button", name="Pay 100.00 USD").click()
    page.wait_for_url(re.compile(rf"/room/wallets/deposit/{deposit.reference}/$"))
    # Credited by the webhook; the page polls while it waits (every 3 s).
    expect(page.get_by_role("heading", name="Your wallet is credited")).to_be_visible(timeout=8_000)
    expect(page.get_by_role("status").filter(has_text="Completed")).to_be_visible()
    expect(page.get_by_text("$97.20 was added to your USD wallet")).to_be_visible()
    shot(page, "money-deposit-completed-1280")
    deposit.refresh_from_db()
    assert (deposit.status, deposit.amount, deposit.fee, deposit.credit_amount) == (
        Deposit.COMPLETED,
        10000,
        280,
        9720,
    )
    page.get_by_role("link", name="Open the USD wallet").click()
    expect(page.locator(".wallet-title .wallet-balance")).to_contain_text("$97.20")
    shot(page, "money-wallet-usd-1280")
    assert balance(trader, "USD") == 9720

    # --- Convert 40 USD to EUR at the quoted rate ------------------------------------
    nav.get_by_role("link", name="Convert").click()
    page.wait_for_url(f"{base}/room/wallets/convert/")
    usd = LedgerAccount.objects.get(owner=trader, currency_id="USD")
    eur = LedgerAccount.objects.get(owner=trader, currency_id="EUR")
    page.get_by_role("combobox", name="From", exact=True).select_option(str(usd.pk))
    page.get_by_role("combobox", name="To", exact=True).select_option(str(eur.pk))
    page.get_by_label("Amount to convert").fill("40")
    page.get_by_role("button", name="Get a quote").click()
    quote = page.locator("#quote")
    expect(quote).to_be_visible()
    # 0.92 less the 0.5 % markup is 0.9154; 40 × 0.9154 = 36.616, rounded down.
    expect(quote).to_contain_text("You give$40.00")
    expect(quote).to_contain_text("Fee$0.00")
    expect(quote).to_contain_text("Rate1 USD = 0.9154 EUR")
    expect(quote).to_contain_text("market rate 0.92")
    expect(page.locator("#quote-receive")).to_have_text("€36.61")
    received = page.locator("#quote-receive").inner_text()
    shot(page, "money-convert-quote-1280")
    at_phone_width(page, "money-convert-quote")
    page.get_by_role("button", name="Confirm").click()
    page.wait_for_url(f"{base}/room/wallets/{eur.pk}/")
    expect(page.get_by_text(f"Converted $40.00 to {received}.")).to_be_visible()
    expect(page.locator(".wallet-title .wallet-balance")).to_contain_text(received)
    shot(page, "money-wallet-eur-1280")
    conversion = Conversion.objects.get(user=trader)
    assert conversion.status == Conversion.EXECUTED
    assert (conversion.sell_amount, conversion.fee, conversion.buy_amount) == (4000, 0, 3661)
    assert balance(trader, "EUR") == conversion.buy_amount == 3661
    assert balance(trader, "USD") == 5720
    page.goto(f"{base}/room/wallets/convert/")
    shot(page, "money-convert-after-1280")
    at_phone_width(page, "money-convert-after")

    # --- Ask to withdraw by bank wire --------------------------------------------------
    nav.get_by_role("link", name="Withdraw").click()
    page.wait_for_url(f"{base}/room/wallets/withdraw/")
    summary = page.locator("#withdraw-quote")

    def choose(label: str, value: str) -> None:
        """A menu that asks the server for a new preview (htmx), which may
        swap in a new method menu: wait until it is in place, as a person
        would before choosing the next thing."""
        with page.expect_response(re.compile(r"/room/wallets/withdraw/preview/")):
            page.get_by_label(label).select_option(value)
        htmx_settled(page)

    # 20 EUR is below the bank wire's minimum: said before anything is sent.
    choose("From wallet", str(eur.pk))
    choose("Withdrawal method", str(wire.pk))
    page.get_by_label("Amount").fill("20")
    expect(summary).to_contain_text("The minimum with Bank wire is 50.00 EUR.")
    shot(page, "money-withdraw-minimum-1280")
    # 50 USD, then: no fee, all of it reserved at once.
    choose("From wallet", str(usd.pk))
    expect(page.get_by_label("Withdrawal method")).to_have_value(str(wire.pk))
    page.get_by_label("Amount").fill("50")
    expect(summary).to_contain_text("You receive$50.00")
    expect(summary).to_contain_text("Fee$0.00")
    expect(summary).to_contain_text("Reserved now$50.00")
    expect(summary).to_contain_text("Wallet after$7.20")
    page.get_by_label("IBAN").fill(IBAN)
    page.get_by_label("Account holder").fill(HOLDER)
    shot(page, "money-withdraw-form-1280")
    at_phone_width(page, "money-withdraw-form")
    page.get_by_role("button", name="Request withdrawal").click()
    page.wait_for_url(re.compile(r"/room/wallets/withdraw/[^/]+/$"))
    withdrawal = Withdrawal.objects.get(user=trader)
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Withdrawal {withdrawal.reference}")
    expect(page.locator(".withdraw-status")).to_have_text("Pending approval")
    expect(page.get_by_text("$50.00 is reserved from your USD wallet")).to_be_visible()
    expect(page.get_by_text("GB33 BUKB 2020 1555 5555 55")).to_be_visible()
    shot(page, "money-withdrawal-pending-1280")
    # Reserved at once.
    assert withdrawal.status == Withdrawal.PENDING
    assert (withdrawal.amount, withdrawal.fee, withdrawal.method_id) == (5000, 0, wire.pk)
    assert withdrawal.destination == {"iban": IBAN, "account_holder": HOLDER}
    assert balance(trader, "USD") == 720
    detail_url = page.url

    # --- Finance approves and pays it in the admin -------------------------------
    staff_context, admin = new_page(browser, DESKTOP)
    sign_in(admin, base, finance.email)
    admin.wait_for_url(re.compile(r"/accounts/2fa/$"))
    enter_code(admin, totp_code(device))
    admin.wait_for_url(re.compile(rf"^{re.escape(base)}/(room/|admin/)?$"))
    admin.goto(f"{base}/admin/payments/withdrawal/")
    row = admin.locator("#result_list tbody tr", has_text=withdrawal.reference)
    expect(row).to_contain_text(trader.email)
    expect(row).to_contain_text("50.00 USD")
    shot(admin, "money-admin-withdrawals-1280")
    row.get_by_role("link", name=withdrawal.reference).click()
    decisions = admin.locator("#withdrawal-decisions")
    expect(decisions.get_by_role("heading")).to_have_text(re.compile("Status: pending", re.I))
    shot(admin, "money-admin-withdrawal-pending-1280")
    admin.get_by_role("button", name="Approve").click()
    expect(admin.get_by_text(f"{withdrawal.reference} approved.")).to_be_visible()
    expect(decisions.get_by_role("heading")).to_have_text(re.compile("Status: approved", re.I))
    shot(admin, "money-admin-withdrawal-approved-1280")
    admin.get_by_label("Payout reference").fill(PAYOUT_REFERENCE)
    admin.get_by_role("button", name="Mark paid").click()
    paid = f"{withdrawal.reference} marked paid (payout reference {PAYOUT_REFERENCE})"
    expect(admin.get_by_text(paid)).to_be_visible()
    expect(decisions.get_by_role("heading")).to_have_text(re.compile("Status: paid", re.I))
    shot(admin, "money-admin-withdrawal-paid-1280")
    staff_context.close()

    # --- The trader sees it paid ---------------------------------------------------
    page.goto(detail_url)
    expect(page.locator(".withdraw-status")).to_have_text("Paid")
    expect(page.get_by_text(f"Payout reference: {PAYOUT_REFERENCE}")).to_be_visible()
    shot(page, "money-withdrawal-paid-1280")
    nav.get_by_role("link", name="Wallets").click()
    cards = page.locator(".wallet-card")
    expect(cards.filter(has_text="USD").locator(".wallet-balance")).to_contain_text("$7.20")
    expect(cards.filter(has_text="EUR").locator(".wallet-balance")).to_contain_text("€36.61")
    shot(page, "money-wallets-after-1280")
    desktop.close()

    # --- The books -----------------------------------------------------------------
    withdrawal.refresh_from_db()
    assert withdrawal.status == Withdrawal.PAID
    assert withdrawal.payout_reference == PAYOUT_REFERENCE
    assert withdrawal.approvals.get().approver == finance
    check = ledger_check()
    assert check.ok, check
    assert balance(trader, "USD") == 9720 - 4000 - 5000 == 720
    assert balance(trader, "EUR") == 3661
    assert posted("fees", "USD") == 280
    assert posted("psp:sandbox", "USD") == -10000
    assert posted("conversion", "USD") == 4000
    assert posted("conversion", "EUR") == -3661
    assert posted("withdrawals_pending", "USD") == 0
    assert posted("psp:bank-wire", "USD") == 5000
