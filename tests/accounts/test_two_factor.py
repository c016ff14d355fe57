"""TOTP enrolment in the room, and sign-in with the second factor."""

import re
from base64 import b32decode

import pytest
from django_otp.oath import TOTP
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import services
from backoffice.models import Event
from tests.factories import TEST_PASSWORD, enable_totp, totp_code

pytestmark = pytest.mark.django_db


def _code_for_secret(secret: str, offset_steps: int = 0) -> str:
    key = b32decode(secret + "=" * (-len(secret) % 8))
    totp = TOTP(key)
    totp.time += offset_steps * 30
    return f"{totp.token():06d}"


def _enrol(client) -> tuple[str, list[str]]:
    client.post("/room/security/totp/start/")
    page = client.get("/room/security/").content.decode()
    secret = re.search(r'data-secret="([A-Z2-7]+)"', page).group(1)
    assert "<svg" in page  # the QR code
    response = client.post("/room/security/totp/confirm/", {"code": _code_for_secret(secret)})
    assert response.status_code == 200
    codes = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", response.content.decode())
    return secret, codes


def _sign_in(client, user):
    return client.post("/accounts/login/", {"login": user.email, "password": TEST_PASSWORD})


def test_enrolment_shows_qr_secret_and_ten_backup_codes_once(
    client, trader, django_capture_on_commit_callbacks
):
    client.force_login(trader)
    with django_capture_on_commit_callbacks(execute=True):
        secret, codes = _enrol(client)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert TOTPDevice.objects.get(user=trader).confirmed
    assert StaticToken.objects.filter(device__user=trader).count() == 10
    assert Event.objects.filter(name="security.2fa_enabled", client=trader).count() == 1
    assert trader.notifications.filter(kind="security.2fa_enabled").exists()
    # Shown once: the security page does not show them again.
    page = client.get("/room/security/").content.decode()
    assert codes[0] not in page
    assert "10</strong> unused backup codes" in page


def test_enrolment_refuses_a_wrong_code(client, trader):
    client.force_login(trader)
    client.post("/room/security/totp/start/")
    response = client.post("/room/security/totp/confirm/", {"code": "000000"})
    assert response.status_code == 400
    assert not TOTPDevice.objects.filter(user=trader, confirmed=True).exists()
    assert not StaticToken.objects.filter(device__user=trader).exists()


def test_sign_in_asks_for_the_code_once_enabled(client, trader):
    device = enable_totp(trader)
    response = _sign_in(client, trader)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/"
    # Not signed in yet: the room is closed.
    assert client.get("/room/").status_code == 302

    response = client.post("/accounts/2fa/", {"code": totp_code(device)})
    assert response.status_code == 302
    assert response["Location"] == "/room/"
    assert client.get("/room/").status_code == 200


def test_wrong_code_is_refused_and_recorded(client, trader):
    enable_totp(trader)
    _sign_in(client, trader)
    response = client.post("/accounts/2fa/", {"code": "123456"})
    assert response.status_code == 200
    assert "not valid" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert Event.objects.filter(
        name="security.login_failed", client=trader, payload__reason="second_factor"
    ).exists()


def test_a_code_cannot_be_used_twice(client, trader):
    device = enable_totp(trader)
    code = totp_code(device)
    _sign_in(client, trader)
    assert client.post("/accounts/2fa/", {"code": code}).status_code == 302
    client.logout()

    _sign_in(client, trader)
    response = client.post("/accounts/2fa/", {"code": code})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_a_backup_code_works_once(client, trader):
    enable_totp(trader)
    codes = services._backup_codes_replace(trader)
    _sign_in(client, trader)
    response = client.post("/accounts/2fa/", {"code": codes[0][:5] + "-" + codes[0][5:]})
    assert response.status_code == 302
    client.logout()

    _sign_in(client, trader)
    response = client.post("/accounts/2fa/", {"code": codes[0]})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert StaticToken.objects.filter(device__user=trader).count() == 9


