"""The KYC constructor in the admin: each form's checks (a requirement per
kind, a questionnaire's questions and scores, a level's limits), what a
configuration change leaves alone (clients' levels and submissions), deletion
refused while clients' data uses it, providers' write-only secrets, the
audit log, and bounded query counts of the configuration lists."""

from __future__ import annotations

import html as html_lib
import re
from decimal import Decimal

import pytest
from auditlog.models import LogEntry

from accounts.roles import ADMINISTRATOR, COMPLIANCE, SUPPORT
from backoffice.models import Event
from backoffice.secrets import decrypt
from kyc.models import (
    ClientKyc,
    CountryRule,
    KycProvider,
    Level,
    Question,
    Questionnaire,
    Requirement,
    ReviewReason,
    Submission,
)
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory
from tests.kyc.test_admin_review import document_root, requirement, submit_identity  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def compliance():
    return signed_in_with_code(StaffFactory(roles=[COMPLIANCE]))


@pytest.fixture
def administrator():
    return signed_in_with_code(StaffFactory(roles=[ADMINISTRATOR]))


def errors(response) -> str:
    """The page's error messages, as text."""
    html = response.content.decode()
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, re.S)
    return html_lib.unescape(" ".join(re.sub(r"<[^>]+>", " ", e) for e in found))


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- requirements ----------------------------------------------------------------------------


def requirement_data(**overrides) -> dict:
    data = {
        "level": Level.objects.get(number=2).pk,
        "name": "Bank statement",
        "kind": "document",
        "instructions": "",
        "document_kinds": ["proof_of_address"],
        "back_side_required": "on",
        "max_age_days": "90",
        "order": "50",
        "is_active": "on",
        "provider_level": "",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


ADD_REQUIREMENT = "/admin/kyc/requirement/add/"


def test_a_document_requirement_is_added_with_its_kinds(compliance):
    response = compliance.post(ADD_REQUIREMENT, requirement_data())
    assert response.status_code == 302, errors(response)
    added = Requirement.objects.get(name="Bank statement")
    assert (added.kind, added.document_kinds, added.max_age_days) == (
        "document",
        ["proof_of_address"],
        90,
    )
    assert LogEntry.objects.get_for_object(added).exists()  # in the audit log


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"document_kinds": None}, "Choose at least one kind of document."),
        ({"document_kinds": ["passport", "banana"]}, "Select a valid choice. banana"),
        ({"kind": "questionnaire", "document_kinds": None}, "Choose the questionnaire"),
        ({"kind": "provider"}, "Choose the provider that runs the check."),
        ({"kind": "alchemy"}, "Select a valid choice. alchemy"),
        ({"max_age_days": "-5"}, "greater than or equal to 0"),
    ],
)
def test_a_requirement_is_checked_for_its_kind(compliance, overrides, message):
    response = compliance.post(ADD_REQUIREMENT, requirement_data(**overrides))
    assert response.status_code == 200
    assert message in errors(response)
    assert not Requirement.objects.filter(name="Bank statement").exists()


def test_a_provider_check_needs_an_outside_enabled_provider_and_its_level(compliance):
    manual = KycProvider.objects.get(identifier="manual")
    data = requirement_data(kind="provider", provider=manual.pk, provider_level="")
    text = errors(compliance.post(ADD_REQUIREMENT, data))
    assert "The built-in manual review is not an outside check" in text
    assert "Name the provider's level" in text

    sumsub = KycProvider.objects.create(identifier="sumsub", kind="sumsub", name="Sumsub")
    sumsub.enabled = False
    sumsub.save()
    data = requirement_data(kind="provider", provider=sumsub.pk, provider_level="basic-kyc-level")
    assert "This provider is disabled" in errors(compliance.post(ADD_REQUIREMENT, data))

    KycProvider.objects.filter(pk=sumsub.pk).update(enabled=True)
    response = compliance.post(ADD_REQUIREMENT, data)
    assert response.status_code == 302, errors(response)
    added = Requirement.objects.get(name="Bank statement")
    # What belongs to other kinds is cleared, not left behind.
    assert (added.provider, added.provider_level, added.document_kinds, added.max_age_days) == (
        sumsub,
        "basic-kyc-level",
        [],
        None,
    )


