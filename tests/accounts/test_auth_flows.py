"""Sign-up, e-mail confirmation, sign-in, password reset and throttling."""

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from accounts.models import ClientProfile, User
from backoffice.models import Event
from tests.factories import TEST_PASSWORD, TraderFactory, signup_data

pytestmark = pytest.mark.django_db


def _link(message) -> str:
    return re.search(r"https?://[^\s]+", message.body).group(0)


def _signup(client, email="new.trader@example.com", password=TEST_PASSWORD):
    # The default registration flow's fields and consents, too.
    return client.post("/accounts/signup/", signup_data(email=email, password=password))


def test_signup_creates_client_and_asks_to_confirm(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _signup(client)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = User.objects.get(email="new.trader@example.com")
    assert not user.is_staff
    assert ClientProfile.objects.filter(user=user).exists()
    assert Event.objects.filter(name="client.registered", client=user).count() == 1
    assert len(mail.outbox) == 1
    assert "/accounts/confirm-email/" in mail.outbox[0].body
    # Not confirmed yet: the room is closed.
    assert client.get("/room/").status_code == 302


def test_signup_refuses_weak_password_and_changes_nothing(client):
    response = _signup(client, password="12345678")
    assert response.status_code == 200
    assert not User.objects.filter(email="new.trader@example.com").exists()
    assert len(mail.outbox) == 0


def test_signup_refuses_an_address_already_taken_in_any_case(client):
    TraderFactory(email="taken@example.com")
    _signup(client, email="Taken@Example.com")
    assert User.objects.filter(email__iexact="taken@example.com").count() == 1


def test_unconfirmed_user_signs_in_once_confirmed(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        _signup(client)
    client.logout()
    response = client.post(
        "/accounts/login/", {"login": "new.trader@example.com", "password": TEST_PASSWORD}
    )
    # allauth sends them to "confirm your e-mail" instead of signing them in.
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/room/").status_code == 302

    confirm_url = _link(mail.outbox[-1])
    page = client.get(confirm_url)
    assert page.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(confirm_url)
    assert response.status_code == 302
    assert EmailAddress.objects.get(email="new.trader@example.com").verified
    user = User.objects.get(email="new.trader@example.com")
    assert Event.objects.filter(name="client.email_confirmed", client=user).exists()
    # The welcome notification came through the outbox subscriber.
    assert user.notifications.filter(kind="client.email_confirmed").count() == 1

    response = client.post(
        "/accounts/login/", {"login": "new.trader@example.com", "password": TEST_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/room/"
    assert client.get("/room/").status_code == 200


def test_sign_in_with_wrong_password_is_refused_and_recorded(client, trader):
    response = client.post("/accounts/login/", {"login": trader.email, "password": "wrong-one-1"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    event = Event.objects.get(name="security.login_failed", client=trader)
    assert event.payload["reason"] == "password"


def test_repeated_failures_lock_the_address_out_with_a_clear_message(client, trader, settings):
    for _ in range(settings.LOGIN_ATTEMPTS_LIMIT):
        client.post("/accounts/login/", {"login": trader.email, "password": "wrong-one-1"})
    # Even the right password is refused while locked out.
    response = client.post("/accounts/login/", {"login": trader.email, "password": TEST_PASSWORD})
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another address from the same browser is not locked.
    other = TraderFactory()
    response = client.post("/accounts/login/", {"login": other.email, "password": TEST_PASSWORD})
    assert response.status_code == 302


def test_password_reset_by_email(client, trader):
    response = client.post("/accounts/password/reset/", {"email": trader.email})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    reset_url = _link(mail.outbox[0])
    page = client.get(reset_url, follow=True)
    assert page.status_code == 200
    form_url = page.redirect_chain[-1][0] if page.redirect_chain else reset_url
    new_password = "Another-Strong-Pass-42"
    response = client.post(form_url, {"password1": new_password, "password2": new_password})
    assert response.status_code == 302
    trader.refresh_from_db()
    assert trader.check_password(new_password)


def test_password_reset_for_unknown_address_reveals_nothing(client):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) <= 1  # allauth may send an "unknown account" notice
    assert not User.objects.filter(email="nobody@example.com").exists()
