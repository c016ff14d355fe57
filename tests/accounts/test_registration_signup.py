"""The sign-up page built from registration flows: per country and campaign,
steps, consents with their versions, blocked countries, hostile input, htmx."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import (
    ClientProfile,
    Consent,
    LegalDocument,
    LegalDocumentVersion,
    RegistrationField,
    RegistrationFlow,
    User,
)
from accounts.registration import flow_for
from backoffice import policies
from backoffice.models import Event
from tests.factories import TEST_PASSWORD, StaffFactory, enable_totp, signup_data, totp_code

pytestmark = pytest.mark.django_db

URL = "/accounts/signup/"
EMAIL = "new.trader@example.com"


def default_flow() -> RegistrationFlow:
    return RegistrationFlow.objects.get(is_default=True)


def german_flow() -> RegistrationFlow:
    """A flow for Germany: asks the tax id (a pattern) and the city, and only
    the terms."""
    flow = RegistrationFlow.objects.create(name="Germany", countries=["DE"], priority=10)
    flow.documents.set(LegalDocument.objects.filter(slug="terms"))
    RegistrationField.objects.create(
        flow=flow, name="country", profile_field="country", label="Country", step=1, order=1
    )
    RegistrationField.objects.create(
        flow=flow, name="first_name", profile_field="first_name", label="Vorname", step=2
    )
    RegistrationField.objects.create(
        flow=flow, name="last_name", profile_field="last_name", label="Nachname", step=2
    )
    RegistrationField.objects.create(
        flow=flow, name="city", profile_field="city", label="City", step=2, required=False
    )
    RegistrationField.objects.create(
        flow=flow,
        name="tax_id",
        label="Tax identification number",
        kind="text",
        regex=r"\d{11}",
        regex_message="Your tax id has 11 digits.",
        step=3,
    )
    return flow


def campaign_flow(**extra) -> RegistrationFlow:
    """A flow for the summer campaign: asks the trading experience."""
    flow = RegistrationFlow.objects.create(
        name="Summer", campaigns="SUMMER26\nbeach", priority=20, **extra
    )
    flow.documents.set(LegalDocument.objects.filter(slug__in=["terms", "risk-disclosure"]))
    RegistrationField.objects.create(
        flow=flow, name="country", profile_field="country", label="Country", step=1
    )
    RegistrationField.objects.create(
        flow=flow,
        name="experience",
        label="Trading experience",
        kind="choice",
        choices="none|None yet\nsome|Some\npro|Professional",
        step=1,
    )
    RegistrationField.objects.create(
        flow=flow,
        name="years",
        label="Years trading",
        kind="number",
        min_value=0,
        max_value=80,
        required=False,
    )
    return flow


@pytest.fixture
def blocked_fr():
    """A policy refusing residents of France (the KYC app registers its own,
    for its blocked countries; this one is the test's)."""

    def refuse_france(user, *, country="", **context):
        if country == "FR":
            return policies.Decision(False, "We cannot open accounts for residents of France.")
        return None

    policies.register(policies.REGISTER, "tests.blocked_fr", refuse_france)
    yield
    policies.unregister(policies.REGISTER, "tests.blocked_fr")


def german_data(**overrides):
    flow = RegistrationFlow.objects.get(name="Germany")
    terms = LegalDocumentVersion.objects.get(document__slug="terms")
    data = {
        "email": EMAIL,
        "password1": TEST_PASSWORD,
        "password2": TEST_PASSWORD,
        "flow": str(flow.pk),
        "country": "DE",
        "promo_code": "",
        "first_name": "Emmy",
        "last_name": "Noether",
        "city": "",
        "q_tax_id": "12345678901",
        "consent_terms": str(terms.pk),
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- The default flow ---------------------------------------------------------------


def test_the_default_flow_asks_country_names_birth_date_phone_and_three_consents(client):
    page = client.get(URL).content.decode()
    for label in (
        "Email",
        "Password",
        "Country of residence",
        "First name",
        "Last name",
        "Date of birth",
        "Phone",
        "Promo code",
    ):
        assert f">{label}" in page, label
    assert "Step 1 of 2" in page and "Step 2 of 2" in page
    for slug in ("terms", "privacy", "risk-disclosure"):
        version = LegalDocumentVersion.objects.get(document__slug=slug)
        assert f'name="consent_{slug}" value="{version.pk}"' in page
        # The label links to the version's public page, in a new tab.
        assert f'href="/legal/{slug}/{version.version}/" target="_blank"' in page
    assert f'name="flow" value="{default_flow().pk}"' in page


def test_signup_records_profile_flow_consents_and_event(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(URL, signup_data(), REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email=EMAIL)
    assert (user.first_name, user.last_name) == ("Ada", "Lovelace")
    profile = ClientProfile.objects.get(user=user)
    assert profile.country.code == "GB"
    assert profile.date_of_birth.isoformat() == "1990-12-10"
    assert str(profile.phone) == "+442079460958"
    assert profile.registration_flow == default_flow()
    assert profile.registration_data == {}
    consents = Consent.objects.filter(user=user).select_related("version__document")
    assert sorted(c.version.document.slug for c in consents) == [
        "privacy",
        "risk-disclosure",
        "terms",
    ]
    assert {c.ip for c in consents} == {"203.0.113.9"}
    assert {c.flow_id for c in consents} == {default_flow().pk}
    event = Event.objects.get(name="client.registered", client=user)
    assert event.payload["flow_id"] == default_flow().pk
    assert event.payload["campaign"] == ""
    # No personal data in the event.
    assert "Ada" not in str(event.payload) and "1990" not in str(event.payload)
    assert len(mail.outbox) == 1


def test_each_consent_is_required(client):
    response = client.post(URL, signup_data(consent_privacy=None))
    assert response.status_code == 200
    assert "Accept the Privacy policy to open an account." in response.content.decode()
    assert not User.objects.exists()


def test_the_profile_age_check_applies(client):
    response = client.post(URL, signup_data(date_of_birth="2015-01-01"))
    assert "You must be at least 18 years old." in response.content.decode()
    assert not User.objects.exists()


def test_required_profile_fields_are_required(client):
    response = client.post(URL, signup_data(first_name="", phone=""))
    page = response.content.decode()
    assert response.status_code == 200
    assert page.count("This field is required.") == 2
    assert not User.objects.exists()


# --- Per country and campaign ------------------------------------------------------------


def test_the_flow_is_chosen_by_country_campaign_priority_and_default():
    de = german_flow()
    summer = campaign_flow()
    default = default_flow()
    assert flow_for(country="DE") == de
    assert flow_for(country="de") == de
    assert flow_for(country="GB") == default
    assert flow_for(country="DE", campaign="summer26") == summer  # campaign first
    assert flow_for(country="", campaign="BEACH") == summer
    assert flow_for(country="GB", campaign="unknown") == default
    # A campaign flow limited to countries applies only there.
    summer.countries = ["GB"]
    summer.save()
    assert flow_for(country="DE", campaign="summer26") == de
    assert flow_for(country="GB", campaign="summer26") == summer
    # Among equals, the lowest priority number wins.
    other = RegistrationFlow.objects.create(name="Germany bis", countries=["DE"], priority=5)
    assert flow_for(country="DE") == other
    # An inactive flow never applies; the default stays the fallback.
    other.is_active = False
    other.save()
    assert flow_for(country="DE") == de


def test_a_country_flow_asks_its_own_fields_and_stores_the_answers(client):
    german_flow()
    page = client.get(URL, {"country": "DE"}).content.decode()
    assert "Tax identification number" in page
    assert "Date of birth" not in page
    assert "Step 1 of 3" in page
    assert 'name="consent_terms"' in page and 'name="consent_privacy"' not in page

    response = client.post(URL, german_data(), REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302, response.content.decode()[:3000]
    user = User.objects.get(email=EMAIL)
    profile = user.profile
    assert profile.registration_flow.name == "Germany"
    assert profile.registration_data == {"tax_id": "12345678901"}
    assert profile.country.code == "DE"
    assert profile.date_of_birth is None
    assert (user.first_name, user.last_name) == ("Emmy", "Noether")
    assert list(user.consents.values_list("version__document__slug", flat=True)) == ["terms"]


def test_a_custom_field_pattern_is_checked(client):
    german_flow()
    response = client.post(URL, german_data(q_tax_id="1234"))
    assert "Your tax id has 11 digits." in response.content.decode()
    # A match in the middle of the answer is not enough.
    response = client.post(URL, german_data(q_tax_id="x12345678901x"))
    assert "Your tax id has 11 digits." in response.content.decode()
    assert not User.objects.exists()


def test_a_campaign_link_is_kept_in_the_session_and_decides_the_flow(client):
    summer = campaign_flow()
    page = client.get(URL, {"campaign": "Summer26"}).content.decode()
    assert client.session["signup_campaign"] == "summer26"
    assert "Trading experience" in page
    assert 'value="summer26"' in page  # the promo code field shows it
    # Later visits (the session) keep it.
    page = client.get(URL).content.decode()
    assert "Trading experience" in page
    data = signup_data(
        flow=str(summer.pk),
        promo_code="summer26",
        q_experience="some",
        q_years="2.5",
        first_name=None,
        last_name=None,
        date_of_birth=None,
        phone=None,
        consent_privacy=None,
    )
    response = client.post(URL, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    user = User.objects.get(email=EMAIL)
    assert user.profile.campaign == "summer26"
    assert user.profile.registration_flow == summer
    assert user.profile.registration_data == {"experience": "some", "years": "2.5"}
    event = Event.objects.get(name="client.registered", client=user)
    assert event.payload["campaign"] == "summer26"
    assert event.payload["flow_id"] == summer.pk


def test_a_typed_promo_code_changes_the_flow_and_asks_the_new_questions(client):
    summer = campaign_flow()
    # Without JavaScript: the visitor typed a promo code on the default form.
    response = client.post(URL, signup_data(promo_code="BEACH"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "The questions depend on your country of residence and promo code" in page
    assert "Trading experience" in page
    assert f'name="flow" value="{summer.pk}"' in page
    # What was typed is kept, and fields not seen yet are not called missing.
    assert 'value="new.trader@example.com"' in page
    assert "This field is required." not in page
    assert not User.objects.exists()


def test_a_promo_code_that_matches_no_campaign_is_still_recorded(client):
    response = client.post(URL, signup_data(promo_code=" Partner-42 "))
    assert response.status_code == 302
    assert User.objects.get(email=EMAIL).profile.campaign == "partner-42"


# --- Blocked countries ----------------------------------------------------------------


def test_a_blocked_country_is_refused_with_the_reason_and_nothing_is_created(client, blocked_fr):
    response = client.post(URL, signup_data(country="FR"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "We cannot open accounts for residents of France." in page
    assert 'id="id_country_error"' in page  # next to the country field
    assert not User.objects.exists()
    assert not ClientProfile.objects.exists()
    assert not Consent.objects.exists()
    assert not Event.objects.filter(name="client.registered").exists()
    assert len(mail.outbox) == 0


def test_a_blocked_country_is_refused_as_soon_as_it_is_chosen(client, blocked_fr):
    response = client.get(URL, {"country": "FR"}, HTTP_HX_REQUEST="true")
    assert "We cannot open accounts for residents of France." in response.content.decode()


def test_the_kyc_blocked_countries_refuse_sign_up(client):
    # The KYC app's own policy, from its default country rules.
    response = client.post(URL, signup_data(country="KP"))
    assert response.status_code == 200
    assert "We cannot open accounts for residents of this country." in response.content.decode()
    assert not User.objects.exists()


def test_a_country_blocked_between_the_form_and_the_save_creates_nothing(client, monkeypatch):
    calls = []

    def refuse_on_second_ask(user, *, country="", **context):
        calls.append(country)
        if len(calls) > 1:
            return policies.Decision(False, "Blocked a moment ago.")
        return None

    policies.register(policies.REGISTER, "tests.race", refuse_on_second_ask)
    try:
        response = client.post(URL, signup_data())
    finally:
        policies.unregister(policies.REGISTER, "tests.race")
    assert response.status_code == 200
    assert "Blocked a moment ago." in response.content.decode()
    assert not User.objects.exists()
    assert not Consent.objects.exists()


# --- Consent versions -------------------------------------------------------------------


def publish_version(slug: str, version: str = "2.0") -> LegalDocumentVersion:
    return LegalDocumentVersion.objects.create(
        document=LegalDocument.objects.get(slug=slug),
        version=version,
        body="New terms.",
        effective_at=timezone.now() - timedelta(seconds=1),
    )


def test_a_version_published_while_filling_the_form_must_be_read_and_accepted(client):
    data = signup_data()  # the form as shown: terms 1.0
    new = publish_version("terms")
    response = client.post(URL, data)
    page = response.content.decode()
    assert response.status_code == 200
    assert "A new version of the Client agreement (terms and conditions) is in effect." in page
    # The new version is shown, unticked, with its link.
    assert f'name="consent_terms" value="{new.pk}"' in page
    assert f'value="{new.pk}" checked' not in page
    assert 'href="/legal/terms/2.0/"' in page
    assert not User.objects.exists()

    data["consent_terms"] = str(new.pk)
    response = client.post(URL, data)
    assert response.status_code == 302
    user = User.objects.get(email=EMAIL)
    assert user.consents.filter(version=new).exists()


def test_a_version_published_between_the_checks_and_the_save_rolls_everything_back(
    client, monkeypatch
):
    """The form checked the versions it knew; the new one is in effect by the
    time the service records the consents: nothing is created, and the form
    comes back with the new version to accept."""
    from accounts import forms_signup

    data = signup_data()
    new = publish_version("privacy")
    real = forms_signup.current_versions
    calls = []

    def as_before_the_publication(*, flow_id):
        calls.append(flow_id)
        versions = real(flow_id=flow_id)
        if len(calls) == 1:  # the form the visitor filled in
            return [v for v in versions if v.pk != new.pk] + [
                LegalDocumentVersion.objects.select_related("document").get(
                    document__slug="privacy", version="1.0"
                )
            ]
        return versions

    monkeypatch.setattr(forms_signup, "current_versions", as_before_the_publication)
    response = client.post(URL, data)
    page = response.content.decode()
    assert response.status_code == 200
    assert "A new version of the Privacy policy is in effect." in page
    assert f'name="consent_privacy" value="{new.pk}"' in page  # the form shows it now
    assert not User.objects.exists()
    assert not Consent.objects.exists()
    assert not Event.objects.filter(name="client.registered").exists()


def test_a_future_version_is_not_asked_yet(client):
    LegalDocumentVersion.objects.create(
        document=LegalDocument.objects.get(slug="terms"),
        version="3.0",
        body="Later.",
        effective_at=timezone.now() + timedelta(days=30),
    )
    response = client.post(URL, signup_data())
    assert response.status_code == 302
    assert User.objects.get(email=EMAIL).consents.filter(version__version="1.0").count() == 3


# --- Hostile input -------------------------------------------------------------------------


def test_a_forged_consent_version_of_another_document_is_refused(client):
    privacy = LegalDocumentVersion.objects.get(document__slug="privacy")
    response = client.post(URL, signup_data(consent_terms=str(privacy.pk)))
    assert response.status_code == 200
    assert "A new version of the Client agreement" in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.parametrize("value", ["0", "-1", "abc", "99999999999999999999", "1 OR 1=1"])
def test_junk_consent_values_are_refused(client, value):
    response = client.post(URL, signup_data(consent_terms=value))
    assert response.status_code == 200
    assert not User.objects.exists()


@pytest.mark.parametrize("flow", ["999999", "-3", "abc", "", "1e9" * 50])
def test_an_unknown_or_forged_flow_id_only_re_asks_the_form(client, flow):
    response = client.post(URL, signup_data(flow=flow))
    assert response.status_code == 200
    assert "The questions depend on your country" in response.content.decode()
    assert not User.objects.exists()


def test_a_flow_id_cannot_pick_another_flow(client):
    """The flow is chosen from the country and campaign, never from the
    posted id: posting the German flow's id for a British visitor asks the
    default flow again."""
    de = german_flow()
    response = client.post(URL, signup_data(flow=str(de.pk), q_tax_id="12345678901"))
    page = response.content.decode()
    assert f'name="flow" value="{default_flow().pk}"' in page
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "field,value",
    [
        ("first_name", "A" * 151),
        ("phone", "9" * 200),
        ("country", "ZZ"),
        ("country", "GB" * 500),
        ("promo_code", "x" * 51),
        ("promo_code", "<script>"),
        ("date_of_birth", "1990-02-30"),
        ("email", "a" * 300 + "@example.com"),
    ],
)
def test_oversized_or_malformed_values_are_refused(client, field, value):
    response = client.post(URL, signup_data(**{field: value}))
    assert response.status_code == 200
    assert not User.objects.exists()
    if "<" in value:  # shown back escaped, never as markup
        assert 'value="&lt;script&gt;"' in response.content.decode()


def test_oversized_custom_answers_are_refused(client):
    german_flow()
    response = client.post(URL, german_data(q_tax_id="1" * 100_000))
    assert response.status_code == 200
    assert "Ensure this value has at most 500 characters" in response.content.decode()
    assert not User.objects.exists()


def test_a_campaign_link_with_junk_is_ignored(client):
    client.get(URL, {"campaign": "<script>alert(1)</script>"})
    assert "signup_campaign" not in client.session
    client.get(URL, {"promo": "x" * 500})
    assert "signup_campaign" not in client.session


def test_staff_preview_is_not_open_to_visitors(client):
    de = german_flow()
    # A visitor's ?flow= is ignored: the flow is the one that applies.
    page = client.get(URL, {"flow": de.pk}).content.decode()
    assert "Tax identification number" not in page


# --- htmx ------------------------------------------------------------------------------------


def test_changing_the_country_re_renders_the_form_for_its_flow(client):
    german_flow()
    response = client.get(URL, {"country": "DE", "promo_code": ""}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in page  # the form alone
    assert "Tax identification number" in page
    assert 'name="consent_terms"' in page and 'name="consent_privacy"' not in page
    assert '<option value="DE" selected>' in page
    # Back to another country: the default flow.
    page = client.get(URL, {"country": "GB", "promo_code": ""}, HTTP_HX_REQUEST="true")
    assert "Date of birth" in page.content.decode()


def test_the_country_field_asks_htmx_for_the_new_form(client):
    page = client.get(URL).content.decode()
    assert 'hx-get="/accounts/signup/"' in page
    assert 'hx-target="#signup-body"' in page
    assert 'hx-include="[name=promo_code]"' in page


# --- Preview, query count ------------------------------------------------------------------


def staff_http(roles):
    from django.test import Client as HttpClient

    staff = StaffFactory(roles=roles)
    device = enable_totp(staff)
    http = HttpClient()
    http.post("/accounts/login/", {"login": staff.email, "password": TEST_PASSWORD})
    http.post("/accounts/2fa/", {"code": totp_code(device)})
    return http


def test_compliance_previews_any_flow(client):
    from accounts.roles import COMPLIANCE

    de = german_flow()
    de.is_active = False
    de.save()
    http = staff_http([COMPLIANCE])
    response = http.get(URL, {"flow": de.pk})
    page = response.content.decode()
    assert response.status_code == 200
    assert "Preview of the sign-up flow “Germany” (inactive)" in page
    assert "Tax identification number" in page
    assert "disabled>Sign up" in page
    assert http.get(URL, {"flow": 999999}).status_code == 404
    assert http.get(URL, {"flow": "abc"}).status_code == 404


def test_staff_without_a_verified_second_factor_cannot_preview(client):
    from accounts.roles import COMPLIANCE

    de = german_flow()
    client.force_login(StaffFactory(roles=[COMPLIANCE]))  # password only
    assert client.get(URL, {"flow": de.pk}).status_code == 404


def test_staff_without_the_permission_cannot_preview():
    from accounts.roles import FINANCE

    de = german_flow()
    http = staff_http([FINANCE])
    assert http.get(URL, {"flow": de.pk}).status_code == 404


def test_sign_up_page_query_count(client, django_assert_num_queries):
    german_flow()
    campaign_flow()
    client.get(URL)  # warm the brand cache
    # The flows, the chosen flow's fields, its documents' versions in effect.
    with django_assert_num_queries(3):
        assert client.get(URL).status_code == 200
    # With a country chosen, the policy is asked too (the KYC app's country rules).
    with django_assert_num_queries(4):
        assert client.get(URL, {"country": "DE"}, HTTP_HX_REQUEST="true").status_code == 200