def test_a_questionnaire_requirement_needs_an_active_questionnaire(compliance):
    test = Questionnaire.objects.get(name="Appropriateness test")
    Questionnaire.objects.filter(pk=test.pk).update(is_active=False)
    data = requirement_data(kind="questionnaire", questionnaire=test.pk, document_kinds=None)
    assert "This questionnaire is not active." in errors(compliance.post(ADD_REQUIREMENT, data))


def test_a_used_requirement_keeps_its_kind_and_level(compliance):
    identity = requirement("Identity document")
    submit_identity(TraderFactory(kyc_level=0))
    url = f"/admin/kyc/requirement/{identity.pk}/change/"
    base = requirement_data(
        level=identity.level_id,
        name=identity.name,
        document_kinds=identity.document_kinds,
        max_age_days="",
        expiry_required="on",
    )
    for change, field in [
        ({"kind": "questionnaire"}, "kind"),
        ({"level": Level.objects.get(number=2).pk}, "level"),
    ]:
        text = errors(compliance.post(url, {**base, **change}))
        assert f"its {field} cannot change" in text and "Deactivate it" in text
    identity.refresh_from_db()
    assert (identity.kind, identity.level.number) == ("document", 1)
    # Everything else may change: a new instruction, another accepted kind.
    response = compliance.post(
        url, {**base, "instructions": "A clear photo", "document_kinds": ["passport"]}
    )
    assert response.status_code == 302, errors(response)


# --- levels -----------------------------------------------------------------------------------


def level_data(level: Level, **overrides) -> dict:
    data = {
        "number": level.number,
        "name": level.name,
        "description": level.description,
        "limits_currency": level.limits_currency_id,
        "deposit_daily_limit": level.deposit_daily_limit or "",
        "deposit_monthly_limit": level.deposit_monthly_limit or "",
        "withdrawal_daily_limit": level.withdrawal_daily_limit or "",
        "withdrawal_monthly_limit": level.withdrawal_monthly_limit or "",
        "allows_live_accounts": "on" if level.allows_live_accounts else "",
        "allows_withdrawals": "on" if level.allows_withdrawals else "",
        "allows_transfers": "on" if level.allows_transfers else "",
        "four_eyes": "on" if level.four_eyes else "",
        "is_active": "on" if level.is_active else "",
    }
    prefix = "requirements"
    requirements = list(level.requirements.order_by("order", "id"))
    data.update(
        {
            f"{prefix}-TOTAL_FORMS": len(requirements),
            f"{prefix}-INITIAL_FORMS": len(requirements),
            f"{prefix}-MIN_NUM_FORMS": 0,
            f"{prefix}-MAX_NUM_FORMS": 1000,
        }
    )
    for i, r in enumerate(requirements):
        data[f"{prefix}-{i}-id"] = r.pk
        data[f"{prefix}-{i}-level"] = level.pk
        data[f"{prefix}-{i}-order"] = r.order
        data[f"{prefix}-{i}-is_active"] = "on" if r.is_active else ""
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


def level_url(level: Level) -> str:
    return f"/admin/kyc/level/{level.pk}/change/"


