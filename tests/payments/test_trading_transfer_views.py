"""The trader's transfer pages between wallets and live trading accounts:
who may open them, the form's errors in words (nothing moved), the preview
(across currencies too), confirming through the demo platform, a double
submit, a policy's refusal, the status page and its polling, the wallet
history's lines, query counts."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from html import unescape

import pytest
from django.test import TestCase

from accounts.models import DemoPlatformAccount, Platform, TradingAccount
from accounts.platforms import GATEWAYS
from backoffice import policies
from payments import services
from payments.models import TradingTransfer
from payments.selectors import ledger_check
from payments.services.rates import rate_set_manual
from payments.services.trading import trading_transfer_in, trading_transfer_process
from tests.factories import TraderFactory, open_trading_account
from tests.payments.test_trading_transfers import ScriptedGateway, fund

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def page_url(account: TradingAccount) -> str:
    return f"/room/accounts/{account.pk}/transfer/"


def preview_url(account: TradingAccount) -> str:
    return f"/room/accounts/{account.pk}/transfer/preview/"


def detail_url(transfer: TradingTransfer) -> str:
    return f"/room/accounts/transfers/{transfer.reference}/"


def text(response) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def key_of(response) -> str:
    return re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', response.content.decode())[
        1
    ]


def balance(wallet) -> int:
    wallet.refresh_from_db()
    return wallet.balance


def platform_balance(account: TradingAccount) -> int:
    return DemoPlatformAccount.objects.get(login=account.login).balance


@pytest.fixture
def signed_in(client, trader):
    client.force_login(trader)
    return client


@pytest.fixture
def scripted(monkeypatch):
    """The demo platform behind a network edge that misbehaves on cue
    (``tests.payments.test_trading_transfers.ScriptedGateway``)."""
    monkeypatch.setitem(
        GATEWAYS._paths, "scripted", "tests.payments.test_trading_transfers.ScriptedGateway"
    )
    monkeypatch.setitem(GATEWAYS._loaded, "scripted", ScriptedGateway)
    ScriptedGateway.script, ScriptedGateway.calls, ScriptedGateway.lookups = [], [], []
    Platform.objects.filter(identifier="demo").update(kind="scripted")
    return ScriptedGateway


@pytest.fixture
def usd(trader):
    return fund(services.wallet_open(user=trader, currency="USD"), 500_000)


@pytest.fixture
def account(trader):
    return open_trading_account(trader)


def confirm(http, account, wallet, amount, *, direction="in", key=None):
    """Post the form as the page does; the platform is called after commit,
    as in production."""
    data = {
        "direction": direction,
        "wallet": wallet.pk,
        "amount": amount,
        "idempotency_key": key or str(uuid.uuid4()),
    }
    with TestCase.captureOnCommitCallbacks(execute=True):
        return http.post(page_url(account), data)


def make_transfer(trader, account, wallet, amount="250.00", *, run=True) -> TradingTransfer:
    with TestCase.captureOnCommitCallbacks(execute=run):
        transfer = trading_transfer_in(
            user=trader,
            account=account,
            wallet=wallet,
            amount=Decimal(amount),
            idempotency_key=str(uuid.uuid4()),
        )
    return TradingTransfer.objects.get(pk=transfer.pk)


# --- Who may open the page ----------------------------------------------------------------


def test_the_pages_need_sign_in(client, trader, account, usd):
    transfer = make_transfer(trader, account, usd)
    for url in (page_url(account), detail_url(transfer), detail_url(transfer) + "status/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_page_shows_the_account_and_the_form(signed_in, account, usd):
    TradingAccount.objects.filter(pk=account.pk).update(balance=123_456, free_margin=100_000)
    response = signed_in.get(page_url(account))
    assert response.status_code == 200
    page = text(response)
    assert f"Transfer · account {account.login}" in page
    assert "Standard USD" in page and "$1,234.56" in page and "$1,000.00" in page
    assert "As the platform last reported them" in page
    assert "USD wallet · $5,000.00" in page
    assert f"To trading account {account.login}" in page and "To a wallet" in page
    assert "In USD, the currency of the wallet you transfer from." in page
    assert "The first transfer to this account must be at least 100 USD." in page
    uuid.UUID(key_of(response))  # a fresh key with every page
    assert key_of(signed_in.get(page_url(account))) != key_of(response)


def test_direction_out_from_the_query(signed_in, account, usd):
    page = signed_in.get(page_url(account), {"direction": "out"}).content.decode()
    assert re.search(r'value="out"[^>]*checked', page)
    assert "In USD, the trading account&#x27;s currency." in page


def test_another_traders_account_is_not_found(signed_in, usd):
    other = open_trading_account(TraderFactory())
    assert signed_in.get(page_url(other)).status_code == 404
    response = signed_in.post(
        page_url(other),
        {"direction": "in", "wallet": usd.pk, "amount": "150", "idempotency_key": uuid.uuid4()},
    )
    assert response.status_code == 404
    assert signed_in.post(preview_url(other), {"amount": "1"}, **HTMX).status_code == 404
    assert not TradingTransfer.objects.exists()


def test_a_demo_account_is_not_found(signed_in, trader, usd):
    demo = open_trading_account(trader, type_name="Demo USD")
    assert signed_in.get(page_url(demo)).status_code == 404
    assert signed_in.get("/room/accounts/999999/transfer/").status_code == 404


def test_an_archived_account_shows_its_transfers_but_takes_none(signed_in, trader, account, usd):
    done = make_transfer(trader, account, usd, "150.00")
    TradingAccount.objects.filter(pk=account.pk).update(status=TradingAccount.ARCHIVED)
    response = signed_in.get(page_url(account))
    page = text(response)
    assert response.status_code == 200
    assert "This account is archived" in page and done.reference in page
    assert 'name="amount"' not in response.content.decode()
    response = confirm(signed_in, account, usd, "100")
    assert response.status_code == 400 and "archived" in text(response)
    assert TradingTransfer.objects.count() == 1 and balance(usd) == 485_000


# --- Bad input: said in words, nothing moved ------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"amount": ""}, "Enter an amount."),
        ({"amount": "abc"}, "Enter the amount as a number"),
        ({"amount": "0"}, "Enter an amount greater than zero."),
        ({"amount": "-5"}, "Enter an amount greater than zero."),
        ({"amount": "100.001"}, "USD amounts have at most 2 decimal places."),
        ({"amount": "1" * 30}, "The amount is too large."),
        ({"wallet": ""}, "Choose a wallet."),
        ({"wallet": "999999"}, "Choose one of your wallets."),
        ({"direction": "sideways"}, "Choose where the money goes."),
        ({"idempotency_key": "not-a-key"}, "This form has expired"),
        ({"amount": "6000"}, "Insufficient funds: your USD wallet holds $5,000.00"),
        ({"amount": "50"}, "The first transfer to this account must be at least 100 USD."),
    ],
)
def test_bad_input_is_refused_in_words_and_nothing_moves(signed_in, account, usd, change, message):
    data = {"direction": "in", "wallet": usd.pk, "amount": "150", "idempotency_key": uuid.uuid4()}
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = signed_in.post(page_url(account), {**data, **change})
    assert response.status_code == 400
    assert message in text(response)
    assert not TradingTransfer.objects.exists()
    assert balance(usd) == 500_000 and platform_balance(account) == 0
    assert ledger_check().ok


def test_another_traders_wallet_is_not_a_choice(signed_in, account, usd):
    theirs = fund(services.wallet_open(user=TraderFactory(), currency="USD"), 100_000)
    response = confirm(signed_in, account, theirs, "150")
    assert response.status_code == 400 and "Choose one of your wallets." in text(response)
    assert "$1,000.00" not in text(response)  # their balance is never shown
    assert balance(theirs) == 100_000 and not TradingTransfer.objects.exists()


def test_transfer_out_beyond_the_free_margin_is_refused(signed_in, trader, account, usd):
    make_transfer(trader, account, usd, "200.00")
    response = confirm(signed_in, account, usd, "500", direction="out")
    assert response.status_code == 400 and "free margin" in text(response)
    assert TradingTransfer.objects.count() == 1


# --- Confirming ---------------------------------------------------------------------------


def test_confirm_moves_the_money_and_leads_to_the_status_page(signed_in, account, usd):
    key = key_of(signed_in.get(page_url(account)))
    response = confirm(signed_in, account, usd, "250", key=key)
    transfer = TradingTransfer.objects.get()
    assert response.status_code == 302 and response["Location"] == detail_url(transfer)
    assert transfer.status == TradingTransfer.COMPLETED and transfer.direction == "in"
    assert balance(usd) == 475_000 and platform_balance(account) == 25_000
    page = text(signed_in.get(response["Location"]))
    assert f"Transfer {transfer.reference}: $250.00 from your USD wallet" in page  # the message
    assert "Completed" in page and f"$250.00 arrived in trading account {account.login}." in page
    assert "We are confirming" not in page
    assert 'hx-trigger="every 2s"' not in signed_in.get(detail_url(transfer)).content.decode()


def test_confirm_a_transfer_out(signed_in, trader, account, usd):
    make_transfer(trader, account, usd, "250.00")
    response = confirm(signed_in, account, usd, "100", direction="out")
    transfer = TradingTransfer.objects.get(direction="out")
    assert response["Location"] == detail_url(transfer)
    assert transfer.status == TradingTransfer.COMPLETED
    assert balance(usd) == 485_000 and platform_balance(account) == 15_000
    page = text(signed_in.get(detail_url(transfer)))
    assert "$100.00 arrived in your USD wallet." in page
    assert f"From trading account {account.login} to your USD wallet" in page


def test_a_double_submit_makes_one_transfer(signed_in, account, usd):
    key = str(uuid.uuid4())
    first = confirm(signed_in, account, usd, "250", key=key)
    second = confirm(signed_in, account, usd, "250", key=key)
    transfer = TradingTransfer.objects.get()
    assert first["Location"] == second["Location"] == detail_url(transfer)
    page = text(signed_in.get(detail_url(transfer)))
    assert f"Transfer {transfer.reference} was already made; nothing more was moved." in page
    assert balance(usd) == 475_000 and platform_balance(account) == 25_000


def test_a_reused_key_with_other_figures_moves_nothing_and_gives_a_new_key(signed_in, account, usd):
    key = str(uuid.uuid4())
    confirm(signed_in, account, usd, "250", key=key)
    response = confirm(signed_in, account, usd, "300", key=key)
    assert response.status_code == 409
    assert "This form was already used for another transfer." in text(response)
    assert key_of(response) != key
    assert TradingTransfer.objects.count() == 1 and balance(usd) == 475_000


def test_a_policy_refusal_is_shown_with_what_unlocks_it(signed_in, account, usd):
    def refuse(user, **context):
        return policies.Decision(
            False,
            "Trading transfers are blocked while we review your documents.",
            unlock="Upload your documents",
            unlock_url="room:profile",
        )

    policies.register(policies.TRANSFER, "test-refuse", refuse)
    try:
        response = confirm(signed_in, account, usd, "250")
    finally:
        policies.unregister(policies.TRANSFER, "test-refuse")
    assert response.status_code == 400
    page = response.content.decode()
    assert "blocked while we review your documents." in page
    assert '<a href="/room/profile/">Upload your documents</a>' in page
    assert "Nothing was transferred." in page
    assert not TradingTransfer.objects.exists() and balance(usd) == 500_000


def test_a_refusal_without_a_page_is_said_in_words(signed_in, account, usd):
    policies.register(
        policies.TRANSFER,
        "test-refuse",
        lambda user, **c: policies.Decision(False, "Not now.", unlock="Call us.", unlock_url="x:y"),
    )
    try:
        response = confirm(signed_in, account, usd, "250")
    finally:
        policies.unregister(policies.TRANSFER, "test-refuse")
    assert response.status_code == 400 and "Not now. Call us." in text(response)


# --- The preview --------------------------------------------------------------------------


def preview(http, account, wallet, amount, direction="in"):
    data = {"direction": direction, "wallet": wallet.pk, "amount": amount}
    return http.post(preview_url(account), data, **HTMX)


def test_preview_in_the_same_currency(signed_in, account, usd):
    response = preview(signed_in, account, usd, "250")
    assert response.status_code == 200
    page = text(response)
    assert "Leaves your USD wallet $250.00" in page
    assert f"Arrives in account {account.login} $250.00" in page
    assert "Rate" not in page
    assert "must be at least 100 USD" in page
    body = response.content.decode()
    assert (
        'id="tt-preview"' in body and 'id="tt-amount-unit" aria-hidden="true" hx-swap-oob' in body
    )
    assert "<html" not in body
    short = preview(signed_in, account, usd, "50").content.decode()
    assert "tt-note is-short" in short
    assert not TradingTransfer.objects.exists()


def test_preview_across_currencies_shows_the_rate_and_fee(signed_in, trader, account):
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0800"))
    eur = fund(services.wallet_open(user=trader, currency="EUR"), 100_000)
    page = text(preview(signed_in, account, eur, "200"))
    assert "Leaves your EUR wallet €200.00" in page
    assert f"Arrives in account {account.login} $214.92" in page  # as the service computes
    assert "Rate 1 EUR = 1.0746 USD market rate 1.08, less our 0.5 % markup" in page
    assert "Conversion fee none" in page
    out = text(preview(signed_in, account, eur, "108", "out"))
    assert f"Leaves account {account.login} $108.00" in out
    assert "Arrives in your EUR wallet €" in out
    assert "1 USD = 0.921296 EUR" in out  # rounded to 6 places for people
    assert "In USD, the trading account's currency." in out  # the unit follows the direction


def test_preview_without_a_rate_says_so(signed_in, trader, account):
    gbp = fund(services.wallet_open(user=trader, currency="GBP"), 100_000)
    page = text(preview(signed_in, account, gbp, "200"))
    assert "No exchange rate between GBP and USD is available at the moment." in page


def test_preview_warns_about_what_the_wallet_holds_and_bad_amounts(signed_in, account, usd):
    assert "More than your USD wallet holds ($5,000.00)." in text(
        preview(signed_in, account, usd, "6000")
    )
    assert "USD amounts have at most 2 decimal places." in text(
        preview(signed_in, account, usd, "1.001")
    )
    empty = text(preview(signed_in, account, usd, ""))
    assert "Enter an amount to see what leaves and what arrives." in empty


def test_preview_without_javascript_renders_the_page(signed_in, account, usd):
    response = signed_in.post(
        preview_url(account), {"direction": "in", "wallet": usd.pk, "amount": "120"}
    )
    assert response.status_code == 200
    page = text(response)
    assert "Transfer · account" in page and "Leaves your USD wallet $120.00" in page
    assert not TradingTransfer.objects.exists()


def test_no_wallet_in_the_accounts_currency_offers_to_open_one(signed_in, trader, account):
    fund(services.wallet_open(user=trader, currency="EUR"), 100_000)
    page = signed_in.get(page_url(account)).content.decode()
    assert "You have no USD wallet" in page
    assert 'href="/room/wallets/">Open a USD wallet</a>' in page


def test_no_wallet_at_all(signed_in, account):
    response = signed_in.get(page_url(account))
    assert "You need a wallet first" in text(response)
    assert 'name="amount"' not in response.content.decode()


# --- The status page ------------------------------------------------------------------------


def test_an_open_transfer_polls_until_it_is_settled(signed_in, trader, account, usd):
    transfer = make_transfer(trader, account, usd, run=False)  # the task has not run yet
    assert transfer.status == TradingTransfer.PENDING
    response = signed_in.get(detail_url(transfer))
    page = text(response)
    assert "We are confirming with the trading platform; nothing is lost." in page
    assert "$250.00 has left your USD wallet" in page and "Pending" in page
    status_url = detail_url(transfer) + "status/"
    assert f'hx-get="{status_url}" hx-trigger="every 2s"' in response.content.decode()

    fragment = signed_in.get(status_url, **HTMX)
    body = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in body and 'hx-trigger="every 2s"' in body
    assert fragment["Cache-Control"] == "no-store"

    trading_transfer_process(transfer_id=transfer.pk)
    body = signed_in.get(status_url, **HTMX).content.decode()
    assert "hx-trigger" not in body and "Completed" in body
    # Without htmx the status address leads to the page.
    assert signed_in.get(status_url)["Location"] == detail_url(transfer)


def test_a_refused_transfer_says_why_and_that_the_money_is_back(
    signed_in, trader, account, usd, scripted
):
    scripted.script = ["refuse"]
    response = confirm(signed_in, account, usd, "250")
    transfer = TradingTransfer.objects.get()
    assert response["Location"] == detail_url(transfer)
    page = text(signed_in.get(detail_url(transfer)))
    assert "Failed · money returned" in page
    assert "The reason: Account disabled for trading." in page
    assert "The money is back in your USD wallet ($250.00)." in page
    assert balance(usd) == 500_000


def test_another_traders_transfer_is_not_found(client, trader, account, usd):
    transfer = make_transfer(trader, account, usd)
    client.force_login(TraderFactory())
    assert client.get(detail_url(transfer)).status_code == 404
    assert client.get(detail_url(transfer) + "status/", **HTMX).status_code == 404
    assert client.get("/room/accounts/transfers/TT-NOSUCHONE/").status_code == 404


def test_the_page_lists_the_accounts_recent_transfers_newest_first(signed_in, trader, account, usd):
    made = [make_transfer(trader, account, usd, f"{100 + i}.00") for i in range(12)]
    other = open_trading_account(trader)
    elsewhere = make_transfer(trader, other, usd, "100.00")
    page = signed_in.get(page_url(account)).content.decode()
    shown = re.findall(r">(TT-[A-Z0-9]+)</a>", page)
    assert shown == [t.reference for t in reversed(made)][:10]
    assert elsewhere.reference not in page


def test_a_converted_transfer_shows_its_rate_and_fee(signed_in, trader, account):
    rate_set_manual(actor=None, base="EUR", quote="USD", rate=Decimal("1.0800"))
    eur = fund(services.wallet_open(user=trader, currency="EUR"), 100_000)
    transfer = make_transfer(trader, account, eur, "200.00")
    page = text(signed_in.get(detail_url(transfer)))
    assert "Rate 1 EUR = 1.0746 USD" in page
    assert "Taken from the wallet €200.00" in page and "For the account $214.92" in page


# --- The wallet's history -------------------------------------------------------------------


def test_the_wallet_history_reads_well(signed_in, trader, account, usd, scripted):
    done = make_transfer(trader, account, usd, "250.00")
    pending = make_transfer(trader, account, usd, "10.00", run=False)
    scripted.script = ["refuse"]
    refused = make_transfer(trader, account, usd, "20.00")
    page = text(signed_in.get(f"/room/wallets/{usd.pk}/"))
    assert f"To trading account {account.login}: $250.00 ({done.reference})" in page
    assert "To trading account" in page  # the type
    assert "In progress" in page and "Failed, returned" in page
    assert pending.reference in page and refused.reference in page
    assert "Reversal" in page
    progress = text(signed_in.get(f"/room/wallets/{usd.pk}/", {"status": "in_progress"}))
    assert pending.reference in progress and done.reference not in progress
    returned = text(signed_in.get(f"/room/wallets/{usd.pk}/", {"status": "returned"}))
    assert refused.reference in returned and pending.reference not in returned
    typed = text(signed_in.get(f"/room/wallets/{usd.pk}/", {"type": "trading_transfer_in"}))
    assert done.reference in typed and "Reversal of" not in typed


# --- Query counts ---------------------------------------------------------------------------


def test_page_query_counts_do_not_grow_with_transfers(
    signed_in, trader, account, usd, settings, django_assert_max_num_queries
):
    session = 1 if settings.SESSION_ENGINE.endswith(".db") else 0
    transfer = make_transfer(trader, account, usd, "150.00")
    signed_in.get(page_url(account))  # warm the brand cache
    # User, the account (platform, type), wallets with currencies, the minimum's
    # check, recent transfers with their wallets.
    with django_assert_max_num_queries(5 + session):
        assert signed_in.get(page_url(account)).status_code == 200
    for i in range(8):
        make_transfer(trader, account, usd, f"{10 + i}.00")
    with django_assert_max_num_queries(5 + session):
        assert signed_in.get(page_url(account)).status_code == 200
    # User, the transfer with its wallet, currency and account.
    with django_assert_max_num_queries(2 + session):
        signed_in.get(detail_url(transfer))
    with django_assert_max_num_queries(2 + session):
        signed_in.get(detail_url(transfer) + "status/", **HTMX)
    with django_assert_max_num_queries(5 + session):
        preview(signed_in, account, usd, "100")
