"""The trader's room: dashboard, profile, security page; query counts."""

from datetime import date

import pytest

from accounts import services
from backoffice.models import Event, Notification
from tests.factories import TraderFactory, enable_totp

pytestmark = pytest.mark.django_db

VALID_PROFILE = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "date_of_birth": "1990-12-10",
    "country": "GB",
    "phone": "+44 20 7946 0958",
    "address_line1": "12 St James's Square",
    "address_line2": "",
    "city": "London",
    "state": "",
    "postal_code": "sw1y 4lb",
    "language": "en",
}


def test_room_needs_sign_in(client):
    for url in ("/room/", "/room/profile/", "/room/security/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


def test_dashboard_shows_checklist_notifications_and_activity(client, trader):
    Notification.objects.create(user=trader, kind="x", title="Hello from the desk")
    services.client_profile_update(actor=trader, user=trader, data={"city": "Paris"})
    client.force_login(trader)
    page = client.get("/room/").content.decode()
    assert "Hello from the desk" in page
    assert "Profile updated" in page  # the timeline, in words
    assert "Turn on two-factor authentication" in page
    # The navigation lists the sections that exist, as links that work.
    for url in ("/room/", "/room/profile/", "/room/security/"):
        assert f'href="{url}"' in page
        assert client.get(url).status_code == 200


def test_dashboard_query_count_is_bounded(client, django_assert_max_num_queries):
    trader = TraderFactory()
    for i in range(20):
        Notification.objects.create(user=trader, kind="x", title=f"n{i}")
        services.client_profile_update(actor=trader, user=trader, data={"city": f"City {i}"})
    enable_totp(trader)
    client.force_login(trader)
    client.get("/room/")  # warm the brand cache
    with django_assert_max_num_queries(7):
        assert client.get("/room/").status_code == 200


def test_security_page_query_count_is_bounded(client, django_assert_max_num_queries):
    trader = TraderFactory()
    enable_totp(trader)
    services._backup_codes_replace(trader)
    client.force_login(trader)
    client.get("/room/security/")
    with django_assert_max_num_queries(6):
        assert client.get("/room/security/").status_code == 200


def test_profile_update_saves_and_publishes_changed_fields(client, trader):
    client.force_login(trader)
    response = client.post("/room/profile/", VALID_PROFILE)
    assert response.status_code == 302
    trader.refresh_from_db()
    profile = trader.profile
    assert (trader.first_name, trader.last_name) == ("Ada", "Lovelace")
    assert profile.date_of_birth == date(1990, 12, 10)
    assert str(profile.phone) == "+442079460958"
    assert profile.postal_code == "SW1Y 4LB"
    event = Event.objects.filter(name="client.profile_changed", client=trader).latest("id")
    assert "first_name" in event.payload["fields"]
    assert "Ada" not in str(event.payload)  # field names, not personal data


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("date_of_birth", "2090-01-01", "cannot be in the future"),
        (
            "date_of_birth",
            date.today().replace(year=date.today().year - 17).isoformat(),
            "at least 18",
        ),
        ("date_of_birth", "not-a-date", "valid date"),
        ("phone", "12345", "valid phone number"),
        ("country", "XX", "valid choice"),
        ("language", "klingon", "valid choice"),
        ("postal_code", "<script>", "letters, digits"),
        ("first_name", "", "required"),
    ],
)
def test_profile_refuses_bad_input_and_changes_nothing(client, trader, field, value, message):
    client.force_login(trader)
    before = (trader.first_name, trader.profile.city, trader.profile.phone)
    response = client.post("/room/profile/", {**VALID_PROFILE, field: value})
    assert response.status_code == 200
    assert message in response.content.decode()
    trader.refresh_from_db()
    assert (trader.first_name, trader.profile.city, trader.profile.phone) == before
    assert not Event.objects.filter(name="client.profile_changed").exists()


def test_profile_ignores_fields_a_trader_must_not_set(client, trader):
    client.force_login(trader)
    client.post("/room/profile/", {**VALID_PROFILE, "manager": "1", "is_staff": "on"})
    trader.refresh_from_db()
    assert not trader.is_staff
    assert trader.profile.manager is None


def test_notifications_mark_read_with_htmx(client, trader):
    Notification.objects.create(user=trader, kind="x", title="Unread one")
    client.force_login(trader)
    response = client.post("/room/notifications/read/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "Unread one" in response.content.decode()
    assert not Notification.objects.filter(user=trader, read_at__isnull=True).exists()


def test_notifications_of_another_user_are_untouched(client, trader):
    other = TraderFactory()
    Notification.objects.create(user=other, kind="x", title="Theirs")
    client.force_login(trader)
    client.post("/room/notifications/read/")
    assert Notification.objects.get(user=other).read_at is None
    assert "Theirs" not in client.get("/room/").content.decode()


def test_cached_dashboard_follows_every_change(client, trader, django_capture_on_commit_callbacks):
    from backoffice.services import notification_create

    client.force_login(trader)
    assert "Nothing to see" not in client.get("/room/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        notification_create(user=trader, kind="x", title="Fresh news", email=False)
    page = client.get("/room/").content.decode()
    assert "Fresh news" in page and 'class="unread"' in page

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/room/notifications/read/")
    assert 'class="unread"' not in client.get("/room/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        services.client_profile_update(actor=trader, user=trader, data={"city": "Oslo"})
    assert "Profile updated" in client.get("/room/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        device = services.totp_enrolment_start(user=trader)
        from tests.factories import totp_code

        services.totp_enrolment_confirm(user=trader, token=totp_code(device))
    client.force_login(trader)  # enabling 2FA ended the other sessions
    assert "Two-factor authentication is on" in client.get("/room/").content.decode()


def test_a_warm_dashboard_reads_no_dashboard_rows(client, trader, django_assert_max_num_queries):
    client.force_login(trader)
    client.get("/room/")
    with django_assert_max_num_queries(2):  # the session and the user
        assert client.get("/room/").status_code == 200