def test_editing_a_level_changes_no_clients_level_nor_their_submissions(compliance):
    client = TraderFactory(kyc_level=1)
    identity = submit_identity(TraderFactory(kyc_level=0))
    before = list(ClientKyc.objects.values_list("user_id", "level_id", "level_changed_at"))
    submissions = list(Submission.objects.values_list("pk", "status", "is_current"))
    level = Level.objects.get(number=1)
    selfie = Requirement.objects.get(name="Selfie with your document")
    # Stricter limits, and the identity document switched off from the level's page.
    data = level_data(level, deposit_daily_limit="500", withdrawal_daily_limit="100")
    data["requirements-0-is_active"] = ""  # Identity document: off
    response = compliance.post(level_url(level), data)
    assert response.status_code == 302, errors(response)
    level.refresh_from_db()
    assert (level.deposit_daily_limit, level.withdrawal_daily_limit) == (Decimal(500), Decimal(100))
    assert not Requirement.objects.get(pk=identity.requirement_id).is_active
    # And level 2's selfie switched off on its own page.
    selfie_url = f"/admin/kyc/requirement/{selfie.pk}/change/"
    selfie_data = requirement_data(name=selfie.name, document_kinds=["selfie"], max_age_days="")
    selfie_data.pop("is_active")
    response = compliance.post(selfie_url, selfie_data)
    assert response.status_code == 302, errors(response)
    assert not Requirement.objects.get(pk=selfie.pk).is_active
    assert list(ClientKyc.objects.values_list("user_id", "level_id", "level_changed_at")) == before
    assert list(Submission.objects.values_list("pk", "status", "is_current")) == submissions
    assert ClientKyc.objects.get(user=client).level.number == 1
    assert not Event.objects.filter(name="kyc.level_changed").exists()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"deposit_daily_limit": "-1"}, "A limit cannot be negative"),
        (
            {"deposit_daily_limit": "30000", "deposit_monthly_limit": "20000"},
            "The daily limit cannot be above the monthly limit.",
        ),
        ({"number": "7"}, "Clients hold this level: its number cannot change"),
        ({"deposit_daily_limit": "1e400"}, "no more than 20 digits"),
    ],
)
def test_a_level_is_checked(compliance, overrides, message):
    TraderFactory(kyc_level=1)
    level = Level.objects.get(number=1)
    response = compliance.post(level_url(level), level_data(level, **overrides))
    assert response.status_code == 200
    assert message in errors(response)
    level.refresh_from_db()
    assert (level.number, level.deposit_daily_limit) == (1, Decimal(10000))


def test_the_lowest_level_cannot_be_switched_off(compliance):
    level = Level.objects.get(number=0)
    data = level_data(level)
    data.pop("is_active")
    response = compliance.post(level_url(level), data)
    assert "where every new client starts" in errors(response)
    assert Level.objects.get(number=0).is_active


def test_the_level_list_shows_limits(compliance):
    html = compliance.get("/admin/kyc/level/").content.decode()
    assert "1,000 / 2,000" in html  # level 0's deposits, per day / month
    assert "no limit / no limit" in html


# --- questionnaires ----------------------------------------------------------------------------


def questionnaire_data(questions: list[dict], **overrides) -> dict:
    data = {
        "name": "Source of wealth",
        "description": "",
        "pass_mark": "",
        "is_active": "on",
        "questions-TOTAL_FORMS": len(questions),
        "questions-INITIAL_FORMS": 0,
        "questions-MIN_NUM_FORMS": 0,
        "questions-MAX_NUM_FORMS": 1000,
    }
    for i, question in enumerate(questions):
        base = {"order": 10 * (i + 1), "required": "on", "kind": "text", "scores": "{}"}
        for key, value in {**base, **question}.items():
            data[f"questions-{i}-{key}"] = value
    data.update(overrides)
    return {k: v for k, v in data.items() if v != ""}


ADD_QUESTIONNAIRE = "/admin/kyc/questionnaire/add/"
YES_NO = {"name": "pep", "label": "Are you a PEP?", "kind": "choice", "choices": "yes|Yes\nno|No"}


