"""Transfers between wallets and trading accounts in the admin, through the
pages as staff use them (signed in with a second factor): the read-only list
with filters and search, the detail page, "Check with the platform now" for
Finance only, a sales manager's view limited to their clients, query counts."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission

from accounts.models import Platform
from accounts.roles import FINANCE, SALES, SUPPORT
from payments import services
from payments.models import TradingTransfer
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory, open_trading_account
from tests.payments.test_trading_transfer_views import (
    make_transfer,
    scripted,  # noqa: F401 (a fixture)
)
from tests.payments.test_trading_transfers import fund

pytestmark = pytest.mark.django_db

LIST = "/admin/payments/tradingtransfer/"
ACTION = "check_with_platform"


def text(response) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


def reload(transfer: TradingTransfer) -> TradingTransfer:
    return TradingTransfer.objects.get(pk=transfer.pk)


@pytest.fixture
def alice(db):
    return TraderFactory(email="alice@example.com")


@pytest.fixture
def usd(alice):
    return fund(services.wallet_open(user=alice, currency="USD"), 500_000)


@pytest.fixture
def account(alice):
    return open_trading_account(alice)


@pytest.fixture
def finance(db):
    return StaffFactory(roles=[FINANCE], email="fiona@example.com")


@pytest.fixture
def http(finance):
    return signed_in_with_code(finance)


def check_now(http, *transfers, follow=True):
    data = {"action": ACTION, "_selected_action": [t.pk for t in transfers], "index": 0}
    return http.post(LIST, data, follow=follow)


def test_finance_sees_the_list_with_filters_and_search(http, alice, usd, account):
    done = make_transfer(alice, account, usd, "250.00")
    waiting = make_transfer(alice, account, usd, "10.00", run=False)
    bob = TraderFactory(email="bob@example.com")
    bob_account = open_trading_account(bob)
    bobs = make_transfer(
        bob, bob_account, fund(services.wallet_open(user=bob, currency="USD"), 100_000), "120.00"
    )

    Platform.objects.create(identifier="mt5-live", kind="mt5", name="MetaTrader 5 live")
    page = text(http.get(LIST))
    for transfer in (done, waiting, bobs):
        assert transfer.reference in page
    assert "alice@example.com" in page and "250.00 USD" in page
    assert f"{account.login} (demo)" in page and "completed" in page and "pending" in page
    for label in ("By status", "By direction", "By platform"):
        assert label in page
    pending = text(http.get(LIST, {"status__exact": "pending"}))
    assert waiting.reference in pending and done.reference not in pending
    demo = Platform.objects.get(identifier="demo")
    on_demo = text(http.get(LIST, {"trading_account__platform__id__exact": demo.pk}))
    assert done.reference in on_demo
    outward = text(http.get(LIST, {"direction__exact": "out"}))
    assert done.reference not in outward
    by_login = text(http.get(LIST, {"q": bob_account.login}))
    assert bobs.reference in by_login and done.reference not in by_login
    by_email = text(http.get(LIST, {"q": "alice@"}))
    assert done.reference in by_email and bobs.reference not in by_email
    by_reference = text(http.get(LIST, {"q": waiting.reference}))
    assert waiting.reference in by_reference and done.reference not in by_reference


def test_nothing_is_added_changed_or_deleted(http, alice, usd, account):
    transfer = make_transfer(alice, account, usd, "250.00")
    detail = f"{LIST}{transfer.pk}/change/"
    page = http.get(detail).content.decode()
    assert transfer.reference in page and "alice@example.com" in page
    assert "posted <a href=" in page  # the ledger posting, linked
    assert 'name="status"' not in page and 'name="_save"' not in page
    assert http.post(detail, {"status": "failed"}).status_code == 403
    assert http.get(f"{LIST}add/").status_code == 403
    assert http.get(f"{LIST}{transfer.pk}/delete/").status_code == 403
    http.post(LIST, {"action": "delete_selected", "_selected_action": [transfer.pk], "index": 0})
    assert reload(transfer).status == TradingTransfer.COMPLETED


def test_finance_checks_open_transfers_with_the_platform(http, alice, usd, account, finance):
    waiting = make_transfer(alice, account, usd, "250.00", run=False)
    done = make_transfer(alice, account, usd, "10.00")
    assert waiting.status == TradingTransfer.PENDING
    page = text(check_now(http, waiting, done))
    assert f"{waiting.reference}: completed (platform ticket" in page
    assert "1 settled transfer(s) left as they are." in page
    assert reload(waiting).status == TradingTransfer.COMPLETED
    from django.contrib.admin.models import LogEntry

    entry = LogEntry.objects.get(object_id=str(waiting.pk))
    assert (
        entry.user == finance
        and "Checked with the platform: completed" in entry.get_change_message()
    )


def test_a_refusal_found_by_the_check_is_reported(http, alice, usd, account, scripted):  # noqa: F811
    waiting = make_transfer(alice, account, usd, "250.00", run=False)
    scripted.script = ["refuse"]
    page = text(check_now(http, waiting))
    assert f"{waiting.reference}: failed and reversed: Account disabled for trading" in page
    usd.refresh_from_db()
    assert usd.balance == 500_000


def test_a_call_that_may_still_land_is_not_checked(http, alice, usd, account, settings):
    waiting = make_transfer(alice, account, usd, "250.00", run=False)
    TradingTransfer.objects.filter(pk=waiting.pk).update(status=TradingTransfer.SENDING)
    settings.TRADING_TRANSFER_STALE_AFTER = 600
    page = text(check_now(http, waiting))
    assert "not checked now: a call to the platform may still be under way" in page
    assert reload(waiting).status == TradingTransfer.SENDING


def test_support_reads_but_cannot_check(alice, usd, account):
    support = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    waiting = make_transfer(alice, account, usd, "250.00", run=False)
    page = support.get(LIST).content.decode()
    assert waiting.reference in page
    assert ACTION not in page
    check_now(support, waiting)
    assert reload(waiting).status == TradingTransfer.PENDING


def test_a_trader_or_staff_without_the_permission_sees_nothing(client, alice, usd, account):
    transfer = make_transfer(alice, account, usd, "250.00")
    client.force_login(alice)
    assert client.get(LIST).status_code == 302  # to the admin's sign-in
    sales = signed_in_with_code(StaffFactory(roles=[SALES]))
    assert sales.get(LIST).status_code == 403
    assert sales.get(f"{LIST}{transfer.pk}/change/").status_code == 403


def test_a_sales_manager_sees_only_their_clients(usd, account, alice):
    manager = StaffFactory(roles=[SALES])
    manager.user_permissions.add(
        Permission.objects.get(content_type__app_label="payments", codename="view_tradingtransfer")
    )
    mine = TraderFactory(profile__manager=manager)
    my_transfer = make_transfer(
        mine,
        open_trading_account(mine),
        fund(services.wallet_open(user=mine, currency="USD"), 100_000),
        "120.00",
    )
    theirs = make_transfer(alice, account, usd, "250.00")
    http = signed_in_with_code(manager)
    page = text(http.get(LIST))
    assert my_transfer.reference in page and theirs.reference not in page
    assert theirs.reference not in text(http.get(LIST, {"q": theirs.reference}))
    response = http.get(f"{LIST}{theirs.pk}/change/")
    assert response.status_code == 302  # "does not exist", back to the admin
    assert ACTION not in http.get(LIST).content.decode()


def test_list_query_count_does_not_grow(http, alice, usd, account, django_assert_max_num_queries):
    make_transfer(alice, account, usd, "150.00")
    http.get(LIST)  # warm caches
    # User, 2FA device, permissions (2), roles, platforms (filter), count, rows.
    with django_assert_max_num_queries(8) as first:
        assert http.get(LIST).status_code == 200
    for i in range(10):
        make_transfer(alice, account, usd, f"{10 + i}.00")
    with django_assert_max_num_queries(len(first.captured_queries)):
        page = http.get(LIST).content.decode()
    assert page.count('name="_selected_action"') == 11
