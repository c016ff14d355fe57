"""The registration constructor in the admin: flows and their fields, the one
default flow, append-only legal versions, the consents list, the client's page."""

from __future__ import annotations

import pytest

from accounts.models import (
    Consent,
    LegalDocument,
    LegalDocumentVersion,
    RegistrationField,
    RegistrationFlow,
)
from accounts.roles import COMPLIANCE, SALES, SUPPORT
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory

pytestmark = pytest.mark.django_db

FLOWS = "/admin/accounts/registrationflow/"


@pytest.fixture
def compliance():
    return signed_in_with_code(StaffFactory(roles=[COMPLIANCE]))


def field_rows(*rows: dict) -> dict:
    data = {
        "fields-TOTAL_FORMS": str(len(rows)),
        "fields-INITIAL_FORMS": "0",
        "fields-MIN_NUM_FORMS": "0",
        "fields-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        values = {
            "step": "1",
            "order": "100",
            "profile_field": "",
            "name": "",
            "label": "",
            "kind": "text",
            "required": "on",
            "help_text": "",
            "choices": "",
            "min_value": "",
            "max_value": "",
            "regex": "",
            "regex_message": "",
        }
        values.update(row)
        data.update({f"fields-{i}-{k}": v for k, v in values.items() if v is not None})
    return data


def flow_post(*rows: dict, **overrides) -> dict:
    data = {
        "name": "Spain",
        "is_active": "on",
        "countries": ["ES"],
        "campaigns": "",
        "priority": "50",
        "documents": [str(LegalDocument.objects.get(slug="terms").pk)],
        "_save": "Save",
    }
    data.update(field_rows(*rows))
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


COUNTRY = {"profile_field": "country", "step": "1"}


def test_compliance_builds_a_flow_with_profile_fields_and_custom_questions(compliance):
    response = compliance.post(
        f"{FLOWS}add/",
        flow_post(
            COUNTRY,
            {"profile_field": "first_name", "step": "2"},
            {
                "name": "income",
                "label": "Yearly income",
                "kind": "choice",
                "choices": "low|Below 20,000\nmid|20,000 to 100,000\nhigh|Above 100,000",
                "step": "2",
            },
            {
                "name": "dni",
                "label": "DNI",
                "regex": r"\d{8}[A-Z]",
                "regex_message": "8 digits, 1 letter",
            },
        ),
    )
    assert response.status_code == 302, response.content.decode()[:4000]
    flow = RegistrationFlow.objects.get(name="Spain")
    fields = {f.name: f for f in flow.fields.all()}
    assert set(fields) == {"country", "first_name", "income", "dni"}
    # A profile field takes its name and, when blank, its usual label.
    assert fields["first_name"].label == "First name"
    assert [c.code for c in flow.countries] == ["ES"]
    # The flow applies to Spain at once.
    from accounts.registration import flow_for

    assert flow_for(country="ES") == flow


@pytest.mark.parametrize(
    "row,message",
    [
        (
            {"name": "country", "label": "Country"},
            "is taken by the sign-up form or a profile field",
        ),
        ({"name": "email", "label": "E"}, "is taken by the sign-up form"),
        ({"name": "Tax-ID", "label": "Tax"}, "Lower-case letters, digits and underscores"),
        ({"name": "", "label": "Tax"}, "Name the custom question"),
        ({"name": "tax", "label": ""}, "A custom question needs a label."),
        (
            {"name": "pick", "label": "Pick", "kind": "choice", "choices": "a|A\na|Again"},
            "the value &#x27;a&#x27; is used twice",
        ),
        ({"name": "pick", "label": "Pick", "kind": "choice", "choices": ""}, "List the choices"),
        ({"name": "tax", "label": "Tax", "regex": "([a-z"}, "not a valid regular expression"),
        (
            {"name": "age", "label": "Age", "kind": "number", "min_value": "50", "max_value": "10"},
            "The largest value is below the smallest.",
        ),
        ({"name": "tax", "label": "Tax", "max_value": "99999"}, "at most 2000 characters"),
        ({"profile_field": "city", "regex": ".*"}, "A profile field has its own checks"),
    ],
)
def test_a_field_that_cannot_work_is_refused(compliance, row, message):
    response = compliance.post(f"{FLOWS}add/", flow_post(COUNTRY, row))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not RegistrationFlow.objects.filter(name="Spain").exists()