def test_too_many_wrong_codes_end_the_sign_in(client, trader):
    enable_totp(trader)
    _sign_in(client, trader)
    for _ in range(5):
        response = client.post("/accounts/2fa/", {"code": "654321"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"
    # The stage is gone: the code page sends back to the sign-in.
    assert client.get("/accounts/2fa/")["Location"] == "/accounts/login/"


def test_code_page_without_a_password_step_is_refused(client, trader):
    enable_totp(trader)
    response = client.get("/accounts/2fa/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/"


def test_disabling_needs_a_valid_code(client, trader, django_capture_on_commit_callbacks):
    device = enable_totp(trader)
    client.force_login(trader)
    response = client.post("/room/security/disable/", {"code": "111111"})
    assert response.status_code == 302
    assert TOTPDevice.objects.filter(user=trader, confirmed=True).exists()

    with django_capture_on_commit_callbacks(execute=True):
        client.post("/room/security/disable/", {"code": totp_code(device)})
    assert not TOTPDevice.objects.filter(user=trader).exists()
    assert Event.objects.filter(name="security.2fa_disabled", client=trader).count() == 1
    assert trader.notifications.filter(kind="security.2fa_disabled").count() == 1


def test_disabling_with_a_backup_code(client, trader):
    enable_totp(trader)
    codes = services._backup_codes_replace(trader)
    client.force_login(trader)
    client.post("/room/security/disable/", {"code": codes[3]})
    assert not TOTPDevice.objects.filter(user=trader).exists()
    assert not StaticToken.objects.filter(device__user=trader).exists()


def test_regenerating_backup_codes_replaces_the_old_ones(client, trader):
    device = enable_totp(trader)
    old = services._backup_codes_replace(trader)
    client.force_login(trader)
    response = client.post("/room/security/backup-codes/", {"code": totp_code(device)})
    assert response.status_code == 200
    new = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", response.content.decode())
    assert len(new) == 10
    tokens = set(StaticToken.objects.filter(device__user=trader).values_list("token", flat=True))
    assert not tokens & set(old)


def test_security_pages_need_sign_in_and_post(client, trader):
    assert client.get("/room/security/").status_code == 302
    client.force_login(trader)
    assert client.get("/room/security/totp/start/").status_code == 405
    assert client.get("/room/security/disable/").status_code == 405


def test_after_a_wrong_code_the_user_is_told_to_wait(client, trader):
    device = enable_totp(trader)
    _sign_in(client, trader)
    client.post("/accounts/2fa/", {"code": "000000"})
    response = client.post("/accounts/2fa/", {"code": totp_code(device)})
    assert "Too many wrong codes. Wait" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_backup_code_does_not_count_against_the_authenticator(client, trader):
    device = enable_totp(trader)
    codes = services._backup_codes_replace(trader)
    _sign_in(client, trader)
    assert client.post("/accounts/2fa/", {"code": codes[0]}).status_code == 302
    device.refresh_from_db()
    assert device.throttling_failure_count == 0


def test_turning_2fa_on_signs_out_other_sessions_but_not_this_one(client, trader):
    from django.test import Client as HttpClient

    other = HttpClient()
    other.force_login(trader)
    assert other.get("/room/").status_code == 200
    client.force_login(trader)
    _enrol(client)
    assert client.get("/room/").status_code == 200
    response = other.get("/room/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_turning_2fa_off_signs_out_other_sessions(client, trader):
    from django.test import Client as HttpClient

    device = enable_totp(trader)
    other = HttpClient()
    _sign_in(other, trader)
    other.post("/accounts/2fa/", {"code": totp_code(device)})
    assert other.get("/room/").status_code == 200
    client.force_login(trader)
    client.post("/room/security/disable/", {"code": totp_code(device, offset_steps=1)})
    assert client.get("/room/").status_code == 200
    assert other.get("/room/").status_code == 302
