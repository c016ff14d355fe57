"""The trader's trading-account pages: opening (the password shown once and
kept nowhere), leverage, password reset with and without 2FA, refresh,
another trader's ids, archived accounts, policy refusals, query counts."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.hashers import check_password
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client as HttpClient
from django.urls import NoReverseMatch, reverse

from accounts.models import AccountType, DemoPlatformAccount, TradingAccount
from backoffice import policies
from backoffice.models import Event
from tests.factories import TraderFactory, enable_totp, open_trading_account, totp_code

pytestmark = pytest.mark.django_db

LIST = "/room/accounts/"
OPEN = "/room/accounts/open/"


@pytest.fixture
def signed_in(client, trader):
    client.force_login(trader)
    return client


def account_type(name: str) -> AccountType:
    return AccountType.objects.get(platform__identifier="demo", name=name)


def request_id(http) -> str:
    page = http.get(LIST).content.decode()
    return re.search(r'name="request_id" value="([0-9a-f-]{36})"', page).group(1)


def open_form(http, name: str, leverage: str | int = "") -> dict:
    return {
        "account_type": account_type(name).pk,
        "leverage": leverage,
        "request_id": request_id(http),
    }


def shown(page: str, element_id: str) -> str:
    return unescape(re.search(rf'id="{element_id}"[^>]*>([^<]+)<', page).group(1))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


def platform_row(account: TradingAccount) -> DemoPlatformAccount:
    return DemoPlatformAccount.objects.get(platform=account.platform, login=account.login)


def cached_blobs() -> list[bytes]:
    store = cache._cache
    if isinstance(store, dict):  # LocMemCache: pickled values
        return [bytes(v) for v in store.values()]
    client = store.get_client(write=False)  # RedisCache
    return [client.get(key) or b"" for key in client.keys("*")]


# --- The list and opening ---------------------------------------------------------------


def test_pages_need_sign_in(client, trader):
    account = open_trading_account(trader)
    for url in (LIST, f"/room/accounts/{account.pk}/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert client.post(OPEN, {}).status_code == 302
    assert TradingAccount.objects.count() == 1


def test_empty_state_invites_to_open_one_and_offers_live_and_demo_types(signed_in):
    page = signed_in.get(LIST).content.decode()
    assert "No trading account yet" in page
    assert "Live accounts" in page and "Demo accounts" in page
    for name in ("Demo USD", "Standard USD", "Standard EUR"):
        assert name in page
    assert "Minimum first transfer 100 USD" in page
    assert "1:30, 1:50, 1:100, 1:200, 1:500" in page
    assert 'aria-current="page"' in page and "Trading accounts" in page


def test_inactive_types_and_platforms_are_not_offered(signed_in):
    AccountType.objects.filter(name="Standard EUR").update(is_active=False)
    page = signed_in.get(LIST).content.decode()
    assert "Standard EUR" not in page
    form = open_form(signed_in, "Standard USD")
    form["account_type"] = account_type("Standard EUR").pk
    response = signed_in.post(OPEN, form)
    assert response.status_code == 400
    assert "Choose one of the account types offered." in response.content.decode()
    assert not TradingAccount.objects.exists()


def test_opening_a_demo_account_shows_the_password_once_and_keeps_it_nowhere(signed_in, trader):
    response = signed_in.post(OPEN, open_form(signed_in, "Demo USD", 200))
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    account = TradingAccount.objects.get(user=trader)
    assert account.is_demo and account.leverage == 200 and account.balance == 1_000_000
    assert shown(page, "ta-login") == account.login
    password = shown(page, "ta-password")
    investor = shown(page, "ta-investor")
    assert "it will not be shown again" in page
    assert "10,000.00 USD of virtual money" in page
    # It is the platform's password.
    assert check_password(password, platform_row(account).password_hash)
    # ... and nowhere else: not in the URL, the session, the messages, the
    # cache, the events, nor any later page.
    assert password not in f"{response.request['PATH_INFO']}?{response.request['QUERY_STRING']}"
    assert not response.has_header("Location")
    session = Session.objects.get(session_key=signed_in.session.session_key)
    assert password not in str(session.get_decoded())
    assert all(password not in str(c.value) for c in signed_in.cookies.values())
    assert all(password.encode() not in blob for blob in cached_blobs())
    for event in Event.objects.all():
        assert password not in str(event.payload) and investor not in str(event.payload)
    for url in (LIST, f"/room/accounts/{account.pk}/"):
        later = signed_in.get(url).content.decode()
        assert password not in later and investor not in later


def test_reloading_the_result_opens_no_second_account(signed_in, trader):
    form = open_form(signed_in, "Demo USD")
    assert signed_in.post(OPEN, form).status_code == 200
    again = signed_in.post(OPEN, form, follow=True)
    assert TradingAccount.objects.filter(user=trader).count() == 1
    assert "This account was opened already" in again.content.decode()
    assert 'id="ta-password"' not in again.content.decode()


def test_opening_a_live_account_uses_the_types_default_leverage(signed_in, trader):
    response = signed_in.post(OPEN, open_form(signed_in, "Standard USD"))
    assert response.status_code == 200
    account = TradingAccount.objects.get(user=trader)
    assert not account.is_demo and account.leverage == 100 and account.balance == 0
    page = response.content.decode()
    assert "Your new live account is open" in page
    assert "the first transfer is at least 100 USD" in page


def test_server_name_from_the_platform_settings_is_shown(signed_in):
    from accounts.models import Platform

    Platform.objects.filter(identifier="demo").update(settings={"server_name": "Broker-Demo"})
    page = signed_in.post(OPEN, open_form(signed_in, "Demo USD")).content.decode()
    assert shown(page, "ta-server") == "Broker-Demo"


def test_leverage_outside_the_types_choices_is_refused(signed_in):
    response = signed_in.post(OPEN, open_form(signed_in, "Standard USD", 1000))
    assert response.status_code == 400
    assert "Standard USD offers these leverages: 1:30, 1:50, 1:100, 1:200, 1:500." in (
        response.content.decode()
    )
    AccountType.objects.filter(name="Demo USD").update(leverage_choices=[10, 20])
    response = signed_in.post(OPEN, open_form(signed_in, "Demo USD", 500))
    assert response.status_code == 400
    assert "Demo USD offers these leverages: 1:10, 1:20." in response.content.decode()
    assert not TradingAccount.objects.exists()


def test_a_type_must_be_chosen_and_the_form_id_present(signed_in):
    response = signed_in.post(OPEN, {"request_id": request_id(signed_in)})
    assert response.status_code == 400
    assert "Choose an account type." in response.content.decode()
    form = open_form(signed_in, "Demo USD")
    del form["request_id"]
    response = signed_in.post(OPEN, form)
    assert response.status_code == 400
    assert "reload the page and try again" in response.content.decode()
    assert not TradingAccount.objects.exists()


def test_policy_refusal_says_what_unlocks_it(signed_in, trader):
    def refuse(user, **context):
        return policies.Decision(
            False, "Verify your identity first.", unlock="Verify now", unlock_url="room:profile"
        )

    policies.register("open_live_account", "test-refuse", refuse)
    try:
        response = signed_in.post(OPEN, open_form(signed_in, "Standard USD"))
    finally:
        policies.unregister("open_live_account", "test-refuse")
    assert response.status_code == 400
    page = response.content.decode()
    assert "Verify your identity first." in page
    assert '<a href="/room/profile/">Verify now</a>' in page
    assert not TradingAccount.objects.filter(user=trader).exists()


def test_the_account_limit_is_a_message_not_an_error(signed_in, trader, settings):
    settings.TRADING_ACCOUNTS_PER_CLIENT = 1
    open_trading_account(trader, type_name="Demo USD")
    response = signed_in.post(OPEN, open_form(signed_in, "Demo USD"))
    assert response.status_code == 400
    assert "You can hold at most 1 trading accounts." in response.content.decode()


def test_leverage_menu_follows_the_chosen_type(signed_in):
    AccountType.objects.filter(name="Demo USD").update(
        leverage_choices=[10, 20], default_leverage=20
    )
    url = reverse("room:trading_account_open_leverage")
    demo = account_type("Demo USD").pk
    assert signed_in.get(url, {"account_type": demo}).status_code == 302  # not htmx
    page = signed_in.get(url, {"account_type": demo, "leverage": "10"}, HTTP_HX_REQUEST="true")
    text = page.content.decode()
    assert 'id="open-leverage"' in text and "<html" not in text
    assert re.findall(r'<option value="(\d*)"', text) == ["", "10", "20"]
    assert '<option value="10" selected>' in text
    assert "The type&#x27;s default (1:20)" in text


def test_the_list_shows_every_account_with_its_figures(signed_in, trader):
    demo = open_trading_account(trader, type_name="Demo USD", leverage=500)
    live = open_trading_account(trader)
    other = open_trading_account(TraderFactory(), type_name="Demo USD")
    page = signed_in.get(LIST).content.decode()
    assert demo.login in page and live.login in page and other.login not in page
    assert "10,000.00" in page and "1:500" in page
    assert "Demo" in page and "Live" in page
    assert "Updated <time" in page


def test_list_query_count_does_not_grow_with_accounts(
    signed_in, trader, django_assert_max_num_queries, settings
):
    settings.TRADING_ACCOUNTS_PER_CLIENT = 20
    open_trading_account(trader, type_name="Demo USD")
    signed_in.get(LIST)  # warm the brand cache
    # Session, user, the accounts (with platform and type), the account types.
    with django_assert_max_num_queries(4):
        assert signed_in.get(LIST).status_code == 200
    for _ in range(5):
        open_trading_account(trader, type_name="Demo USD")
        open_trading_account(trader)
    with django_assert_max_num_queries(4):
        page = signed_in.get(LIST).content.decode()
    assert page.count('class="card ta-card') == 11


# --- One account --------------------------------------------------------------------


def detail(account: TradingAccount) -> str:
    return f"/room/accounts/{account.pk}/"


def test_detail_of_a_live_account(signed_in, trader, django_assert_max_num_queries):
    account = open_trading_account(trader)
    signed_in.get(detail(account))
    # Session, user, the account, the trader's 2FA device.
    with django_assert_max_num_queries(4):
        page = signed_in.get(detail(account)).content.decode()
    assert f"Account {account.login}" in page
    assert "Change leverage" in page and "Reset trading password" in page
    assert 'name="code"' not in page  # no 2FA: no code asked
    try:
        url = reverse("trading_transfers:transfer", args=[account.pk])
    except NoReverseMatch:
        assert "Transfer in" not in page  # the page does not exist yet: no dead link
    else:
        assert f'href="{url}?direction=in"' in page and f'href="{url}?direction=out"' in page
    try:
        history = reverse("room:trading_history")
    except NoReverseMatch:
        assert "Deals of this account" not in page
    else:
        assert f'href="{history}?account={account.pk}"' in page


def test_demo_account_has_no_transfers(signed_in, trader):
    account = open_trading_account(trader, type_name="Demo USD")
    page = signed_in.get(detail(account)).content.decode()
    assert "Virtual money, no transfers" in page
    assert "Transfer in" not in page


def test_leverage_change_within_the_choices(signed_in, trader):
    account = open_trading_account(trader)
    response = signed_in.post(f"{detail(account)}leverage/", {"leverage": "500"}, follow=True)
    assert f"The leverage of account {account.login} is now 1:500." in messages_of(response)
    account.refresh_from_db()
    assert account.leverage == 500 and platform_row(account).leverage == 500
    assert Event.objects.filter(name="trading_account.leverage_changed").count() == 1


def test_leverage_outside_the_choices_changes_nothing(signed_in, trader):
    account = open_trading_account(trader)
    for value in ("1000", "-1", "abc", ""):
        response = signed_in.post(f"{detail(account)}leverage/", {"leverage": value}, follow=True)
        assert response.redirect_chain[-1][0] == detail(account)
        assert messages_of(response)
    account.refresh_from_db()
    assert account.leverage == 100 and platform_row(account).leverage == 100


def test_password_reset_without_two_factor(signed_in, trader):
    account = open_trading_account(trader)
    before = platform_row(account).password_hash
    response = signed_in.post(f"{detail(account)}password/")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    password = shown(page, "ta-password")
    assert "it will not be shown again" in page and 'id="ta-investor"' not in page
    row = platform_row(account)
    assert row.password_hash != before and check_password(password, row.password_hash)
    assert password not in signed_in.get(detail(account)).content.decode()
    assert password not in str(Session.objects.get().get_decoded())


def test_password_reset_with_two_factor_needs_a_code(signed_in, trader):
    device = enable_totp(trader)
    account = open_trading_account(trader)
    before = platform_row(account).password_hash
    page = signed_in.get(detail(account)).content.decode()
    assert 'name="code"' in page
    url = f"{detail(account)}password/"
    for code in ("", "12"):
        response = signed_in.post(url, {"code": code}, follow=True)
        assert any("The password was not reset." in m for m in messages_of(response))
    wrong = f"{(int(totp_code(device)) + 1) % 1_000_000:06d}"
    response = signed_in.post(url, {"code": wrong}, follow=True)
    assert any("The password was not reset." in m for m in messages_of(response))
    assert platform_row(account).password_hash == before
    device.throttle_reset()  # the wrong code slowed further tries down
    response = signed_in.post(url, {"code": totp_code(device)})
    assert response.status_code == 200
    assert check_password(
        shown(response.content.decode(), "ta-password"), platform_row(account).password_hash
    )


def test_refresh_with_htmx_returns_the_figures(signed_in, trader):
    account = open_trading_account(trader, type_name="Demo USD")
    DemoPlatformAccount.objects.filter(login=account.login).update(balance=1_234_567, floating=-500)
    response = signed_in.post(f"{detail(account)}refresh/", HTTP_HX_REQUEST="true")
    text = response.content.decode()
    assert response.status_code == 200 and "<html" not in text
    assert 'id="account-figures"' in text
    assert "12,345.67" in text and "12,340.67" in text  # balance and equity
    assert "Just read from the platform" in text
    account.refresh_from_db()
    assert account.balance == 1_234_567 and account.equity == 1_234_067


def test_refresh_without_htmx_redirects_with_a_message(signed_in, trader):
    account = open_trading_account(trader)
    response = signed_in.post(f"{detail(account)}refresh/", follow=True)
    assert response.redirect_chain[-1][0] == detail(account)
    assert "Figures updated from the trading platform." in messages_of(response)


def test_refresh_when_the_platform_does_not_answer(signed_in, trader):
    account = open_trading_account(trader)
    DemoPlatformAccount.objects.filter(login=account.login).delete()  # the platform lost it
    response = signed_in.post(f"{detail(account)}refresh/", HTTP_HX_REQUEST="true")
    assert "the figures are the last ones we have" in response.content.decode()


def test_another_traders_account_is_not_found(signed_in):
    theirs = open_trading_account(TraderFactory())
    before = platform_row(theirs).password_hash
    assert signed_in.get(detail(theirs)).status_code == 404
    for action, data in (("refresh/", {}), ("leverage/", {"leverage": "500"}), ("password/", {})):
        assert signed_in.post(f"{detail(theirs)}{action}", data).status_code == 404
    assert signed_in.get("/room/accounts/999999/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.leverage == 100 and platform_row(theirs).password_hash == before


def test_archived_accounts_are_read_only(signed_in, trader):
    account = open_trading_account(trader)
    TradingAccount.objects.filter(pk=account.pk).update(status=TradingAccount.ARCHIVED)
    page = signed_in.get(detail(account)).content.decode()
    assert "This account is archived" in page
    assert "Change leverage" not in page and "Reset trading password" not in page
    assert "Refresh" not in page
    response = signed_in.post(f"{detail(account)}leverage/", {"leverage": "500"}, follow=True)
    assert "This account is archived." in messages_of(response)
    response = signed_in.post(f"{detail(account)}password/", follow=True)
    assert any("archived" in m for m in messages_of(response))
    response = signed_in.post(f"{detail(account)}refresh/", follow=True)
    assert any("read-only" in m for m in messages_of(response))
    account.refresh_from_db()
    assert account.leverage == 100
    assert "Archived" in signed_in.get(LIST).content.decode()


def test_changes_are_post_only_and_need_the_csrf_token(trader):
    account = open_trading_account(trader)
    http = HttpClient(enforce_csrf_checks=True)
    http.force_login(trader)
    for action in ("refresh/", "leverage/", "password/"):
        assert http.get(f"{detail(account)}{action}").status_code == 405
        assert http.post(f"{detail(account)}{action}", {"leverage": "500"}).status_code == 403
    assert http.get(OPEN).status_code == 405
    assert http.post(OPEN, {}).status_code == 403
    account.refresh_from_db()
    assert account.leverage == 100