def test_a_name_or_profile_field_used_twice_is_refused(compliance):
    response = compliance.post(
        f"{FLOWS}add/", flow_post(COUNTRY, {"profile_field": "country", "step": "2"})
    )
    assert "The profile field “country” appears twice in this flow." in response.content.decode()
    response = compliance.post(
        f"{FLOWS}add/",
        flow_post({"name": "tax", "label": "A"}, {"name": "tax", "label": "B"}),
    )
    assert "The name “tax” appears twice in this flow." in response.content.decode()
    assert not RegistrationFlow.objects.filter(name="Spain").exists()


def test_bad_campaign_codes_are_refused_and_good_ones_normalised(compliance):
    response = compliance.post(f"{FLOWS}add/", flow_post(COUNTRY, campaigns="ok-1\n<b>bad</b>"))
    assert "Codes have letters, digits" in response.content.decode()
    response = compliance.post(
        f"{FLOWS}add/", flow_post(COUNTRY, campaigns=" Summer26 \nsummer26\n")
    )
    assert response.status_code == 302
    assert RegistrationFlow.objects.get(name="Spain").campaigns == "summer26"


def test_exactly_one_default_flow(compliance):
    old = RegistrationFlow.objects.get(is_default=True)
    # The default cannot be switched off, deactivated or deleted.
    response = compliance.post(
        f"{FLOWS}{old.pk}/change/",
        {
            "name": old.name,
            "is_active": "on",
            "priority": "100",
            "campaigns": "",
            "_save": "Save",
            **field_rows(),
            "fields-INITIAL_FORMS": "0",
        },
    )
    assert "One flow must be the default" in response.content.decode()
    response = compliance.post(f"{FLOWS}add/", flow_post(COUNTRY, is_default="on", is_active=None))
    assert "The default flow must stay active." in response.content.decode()
    assert compliance.get(f"{FLOWS}{old.pk}/delete/").status_code == 403
    # Ticking "default" on another flow moves the default there.
    response = compliance.post(f"{FLOWS}add/", flow_post(COUNTRY, is_default="on"))
    assert response.status_code == 302
    assert list(RegistrationFlow.objects.filter(is_default=True)) == [
        RegistrationFlow.objects.get(name="Spain")
    ]


def test_the_flow_list_links_a_preview_and_counts_fields(compliance, django_assert_max_num_queries):
    flow = RegistrationFlow.objects.get(is_default=True)
    compliance.get(FLOWS)
    with django_assert_max_num_queries(10):
        page = compliance.get(FLOWS).content.decode()
    assert f'href="/accounts/signup/?flow={flow.pk}"' in page
    assert compliance.get(f"/accounts/signup/?flow={flow.pk}").status_code == 200


def test_support_reads_flows_but_cannot_change_them():
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    flow = RegistrationFlow.objects.get(is_default=True)
    assert http.get(FLOWS).status_code == 200
    assert http.get(f"{FLOWS}add/").status_code == 403
    response = http.post(f"{FLOWS}{flow.pk}/change/", {"name": "Hacked"})
    assert response.status_code == 403
    assert RegistrationFlow.objects.get(pk=flow.pk).name != "Hacked"


# --- Legal documents ------------------------------------------------------------------