def test_a_scored_questionnaire_is_added(compliance):
    data = questionnaire_data(
        [
            {**YES_NO, "scores": '{"yes": 0, "no": 3}'},
            {"name": "agree", "label": "I agree", "kind": "checkbox", "scores": '{"true": 1}'},
            {"name": "employer", "label": "Employer", "kind": "text"},
        ],
        pass_mark="4",
        approve_on_pass="on",
    )
    response = compliance.post(ADD_QUESTIONNAIRE, data)
    assert response.status_code == 302, errors(response)
    added = Questionnaire.objects.get(name="Source of wealth")
    assert added.questions.count() == 3
    assert Question.objects.get(questionnaire=added, name="pep").scores == {"yes": 0, "no": 3}


@pytest.mark.parametrize(
    "question, overrides, message",
    [
        ({**YES_NO, "scores": '{"maybe": 2}'}, {}, "answers the question does not have: maybe"),
        ({**YES_NO, "scores": '{"yes": 1.5}'}, {}, "must be a whole number"),
        ({**YES_NO, "scores": '{"yes": true}'}, {}, "must be a whole number"),
        ({**YES_NO, "scores": "[1, 2]"}, {}, "Scores are a JSON object"),
        ({**YES_NO, "scores": "{not json"}, {}, "Enter a valid JSON."),
        ({**YES_NO, "choices": "yes|Yes\nyes|Again"}, {}, "used twice"),
        ({**YES_NO, "choices": ""}, {}, "List the choices"),
        (
            {"name": "x", "label": "X", "kind": "text", "scores": '{"a": 1}'},
            {},
            "Only choices and checkboxes are scored.",
        ),
        (
            {"name": "x", "label": "X", "kind": "checkbox", "scores": '{"yes": 1}'},
            {},
            'Score the answers "true"',
        ),
        (
            {"name": "x", "label": "X", "kind": "text", "regex": "(unclosed"},
            {},
            "not a valid regular expression",
        ),
        ({"name": "bad name!", "label": "X"}, {}, "Enter a valid “slug”"),
        (
            {**YES_NO, "scores": '{"no": 3}'},
            {"pass_mark": "5"},
            "below the pass mark of 5: nobody could pass",
        ),
        (
            {**YES_NO},
            {"approve_on_pass": "on"},
            "Only a scored questionnaire (with a pass mark) can approve.",
        ),
    ],
)
def test_questions_and_scores_are_checked(compliance, question, overrides, message):
    response = compliance.post(ADD_QUESTIONNAIRE, questionnaire_data([question], **overrides))
    assert response.status_code == 200
    html = response.content.decode()
    assert message in errors(response) or message in html, errors(response)
    assert not Questionnaire.objects.filter(name="Source of wealth").exists()


def test_two_questions_cannot_share_a_name(compliance):
    data = questionnaire_data([YES_NO, {**YES_NO, "label": "Again?"}])
    response = compliance.post(ADD_QUESTIONNAIRE, data)
    assert response.status_code == 200
    assert "Please correct the duplicate" in response.content.decode()
    assert not Questionnaire.objects.filter(name="Source of wealth").exists()


# --- deletion --------------------------------------------------------------------------------


def test_deleting_what_clients_use_is_refused_with_the_way_out(administrator):
    TraderFactory(kyc_level=1)
    identity = submit_identity(TraderFactory(kyc_level=0))
    cases = [
        (f"/admin/kyc/level/{Level.objects.get(number=1).pk}/delete/", "1 client hold it"),
        (f"/admin/kyc/requirement/{identity.requirement_id}/delete/", "1 submission answer it"),
        (
            f"/admin/kyc/questionnaire/{Questionnaire.objects.get().pk}/delete/",
            "1 requirement asks it",
        ),
    ]
    for url, reason in cases:
        for method in ("get", "post"):
            response = getattr(administrator, method)(url, {"post": "yes"}, follow=True)
            text = " ".join(messages_of(response))
            assert "cannot be deleted" in text and reason in text, (url, text)
            assert "Untick “active” instead" in text
    assert Level.objects.filter(number=1).exists()
    assert Requirement.objects.filter(pk=identity.requirement_id).exists()
    assert Questionnaire.objects.exists()
    # No bulk delete that would list every protected row.
    assert "delete_selected" not in administrator.get("/admin/kyc/level/").content.decode()


