"""The Sumsub adapter against Sumsub's REST wire format: every request signed
as Sumsub checks it (by a local server that recomputes the signature over the
bytes it received), the documented endpoints and bodies, one applicant per
client, and every way the API can fail."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from backoffice.secrets import encrypt
from kyc.providers import provider_for
from kyc.providers.base import ProviderError

from .conftest import LEVEL_NAME
from .sumsub_server import APP_TOKEN, SECRET_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def adapter(sumsub):
    return provider_for(sumsub)


def test_applicant_is_created_with_a_request_signed_as_documented(
    adapter, check, client_at_zero, sumsub_server
):
    applicant_id = adapter.applicant_for(user=client_at_zero, requirement=check)

    (call,) = sumsub_server.calls_to("/resources/applicants")
    assert call.method == "POST"
    assert call.path == f"/resources/applicants?levelName={LEVEL_NAME}"
    assert json.loads(call.body) == {"externalUserId": str(client_at_zero.pk)}
    assert call.headers["x-app-token"] == APP_TOKEN
    assert call.headers["content-type"] == "application/json"
    # The signature, recomputed here from the documented recipe.
    signed = call.headers["x-app-access-ts"].encode() + b"POST" + call.path.encode() + call.body
    expected = hmac.new(SECRET_KEY.encode(), signed, hashlib.sha256).hexdigest()
    assert call.headers["x-app-access-sig"] == expected
    assert call.answered == 201
    assert sumsub_server.applicants[applicant_id].external_user_id == str(client_at_zero.pk)


def test_an_existing_applicant_is_found_again_never_created_twice(
    adapter, check, client_at_zero, sumsub_server
):
    existing = sumsub_server.applicant_add(str(client_at_zero.pk))

    assert adapter.applicant_for(user=client_at_zero, requirement=check) == existing
    assert adapter.applicant_for(user=client_at_zero, requirement=check) == existing
    assert len(sumsub_server.applicants) == 1
    lookups = sumsub_server.calls_to("/resources/applicants/-;externalUserId=")
    assert [c.path for c in lookups] == [
        f"/resources/applicants/-;externalUserId={client_at_zero.pk}/one"
    ] * 2
    assert all(c.method == "GET" and c.body == b"" and c.answered == 200 for c in lookups)


def test_the_external_user_id_carries_the_installation_prefix(sumsub, check, client_at_zero):
    sumsub.settings = {**sumsub.settings, "external_user_id_prefix": "broker-prod-"}
    sumsub.save()
    adapter = provider_for(sumsub)
    adapter.applicant_for(user=client_at_zero, requirement=check)
    assert adapter.external_user_id(client_at_zero) == f"broker-prod-{client_at_zero.pk}"


def test_the_websdk_link_is_asked_for_with_the_documented_body(
    adapter, check, client_at_zero, sumsub_server
):
    start = adapter.start(
        user=client_at_zero,
        requirement=check,
        applicant_id="abc",
        return_url="https://broker.test/room/verification/",
    )

    (call,) = sumsub_server.calls_to("/resources/sdkIntegrations/")
    assert call.path == "/resources/sdkIntegrations/levels/-/websdkLink"
    assert json.loads(call.body) == {
        "levelName": LEVEL_NAME,
        "userId": str(client_at_zero.pk),
        "ttlInSecs": 1800,
        "redirect": {
            "successUrl": "https://broker.test/room/verification/",
            "rejectUrl": "https://broker.test/room/verification/",
        },
    }
    assert call.answered == 200
    assert start.redirect_url == sumsub_server.links[0]["url"]
    assert start.redirect_url.startswith("https://in.sumsub.com/websdk/p/")
    assert start.applicant_id == "abc"


def test_the_sdk_access_token_uses_the_json_body_endpoint(
    adapter, check, client_at_zero, sumsub_server
):
    token = adapter.access_token(user=client_at_zero, requirement=check, applicant_id="abc")

    (call,) = sumsub_server.calls_to("/resources/accessTokens")
    assert call.path == "/resources/accessTokens/sdk"
    assert json.loads(call.body) == {
        "userId": str(client_at_zero.pk),
        "levelName": LEVEL_NAME,
        "ttlInSecs": 600,
    }
    assert token == sumsub_server.tokens[0]["token"]
    assert token.startswith("_act-")


def test_a_wrong_secret_key_is_refused_by_sumsub_as_permanent(
    sumsub, check, client_at_zero, sumsub_server
):
    sumsub.secrets = encrypt(
        {"app_token": APP_TOKEN, "secret_key": "not-the-key", "webhook_secret": "x"}
    )
    sumsub.save()
    with pytest.raises(ProviderError) as caught:
        provider_for(sumsub).applicant_for(user=client_at_zero, requirement=check)
    assert caught.value.permanent
    assert "signature mismatch" in str(caught.value)
    assert sumsub_server.applicants == {}


def test_an_unknown_level_is_permanent(adapter, check, client_at_zero, sumsub_server):
    check.provider_level = "no-such-level"
    with pytest.raises(ProviderError) as caught:
        adapter.start(user=client_at_zero, requirement=check, applicant_id="", return_url="")
    assert caught.value.permanent
    assert "Level 'no-such-level' not found" in str(caught.value)


def test_a_requirement_without_a_level_is_refused_before_any_call(
    adapter, check, client_at_zero, sumsub_server
):
    check.provider_level = "  "
    with pytest.raises(ProviderError) as caught:
        adapter.applicant_for(user=client_at_zero, requirement=check)
    assert caught.value.permanent
    assert sumsub_server.calls == []


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_rate_limits_and_server_errors_are_temporary(
    adapter, check, client_at_zero, sumsub_server, status
):
    sumsub_server.fault("/resources/applicants", "status", status=status)
    with pytest.raises(ProviderError) as caught:
        adapter.applicant_for(user=client_at_zero, requirement=check)
    assert not caught.value.permanent
    assert sumsub_server.applicants == {}


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_client_errors_are_permanent(adapter, check, client_at_zero, sumsub_server, status):
    sumsub_server.fault("/resources/accessTokens", "status", status=status)
    with pytest.raises(ProviderError) as caught:
        adapter.access_token(user=client_at_zero, requirement=check, applicant_id="")
    assert caught.value.permanent


def test_a_slow_answer_times_out(sumsub, check, client_at_zero, sumsub_server):
    sumsub.settings = {**sumsub.settings, "timeout": 1}
    sumsub.save()
    sumsub_server.fault("/resources/sdkIntegrations", "delay", seconds=2.5)
    with pytest.raises(ProviderError) as caught:
        provider_for(sumsub).start(
            user=client_at_zero, requirement=check, applicant_id="", return_url=""
        )
    assert not caught.value.permanent
    assert "cannot be reached" in str(caught.value)


def test_a_dropped_connection_is_temporary(adapter, check, client_at_zero, sumsub_server):
    sumsub_server.fault("/resources/applicants", "drop")
    with pytest.raises(ProviderError) as caught:
        adapter.applicant_for(user=client_at_zero, requirement=check)
    assert not caught.value.permanent


def test_nobody_listening_is_temporary(sumsub, check, client_at_zero, sumsub_server):
    url = sumsub_server.url
    sumsub_server.stop()
    sumsub.settings = {**sumsub.settings, "base_url": url}
    with pytest.raises(ProviderError) as caught:
        provider_for(sumsub).applicant_for(user=client_at_zero, requirement=check)
    assert not caught.value.permanent


def test_an_answer_that_is_not_json_is_an_error(adapter, check, client_at_zero, sumsub_server):
    sumsub_server.fault("/resources/accessTokens", "text")
    with pytest.raises(ProviderError, match="not JSON"):
        adapter.access_token(user=client_at_zero, requirement=check, applicant_id="")


@pytest.mark.parametrize(
    "payload",
    [{}, {"url": "javascript:alert(1)"}, {"url": "http://in.sumsub.com/x"}, {"url": 7}],
)
def test_only_an_https_link_is_followed(adapter, check, client_at_zero, sumsub_server, payload):
    sumsub_server.fault("/resources/sdkIntegrations", "answer", payload=payload)
    with pytest.raises(ProviderError, match="no verification link"):
        adapter.start(user=client_at_zero, requirement=check, applicant_id="", return_url="")


def test_a_token_for_another_user_is_refused(adapter, check, client_at_zero, sumsub_server):
    sumsub_server.fault(
        "/resources/accessTokens", "answer", payload={"token": "_act-x", "userId": "someone"}
    )
    with pytest.raises(ProviderError, match="another client"):
        adapter.access_token(user=client_at_zero, requirement=check, applicant_id="")


@pytest.mark.parametrize(
    "base_url",
    ["http://api.sumsub.com", "ftp://api.sumsub.com", "", "https://"],
)
def test_the_api_is_reached_over_https_only(sumsub, check, client_at_zero, base_url):
    sumsub.settings = {**sumsub.settings, "base_url": base_url}
    with pytest.raises(ProviderError) as caught:
        provider_for(sumsub).applicant_for(user=client_at_zero, requirement=check)
    assert caught.value.permanent


def test_missing_credentials_are_a_configuration_error(sumsub, check, client_at_zero):
    sumsub.secrets = ""
    with pytest.raises(ProviderError) as caught:
        provider_for(sumsub).applicant_for(user=client_at_zero, requirement=check)
    assert caught.value.permanent
    assert "app token" in str(caught.value)
