"""The admin: a verified second factor first, then each role's permissions."""

import pytest
from auditlog.models import LogEntry
from django.test import Client as HttpClient

from accounts.models import ClientProfile
from accounts.roles import ADMINISTRATOR, COMPLIANCE, FINANCE, SALES, SUPPORT
from backoffice.models import Event
from tests.factories import TEST_PASSWORD, StaffFactory, TraderFactory, enable_totp, totp_code

pytestmark = pytest.mark.django_db


def signed_in_with_code(staff) -> HttpClient:
    """A browser session that went through password and authenticator code."""
    device = enable_totp(staff)
    http = HttpClient()
    response = http.post("/accounts/login/", {"login": staff.email, "password": TEST_PASSWORD})
    assert response["Location"] == "/accounts/2fa/"
    response = http.post("/accounts/2fa/", {"code": totp_code(device)})
    assert response.status_code == 302
    return http


def test_staff_without_a_device_is_led_to_enrol(client):
    staff = StaffFactory(roles=[SUPPORT])
    client.force_login(staff)
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/room/security/?next=%2Fadmin%2F"
    assert "Staff must use two-factor authentication" in response.content.decode()


def test_staff_signed_in_by_password_alone_is_refused(client):
    staff = StaffFactory(roles=[ADMINISTRATOR])
    enable_totp(staff)
    client.force_login(staff)  # a session without the second factor
    response = client.get("/admin/accounts/client/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    response = client.get(response["Location"])
    assert response["Location"].startswith("/accounts/login/")
    assert "_auth_user_id" not in client.session  # signed out, to sign in fully


def test_staff_enrolling_from_the_admin_redirect_then_gets_in(client):
    import re
    from base64 import b32decode

    from django_otp.oath import TOTP

    staff = StaffFactory(roles=[SUPPORT])
    client.force_login(staff)
    client.post("/room/security/totp/start/", {"next": "/admin/"})
    page = client.get("/room/security/?next=/admin/").content.decode()
    secret = re.search(r'data-secret="([A-Z2-7]+)"', page).group(1)
    key = b32decode(secret + "=" * (-len(secret) % 8))
    response = client.post(
        "/room/security/totp/confirm/", {"code": f"{TOTP(key).token():06d}", "next": "/admin/"}
    )
    assert 'href="/admin/"' in response.content.decode()
    assert client.get("/admin/").status_code == 200


def test_trader_cannot_open_the_admin(trader):
    http = signed_in_with_code(trader)
    response = http.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/room/"


def test_verified_staff_open_the_admin():
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    assert http.get("/admin/").status_code == 200


def test_sales_sees_and_opens_only_assigned_clients():
    sales = StaffFactory(roles=[SALES])
    mine = TraderFactory(email="mine@example.com", profile__manager=sales)
    other = TraderFactory(email="other@example.com")
    http = signed_in_with_code(sales)

    listing = http.get("/admin/accounts/client/").content.decode()
    assert "mine@example.com" in listing
    assert "other@example.com" not in listing

    assert http.get(f"/admin/accounts/client/{mine.pk}/change/").status_code == 200
    response = http.get(f"/admin/accounts/client/{other.pk}/change/")
    assert response.status_code == 302  # "doesn't exist", back to the list
    # Nor can they change it by posting.
    http.post(
        f"/admin/accounts/client/{other.pk}/change/",
        {"first_name": "Hacked", "last_name": "X", "is_active": "on"},
    )
    other.refresh_from_db()
    assert other.first_name != "Hacked"


def test_sales_cannot_reassign_their_client_to_someone_else():
    sales = StaffFactory(roles=[SALES])
    mine = TraderFactory(profile__manager=sales)
    http = signed_in_with_code(sales)
    page = http.get(f"/admin/accounts/client/{mine.pk}/change/").content.decode()
    assert 'name="profile-0-manager"' not in page  # read-only for Sales


def _change_payload(client_user, **overrides):
    profile = client_user.profile
    data = {
        "first_name": client_user.first_name,
        "last_name": client_user.last_name,
        "is_active": "on",
        "profile-TOTAL_FORMS": "1",
        "profile-INITIAL_FORMS": "1",
        "profile-MIN_NUM_FORMS": "1",
        "profile-MAX_NUM_FORMS": "1",
        "profile-0-id": str(profile.pk),
        "profile-0-user": str(client_user.pk),
        "profile-0-date_of_birth": profile.date_of_birth.isoformat(),
        "profile-0-country": profile.country.code,
        "profile-0-phone": str(profile.phone),
        "profile-0-address_line1": profile.address_line1,
        "profile-0-address_line2": "",
        "profile-0-city": profile.city,
        "profile-0-state": "",
        "profile-0-postal_code": profile.postal_code,
        "profile-0-language": "en",
        "profile-0-manager": str(profile.manager_id or ""),
        "_save": "Save",
    }
    data.update(overrides)
    return data


def test_support_reads_but_cannot_change(trader):
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    assert http.get(f"/admin/accounts/client/{trader.pk}/change/").status_code == 200
    response = http.post(
        f"/admin/accounts/client/{trader.pk}/change/",
        _change_payload(trader, first_name="Changed"),
    )
    assert response.status_code == 403
    trader.refresh_from_db()
    assert trader.first_name != "Changed"
    assert http.get("/admin/accounts/staffuser/").status_code == 403
    assert http.get("/admin/backoffice/brand/").status_code == 403


def test_finance_cannot_change_clients(trader):
    http = signed_in_with_code(StaffFactory(roles=[FINANCE]))
    response = http.post(
        f"/admin/accounts/client/{trader.pk}/change/", _change_payload(trader, first_name="X")
    )
    assert response.status_code == 403


def test_compliance_change_goes_through_the_service_and_is_audited(trader):
    officer = StaffFactory(roles=[COMPLIANCE])
    http = signed_in_with_code(officer)
    response = http.post(
        f"/admin/accounts/client/{trader.pk}/change/",
        _change_payload(trader, **{"first_name": "Renamed", "profile-0-city": "Leeds"}),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    trader.refresh_from_db()
    assert trader.first_name == "Renamed"
    assert ClientProfile.objects.get(user=trader).city == "Leeds"
    event = Event.objects.get(name="client.profile_changed", client=trader)
    assert event.actor == officer
    assert set(event.payload["fields"]) == {"first_name", "city"}
    assert LogEntry.objects.filter(actor=officer).count() >= 2  # user and profile rows

    page = http.get(f"/admin/accounts/client/{trader.pk}/change/").content.decode()
    assert "Audit history" in page and officer.email in page
    assert "Activity timeline" in page and "client.profile_changed" in page


def test_administrator_assigns_a_manager():
    admin_user = StaffFactory(roles=[ADMINISTRATOR])
    sales = StaffFactory(roles=[SALES])
    trader = TraderFactory()
    http = signed_in_with_code(admin_user)
    response = http.post(
        f"/admin/accounts/client/{trader.pk}/change/",
        _change_payload(trader, **{"profile-0-manager": str(sales.pk)}),
    )
    assert response.status_code == 302
    assert ClientProfile.objects.get(user=trader).manager == sales
    assert Event.objects.filter(name="client.manager_assigned", client=trader).exists()


def test_client_list_query_count_is_bounded(django_assert_max_num_queries):
    sales = StaffFactory(roles=[ADMINISTRATOR])
    TraderFactory.create_batch(15)
    http = signed_in_with_code(sales)
    http.get("/admin/accounts/client/")  # warm caches (content types, brand)
    # Constant, whatever the number of clients: no query per row.
    with django_assert_max_num_queries(13):
        assert http.get("/admin/accounts/client/").status_code == 200
    TraderFactory.create_batch(15)
    with django_assert_max_num_queries(13):
        assert http.get("/admin/accounts/client/").status_code == 200


def test_sales_cannot_list_every_clients_events_or_notifications():
    sales = StaffFactory(roles=[SALES])
    mine = TraderFactory(profile__manager=sales)
    http = signed_in_with_code(sales)
    assert http.get("/admin/backoffice/event/").status_code == 403
    assert http.get("/admin/backoffice/notification/").status_code == 403
    # Their own client's activity stays on the client's page.
    assert (
        "Activity timeline"
        in http.get(f"/admin/accounts/client/{mine.pk}/change/").content.decode()
    )