def test_a_reason_decisions_cite_cannot_be_deleted(administrator):
    from kyc.services import submission_reject

    item = submit_identity(TraderFactory(kyc_level=0))
    forgery = ReviewReason.objects.get(code="suspected_forgery")
    submission_reject(actor=StaffFactory(roles=[COMPLIANCE]), submission=item, reason=forgery)
    response = administrator.post(
        f"/admin/kyc/reviewreason/{forgery.pk}/delete/", {"post": "yes"}, follow=True
    )
    assert "2 decisions cite it" in " ".join(messages_of(response))
    assert ReviewReason.objects.filter(pk=forgery.pk).exists()
    # An unused one goes.
    spare = ReviewReason.objects.create(code="spare", text="Spare")
    response = administrator.post(f"/admin/kyc/reviewreason/{spare.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ReviewReason.objects.filter(pk=spare.pk).exists()


def test_an_unused_requirement_can_be_deleted(administrator):
    spare = Requirement.objects.create(
        level=Level.objects.get(number=3), name="Spare", kind="document", document_kinds=["other"]
    )
    response = administrator.post(f"/admin/kyc/requirement/{spare.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Requirement.objects.filter(pk=spare.pk).exists()


def test_compliance_deactivates_rather_than_deletes(compliance):
    level = Level.objects.get(number=3)
    assert compliance.get(f"/admin/kyc/level/{level.pk}/delete/").status_code == 403


# --- countries, reasons, providers --------------------------------------------------------------


def test_a_country_rule_with_an_extra_requirement(compliance):
    extra = Requirement.objects.get(only_for_country_rules=True)
    response = compliance.post(
        "/admin/kyc/countryrule/add/",
        {"country": "PK", "high_risk": "on", "note": "Grey list", "extra_requirements": [extra.pk]},
    )
    assert response.status_code == 302, errors(response)
    rule = CountryRule.objects.get(country="PK")
    assert list(rule.extra_requirements.all()) == [extra]
    # Only requirements kept for country rules can be named.
    ordinary = requirement("Proof of address")
    response = compliance.post(
        "/admin/kyc/countryrule/add/", {"country": "PE", "extra_requirements": [ordinary.pk]}
    )
    assert "Select a valid choice" in errors(response)
    assert "Nigeria" in compliance.get("/admin/kyc/countryrule/").content.decode()


def test_a_review_reason_keeps_its_code(compliance):
    other = ReviewReason.objects.get(code="other")
    response = compliance.post(
        f"/admin/kyc/reviewreason/{other.pk}/change/",
        {"code": "renamed", "text": "Something else", "use": "both", "order": 5, "is_active": "on"},
    )
    assert response.status_code == 302, errors(response)
    other.refresh_from_db()
    assert (other.code, other.text) == ("other", "Something else")


def test_provider_secrets_are_write_only_and_encrypted(compliance):
    data = {
        "identifier": "sumsub",
        "name": "Sumsub",
        "kind": "sumsub",
        "enabled": "on",
        "settings": '{"base_url": "https://api.sumsub.com"}',
        "secret_app_token": "tok-123",
        "secret_secret_key": "very-secret-key",
        "secret_webhook_secret": "",
    }
    response = compliance.post("/admin/kyc/kycprovider/add/", data)
    assert response.status_code == 302, errors(response)
    provider = KycProvider.objects.get(identifier="sumsub")
    assert "very-secret-key" not in provider.secrets
    assert decrypt(provider.secrets) == {"app_token": "tok-123", "secret_key": "very-secret-key"}
    page = compliance.get(f"/admin/kyc/kycprovider/{provider.pk}/change/").content.decode()
    assert "very-secret-key" not in page and "tok-123" not in page
    assert "app_token, secret_key" in page  # which are set, never their values
    assert "/webhooks/kyc/sumsub/" in page
    event = Event.objects.get(name="kyc_provider.secrets_changed")
    assert event.payload == {
        "provider": "sumsub",
        "set": ["app_token", "secret_key"],
        "cleared": [],
    }
    assert "very-secret-key" not in str(LogEntry.objects.get_for_object(provider).values())

    # Blank keeps, a new value replaces, a box removes.
    edit = {**data, "secret_app_token": "", "secret_secret_key": "", "clear_secrets": ["app_token"]}
    edit.pop("identifier")
    response = compliance.post(f"/admin/kyc/kycprovider/{provider.pk}/change/", edit)
    assert response.status_code == 302, errors(response)
    provider.refresh_from_db()
    assert decrypt(provider.secrets) == {"secret_key": "very-secret-key"}
    assert compliance.get(f"/admin/kyc/kycprovider/{provider.pk}/delete/").status_code == 403


def test_a_provider_needs_a_known_implementation_and_object_settings(compliance):
    data = {"identifier": "x", "name": "X", "kind": "nope", "settings": "[]"}
    text = errors(compliance.post("/admin/kyc/kycprovider/add/", data))
    assert "Select a valid choice. nope" in text and "Settings are a JSON object" in text
    assert not KycProvider.objects.filter(identifier="x").exists()


def test_support_reads_levels_but_cannot_change_them():
    http = signed_in_with_code(StaffFactory(roles=[SUPPORT]))
    level = Level.objects.get(number=1)
    assert http.get("/admin/kyc/level/").status_code == 200
    response = http.post(level_url(level), level_data(level, name="Hacked"))
    assert response.status_code == 403
    assert Level.objects.get(number=1).name == "Basic"


# --- queries ------------------------------------------------------------------------------------

CONFIG_PAGES = [
    "/admin/kyc/level/",
    "/admin/kyc/requirement/",
    "/admin/kyc/questionnaire/",
    "/admin/kyc/countryrule/",
    "/admin/kyc/reviewreason/",
    "/admin/kyc/kycprovider/",
    "/admin/kyc/clientkyc/",
    "/admin/kyc/submission/",
    "/admin/kyc/review/",
    "/admin/kyc/levelchange/",
]


def test_the_configuration_pages_run_a_bounded_number_of_queries(
    compliance, django_assert_max_num_queries
):
    for page in CONFIG_PAGES:
        assert compliance.get(page).status_code == 200, page
    for number in range(4, 14):
        level = Level.objects.create(number=number, name=f"Level {number}")
        Requirement.objects.create(
            level=level, name=f"R{number}", kind="document", document_kinds=["other"]
        )
        CountryRule.objects.create(
            country=["FR", "DE", "ES", "IT", "PT", "NL", "BE", "AT", "PL", "SE"][number - 4]
        )
    for _ in range(5):
        submit_identity(TraderFactory(kyc_level=0))
    for page in CONFIG_PAGES:
        with django_assert_max_num_queries(14, info=page):
            assert compliance.get(page).status_code == 200, page
    level = Level.objects.get(number=1)
    with django_assert_max_num_queries(14):
        assert compliance.get(level_url(level)).status_code == 200


def test_administrators_read_what_providers_said(administrator):
    from kyc.models import ProviderApplicant, ProviderEvent

    provider = KycProvider.objects.create(identifier="sumsub", kind="sumsub", name="Sumsub")
    client = TraderFactory()
    ProviderApplicant.objects.create(provider=provider, user=client, applicant_id="app-42")
    event = ProviderEvent.objects.create(
        provider=provider, event_key="app-42|applicantPending", payload={"type": "applicantPending"}
    )
    assert "app-42" in administrator.get("/admin/kyc/providerapplicant/").content.decode()
    page = administrator.get(f"/admin/kyc/providerevent/{event.pk}/change/").content.decode()
    assert "applicantPending" in page
    assert administrator.post(f"/admin/kyc/providerevent/{event.pk}/delete/").status_code == 403