def version_rows(document: LegalDocument, *new: dict, edits: dict | None = None) -> dict:
    versions = list(document.versions.order_by("-effective_at", "-id"))
    data = {
        "versions-TOTAL_FORMS": str(len(versions) + len(new)),
        "versions-INITIAL_FORMS": str(len(versions)),
        "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    for i, v in enumerate(versions):
        row = {
            "id": str(v.pk),
            "document": str(document.pk),
            "version": v.version,
            "effective_at_0": v.effective_at.strftime("%Y-%m-%d"),
            "effective_at_1": v.effective_at.strftime("%H:%M:%S"),
            "body": v.body,
        }
        row.update((edits or {}).get(v.pk, {}))
        data.update({f"versions-{i}-{k}": val for k, val in row.items()})
    for j, row in enumerate(new, start=len(versions)):
        data.update({f"versions-{j}-{k}": val for k, val in row.items()})
    return data


def test_an_accepted_version_cannot_be_edited_and_a_new_one_can_be_added(compliance, trader):
    document = LegalDocument.objects.get(slug="terms")
    accepted = document.versions.get()
    Consent.objects.create(user=trader, version=accepted)
    data = {
        "kind": document.kind,
        "title": document.title,
        "_save": "Save",
        **version_rows(
            document,
            {
                "version": "2.0",
                "effective_at_0": "2026-01-01",
                "effective_at_1": "00:00:00",
                "body": "The new agreement.",
            },
            edits={accepted.pk: {"body": "Quietly changed."}},
        ),
    }
    response = compliance.post(f"/admin/accounts/legaldocument/{document.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:4000]
    accepted.refresh_from_db()
    assert accepted.body != "Quietly changed."
    assert document.versions.get(version="2.0").body == "The new agreement."
    page = compliance.get(f"/admin/accounts/legaldocument/{document.pk}/change/").content.decode()
    assert "1 client" in page and "nobody yet" in page


def test_a_version_nobody_accepted_can_still_be_corrected(compliance):
    document = LegalDocument.objects.get(slug="privacy")
    draft = document.versions.get()
    data = {
        "kind": document.kind,
        "title": document.title,
        "_save": "Save",
        **version_rows(document, edits={draft.pk: {"body": "Fixed a typo."}}),
    }
    assert (
        compliance.post(f"/admin/accounts/legaldocument/{document.pk}/change/", data).status_code
        == 302
    )
    draft.refresh_from_db()
    assert draft.body == "Fixed a typo."


# --- Consents and the client's page ------------------------------------------------------


def test_consents_are_listed_read_only_with_filters(
    compliance, trader, django_assert_max_num_queries
):
    versions = list(LegalDocumentVersion.objects.all())
    for version in versions:
        Consent.objects.create(user=trader, version=version, ip="192.0.2.1")
    url = "/admin/accounts/consent/"
    compliance.get(url)
    with django_assert_max_num_queries(12):
        page = compliance.get(url).content.decode()
    assert trader.email in page and "192.0.2.1" in page
    terms = LegalDocument.objects.get(slug="terms")
    filtered = compliance.get(url, {"version__document__id__exact": terms.pk}).content.decode()
    assert "Client agreement" in filtered and "Privacy policy</td>" not in filtered
    privacy = LegalDocumentVersion.objects.get(document__slug="privacy")
    by_version = compliance.get(url, {"version": privacy.pk}).content.decode()
    assert "Privacy policy</td>" in by_version and "Risk disclosure</td>" not in by_version
    assert compliance.get(url, {"version": "1 OR 1=1"}).status_code == 200
    consent = Consent.objects.first()
    assert compliance.get(f"{url}add/").status_code == 403
    response = compliance.post(f"{url}{consent.pk}/change/", {"ip": "10.0.0.1"})
    assert response.status_code == 403
    assert compliance.post(f"{url}{consent.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Consent.objects.filter(ip="192.0.2.1").count() == len(versions)


def test_sales_sees_only_the_consents_of_their_clients():
    sales = StaffFactory(roles=[SALES])
    mine = TraderFactory(email="mine@example.com", profile__manager=sales)
    other = TraderFactory(email="other@example.com")
    version = LegalDocumentVersion.objects.first()
    Consent.objects.create(user=mine, version=version)
    Consent.objects.create(user=other, version=version)
    page = signed_in_with_code(sales).get("/admin/accounts/consent/").content.decode()
    assert "mine@example.com" in page
    assert "other@example.com" not in page


def test_the_client_page_shows_flow_answers_and_consents(compliance, client):
    from tests.accounts.test_registration_signup import campaign_flow

    summer = campaign_flow()
    from tests.factories import signup_data

    client.post(
        "/accounts/signup/",
        signup_data(
            flow=str(summer.pk),
            promo_code="summer26",
            q_experience="pro",
            q_years="",
            first_name=None,
            last_name=None,
            date_of_birth=None,
            phone=None,
            consent_privacy=None,
        ),
        REMOTE_ADDR="203.0.113.5",
    )
    from accounts.models import Client

    trader = Client.objects.get(email="new.trader@example.com")
    page = compliance.get(f"/admin/accounts/client/{trader.pk}/change/").content.decode()
    assert "Sign-up: flow, answers and consents" in page
    assert "Summer" in page and "summer26" in page
    assert "Trading experience" in page and "Professional" in page
    assert "Risk disclosure" in page and "203.0.113.5" in page


def test_field_definitions_are_edited_only_in_the_flow():
    # Not a page of its own: fields live inline in their flow.
    from django.contrib import admin

    assert RegistrationField not in admin.site._registry
