"""The REST API: token sign-in with the sign-in page's checks, wallets and
history, another user's ids, the schema."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from payments import services
from payments.services import Line
from tests.factories import TEST_PASSWORD, TraderFactory, enable_totp, totp_code

pytestmark = pytest.mark.django_db


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def trader():
    return TraderFactory()


def _token(api, user, **extra) -> str:
    response = api.post(
        "/api/v1/auth/token/",
        {"email": user.email, "password": TEST_PASSWORD, **extra},
        format="json",
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def _fund(wallet, amount: int, key: str) -> None:
    services.ledger_post(
        kind="adjustment",
        idempotency_key=key,
        lines=[
            Line(wallet, amount),
            Line(services.system_account("adjustments", wallet.currency_id), -amount),
        ],
    )


def test_token_needs_the_right_password(api, trader):
    response = api.post(
        "/api/v1/auth/token/", {"email": trader.email, "password": "wrong"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"


def test_token_locked_after_repeated_failures(api, trader, settings):
    settings.LOGIN_ATTEMPTS_LIMIT = 3
    for _ in range(3):
        api.post("/api/v1/auth/token/", {"email": trader.email, "password": "x"}, format="json")
    response = api.post(
        "/api/v1/auth/token/",
        {"email": trader.email, "password": TEST_PASSWORD},
        format="json",
    )
    assert response.status_code == 429


def test_token_refused_before_the_email_is_confirmed(api):
    user = TraderFactory(verified=False)
    response = api.post(
        "/api/v1/auth/token/", {"email": user.email, "password": TEST_PASSWORD}, format="json"
    )
    assert response.status_code == 403


def test_token_needs_the_2fa_code_when_2fa_is_on(api, trader):
    device = enable_totp(trader)
    response = api.post(
        "/api/v1/auth/token/", {"email": trader.email, "password": TEST_PASSWORD}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "otp_required"
    response = api.post(
        "/api/v1/auth/token/",
        {"email": trader.email, "password": TEST_PASSWORD, "otp_code": "000000"},
        format="json",
    )
    assert response.json()["code"] == "otp_invalid"
    device.refresh_from_db()
    device.throttle_reset()  # django-otp makes the next try wait a second
    assert _token(api, trader, otp_code=totp_code(device))


def test_requests_without_a_token_are_refused(api):
    assert api.get("/api/v1/wallets/").status_code in {401, 403}


def test_revoked_token_no_longer_works(api, trader):
    token = _token(api, trader)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/wallets/").status_code == 200
    assert api.delete("/api/v1/auth/token/revoke/").status_code == 204
    assert api.get("/api/v1/wallets/").status_code == 401


def test_wallets_and_history_with_decimal_amounts(api, trader, django_assert_max_num_queries):
    usd = services.wallet_open(user=trader, currency="USD")
    _fund(usd, 12345, "a1")
    _fund(usd, -45, "a2")
    api.credentials(HTTP_AUTHORIZATION=f"Token {_token(api, trader)}")
    wallets = api.get("/api/v1/wallets/").json()
    assert wallets == [{"id": usd.pk, "currency": "USD", "balance": "123.00"}]
    with django_assert_max_num_queries(4):
        history = api.get(f"/api/v1/wallets/{usd.pk}/history/").json()
    assert [e["amount"] for e in history["entries"]] == ["-0.45", "123.45"]
    assert history["entries"][0]["balance_after"] == "123.00"
    assert history["next_cursor"] is None
    assert Decimal(history["entries"][1]["amount"]) == Decimal("123.45")


def test_open_wallet_is_idempotent(api, trader):
    api.credentials(HTTP_AUTHORIZATION=f"Token {_token(api, trader)}")
    first = api.post("/api/v1/wallets/open/", {"currency": "btc"}, format="json")
    second = api.post("/api/v1/wallets/open/", {"currency": "BTC"}, format="json")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    bad = api.post("/api/v1/wallets/open/", {"currency": "XXX"}, format="json")
    assert bad.status_code == 422


def test_another_traders_wallet_is_404(api, trader):
    other = TraderFactory()
    theirs = services.wallet_open(user=other, currency="USD")
    api.credentials(HTTP_AUTHORIZATION=f"Token {_token(api, trader)}")
    assert api.get(f"/api/v1/wallets/{theirs.pk}/").status_code == 404
    assert api.get(f"/api/v1/wallets/{theirs.pk}/history/").status_code == 404


def test_bad_history_filter_is_400(api, trader):
    usd = services.wallet_open(user=trader, currency="USD")
    api.credentials(HTTP_AUTHORIZATION=f"Token {_token(api, trader)}")
    response = api.get(f"/api/v1/wallets/{usd.pk}/history/?date_from=yesterday")
    assert response.status_code == 400


def test_openapi_schema_is_served(api, trader):
    api.credentials(HTTP_AUTHORIZATION=f"Token {_token(api, trader)}")
    response = api.get("/api/v1/schema/")
    assert response.status_code == 200
    assert b"/api/v1/wallets/" in response.content
