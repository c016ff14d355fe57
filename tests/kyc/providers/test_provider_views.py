"""Starting a provider's check: the room's button (POST
/room/verification/provider/<id>/start/ → Sumsub's hosted page) and the
mobile app's SDK token (POST /api/v1/kyc/requirements/<id>/access-token/),
against the local stand-in of Sumsub's API. One applicant per client, ids
that are not the client's checks are 404, a provider that fails changes
nothing and says so."""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from kyc.models import CountryRule, KycProvider, ProviderApplicant, Requirement, Submission
from kyc.providers import KYC_PROVIDERS, provider_for
from kyc.providers.base import ProviderError, WebhookRejected
from tests.factories import StaffFactory, TraderFactory

from .conftest import LEVEL_NAME

pytestmark = pytest.mark.django_db

VERIFICATION = "/room/verification/"


def start_url(requirement) -> str:
    return f"/room/verification/provider/{requirement.pk}/start/"


def token_url(requirement) -> str:
    return f"/api/v1/kyc/requirements/{requirement.pk}/access-token/"


def api_for(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# --- the room's button ----------------------------------------------------------------


def test_the_trader_is_sent_to_sumsubs_hosted_page(client, check, client_at_zero, sumsub_server):
    client.force_login(client_at_zero)
    response = client.post(start_url(check))

    assert response.status_code == 302
    assert response["Location"] == sumsub_server.links[0]["url"]
    link = sumsub_server.links[0]
    assert link["levelName"] == LEVEL_NAME
    assert link["userId"] == str(client_at_zero.pk)
    assert link["redirect"]["successUrl"] == "http://testserver/room/verification/"
    applicant = ProviderApplicant.objects.get(user=client_at_zero)
    assert applicant.applicant_id in sumsub_server.applicants
    # Nothing else is recorded before Sumsub's first webhook.
    assert not Submission.objects.filter(user=client_at_zero).exists()


def test_starting_again_reuses_the_one_applicant(client, check, client_at_zero, sumsub_server):
    client.force_login(client_at_zero)
    client.post(start_url(check))
    client.post(start_url(check))

    assert ProviderApplicant.objects.filter(user=client_at_zero).count() == 1
    assert len(sumsub_server.applicants) == 1
    assert len(sumsub_server.calls_to("/resources/applicants")) == 1
    assert len(sumsub_server.links) == 2


def test_an_applicant_sumsub_already_has_is_adopted(client, check, client_at_zero, sumsub_server):
    existing = sumsub_server.applicant_add(str(client_at_zero.pk))
    client.force_login(client_at_zero)
    client.post(start_url(check))
    assert ProviderApplicant.objects.get(user=client_at_zero).applicant_id == existing


def test_sumsub_unreachable_says_so_and_changes_nothing(
    client, check, client_at_zero, sumsub_server
):
    sumsub_server.fault("/resources/applicants", "status", status=503)
    client.force_login(client_at_zero)
    response = client.post(start_url(check))

    assert response.status_code == 302 and response["Location"] == VERIFICATION
    (message,) = messages_of(response)
    assert "Sumsub cannot be reached at the moment" in message
    assert not ProviderApplicant.objects.exists()


def test_a_configuration_sumsub_refuses_is_not_shown_to_the_trader(
    client, check, client_at_zero, sumsub_server
):
    check.provider_level = "no-such-level"
    check.save()
    client.force_login(client_at_zero)
    response = client.post(start_url(check))

    (message,) = messages_of(response)
    assert "cannot start at the moment" in message
    assert "no-such-level" not in message


def test_a_disabled_provider_cannot_be_started(client, sumsub, check, client_at_zero):
    KycProvider.objects.filter(pk=sumsub.pk).update(enabled=False)
    client.force_login(client_at_zero)
    response = client.post(start_url(check))
    assert messages_of(response) == ["This check is not available at the moment."]


def test_an_approved_check_is_not_started_again(client, check, client_at_zero, sumsub_server):
    Submission.objects.create(
        user=client_at_zero, requirement=check, status=Submission.APPROVED, provider_id=1
    )
    client.force_login(client_at_zero)
    response = client.post(start_url(check))
    assert messages_of(response) == ["It is approved."]
    assert sumsub_server.calls == []


def test_a_check_under_review_can_be_resumed(client, check, client_at_zero, sumsub_server):
    Submission.objects.create(user=client_at_zero, requirement=check, status=Submission.PENDING)
    client.force_login(client_at_zero)
    response = client.post(start_url(check))
    assert response["Location"].startswith("https://in.sumsub.com/")


def test_residents_of_a_blocked_country_cannot_start(client, check, sumsub_server):
    trader = TraderFactory(kyc_level=False, profile__country="KP")
    client.force_login(trader)
    response = client.post(start_url(check))
    assert "not available for residents" in messages_of(response)[0]
    assert sumsub_server.calls == []


def test_ids_that_are_not_a_provider_check_for_this_client_are_404(
    client, sumsub, check, client_at_zero, sumsub_server
):
    document = Requirement.objects.filter(kind=Requirement.DOCUMENT).first()
    kept_for_others = Requirement.objects.create(
        level=check.level,
        name="Extra check",
        kind=Requirement.PROVIDER,
        provider=sumsub,
        provider_level=LEVEL_NAME,
        only_for_country_rules=True,
    )
    CountryRule.objects.get(country="NG").extra_requirements.add(kept_for_others)
    inactive = Requirement.objects.create(
        level=check.level,
        name="Old check",
        kind=Requirement.PROVIDER,
        provider=sumsub,
        provider_level=LEVEL_NAME,
        is_active=False,
    )
    client.force_login(client_at_zero)
    for requirement in (document, kept_for_others, inactive):
        assert client.post(start_url(requirement)).status_code == 404
    assert client.post("/room/verification/provider/999999/start/").status_code == 404
    assert sumsub_server.calls == []
    # The Nigerian resident it is kept for may start it.
    nigerian = TraderFactory(kyc_level=False, profile__country="NG")
    client.force_login(nigerian)
    assert client.post(start_url(kept_for_others)).status_code == 302


def test_the_button_needs_a_signed_in_post(client, check, client_at_zero):
    response = client.post(start_url(check))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    client.force_login(client_at_zero)
    assert client.get(start_url(check)).status_code == 405


def test_the_button_needs_the_csrf_token(check, client_at_zero):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(client_at_zero)
    assert strict.post(start_url(check)).status_code == 403


def test_the_button_costs_a_fixed_number_of_queries(
    client, check, client_at_zero, sumsub_server, django_assert_num_queries
):
    client.force_login(client_at_zero)
    client.post(start_url(check))  # the applicant is kept on the first start
    # The user (the session is cached), the requirement, the client's country
    # and whether it is blocked, the current submission, the applicant.
    with django_assert_num_queries(6):
        response = client.post(start_url(check))
    assert response.status_code == 302


# --- the mobile app's SDK token -----------------------------------------------------------


def test_the_app_gets_a_token_for_the_sdk(check, client_at_zero, sumsub_server):
    response = api_for(client_at_zero).post(token_url(check))

    assert response.status_code == 200, response.content
    assert response.json() == {
        "token": sumsub_server.tokens[0]["token"],
        "provider": "sumsub",
        "level_name": LEVEL_NAME,
    }
    assert response["Cache-Control"] == "no-store"
    assert ProviderApplicant.objects.filter(user=client_at_zero).count() == 1


def test_another_clients_requirement_is_a_404(sumsub, check, sumsub_server):
    kept_for_others = Requirement.objects.create(
        level=check.level,
        name="Extra check",
        kind=Requirement.PROVIDER,
        provider=sumsub,
        provider_level=LEVEL_NAME,
        only_for_country_rules=True,
    )
    CountryRule.objects.get(country="NG").extra_requirements.add(kept_for_others)
    api = api_for(TraderFactory(kyc_level=False))
    response = api.post(token_url(kept_for_others))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    document = Requirement.objects.filter(kind=Requirement.DOCUMENT).first()
    assert api.post(token_url(document)).status_code == 404
    assert sumsub_server.calls == []


def test_the_token_needs_authentication(check):
    response = APIClient().post(token_url(check))
    assert response.status_code == 401


def test_a_provider_failure_is_a_502(check, client_at_zero, sumsub_server):
    sumsub_server.fault("/resources/accessTokens", "status", status=500)
    response = api_for(client_at_zero).post(token_url(check))
    assert response.status_code == 502
    assert response.json()["code"] == "provider_error"
    assert "Sumsub" in response.json()["detail"]


def test_an_approved_check_gets_no_token(check, client_at_zero, sumsub_server):
    Submission.objects.create(user=client_at_zero, requirement=check, status=Submission.APPROVED)
    response = api_for(client_at_zero).post(token_url(check))
    assert response.status_code == 422
    assert response.json() == {"detail": "It is approved.", "code": "not_allowed"}


def test_tokens_are_rate_limited(check, client_at_zero, sumsub_server):
    api = api_for(client_at_zero)
    statuses = [api.post(token_url(check)).status_code for _ in range(11)]
    assert statuses[:10] == [200] * 10
    assert statuses[10] == 429


def test_the_token_costs_a_fixed_number_of_queries(
    check, client_at_zero, sumsub_server, django_assert_num_queries
):
    api = api_for(client_at_zero)
    api.post(token_url(check))
    with django_assert_num_queries(6):
        assert api.post(token_url(check)).status_code == 200


def test_the_endpoint_is_in_the_openapi_schema(client):
    staff = StaffFactory()
    client.force_login(staff)
    schema = client.get("/api/v1/schema/?format=json").json()
    assert "/api/v1/kyc/requirements/{requirement_id}/access-token/" in schema["paths"]


# --- the built-in manual review --------------------------------------------------------------


def test_the_manual_provider_is_registered_and_calls_nobody(client_at_zero):
    manual = KycProvider.objects.get(identifier="manual")
    adapter = provider_for(manual)
    assert "manual" in KYC_PROVIDERS and "sumsub" in KYC_PROVIDERS
    assert not adapter.external
    requirement = Requirement(name="Identity", kind=Requirement.PROVIDER, provider=manual)
    assert adapter.applicant_for(user=client_at_zero, requirement=requirement) == ""
    start = adapter.start(
        user=client_at_zero, requirement=requirement, applicant_id="", return_url=""
    )
    assert start.redirect_url == VERIFICATION and start.applicant_id == ""
    with pytest.raises(ProviderError) as caught:
        adapter.access_token(user=client_at_zero, requirement=requirement, applicant_id="")
    assert caught.value.permanent
    with pytest.raises(WebhookRejected):
        adapter.verify_webhook(b"{}", {})


def test_a_manual_provider_check_sends_the_trader_to_the_verification_page(
    client, check, client_at_zero
):
    check.provider = KycProvider.objects.get(identifier="manual")
    check.save()
    client.force_login(client_at_zero)
    response = client.post(start_url(check))
    assert response["Location"] == VERIFICATION
    assert not ProviderApplicant.objects.exists()
    response = api_for(client_at_zero).post(token_url(check))
    assert response.status_code == 502
