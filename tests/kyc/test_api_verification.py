"""The verification API for the mobile app (/api/v1/kyc/): the overview
(level, limits with usage, every item's status and reason), a requirement's
details, uploading a document (multipart) and answering a questionnaire
(JSON) through the same forms and services as the room; hostile files and
bodies refused with nothing stored; requirement ids that do not apply (404);
no token (401); errors in the API's one shape; the overview's query count.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import ClientProfile
from accounts.roles import COMPLIANCE
from kyc import services
from kyc.models import Document, Level, Requirement, ReviewReason, Submission
from payments import services as payments_services
from payments.models import PaymentMethod
from payments.services.deposits import deposit_create
from tests.factories import StaffFactory, TraderFactory
from tests.kyc import hostile_files

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def document_root(settings, tmp_path):
    settings.KYC_DOCUMENT_ROOT = tmp_path / "kyc-documents"
    return settings.KYC_DOCUMENT_ROOT


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def client_for(user) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return api


@pytest.fixture
def fresh(db):
    return TraderFactory(kyc_level=False)


@pytest.fixture
def api(fresh) -> APIClient:
    return client_for(fresh)


def requirement(name: str) -> Requirement:
    return Requirement.objects.select_related("level").get(name=name)


def jpeg(name: str = "photo.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, hostile_files.good_jpeg(), "image/jpeg")


def in_days(days: int) -> str:
    return (timezone.localdate() + timedelta(days=days)).isoformat()


def documents_url(req: Requirement) -> str:
    return f"/api/v1/kyc/requirements/{req.pk}/documents/"


def answers_url(req: Requirement) -> str:
    return f"/api/v1/kyc/requirements/{req.pk}/answers/"


PASSING = {"experience": "1_3", "leverage": "100", "stop_out": "closed", "risk_understood": True}
FAILING = {"experience": "none", "leverage": 1, "stop_out": "nothing", "risk_understood": True}


def item(body: dict, name: str) -> dict:
    for level in body["levels"]:
        for entry in level["items"]:
            if entry["name"] == name:
                return entry
    raise AssertionError(f"no item {name!r}")


# --- the overview --------------------------------------------------------------------


def test_the_overview_of_a_fresh_client(api, fresh):
    wallet = payments_services.wallet_open(user=fresh, currency="USD")
    card = PaymentMethod.objects.get(name="Card (sandbox)")
    deposit_create(user=fresh, wallet=wallet, method=card, amount=Decimal("250"))
    response = api.get("/api/v1/kyc/")
    assert response.status_code == 200
    body = response.json()
    assert body["level"]["number"] == 0 and body["level"]["name"] == "Unverified"
    assert body["limits_currency"] == "USD"
    assert body["deposits"] == {
        "allowed": True,
        "daily": {"limit": "1000.00", "used": "250.00"},
        "monthly": {"limit": "2000.00", "used": "250.00"},
    }
    assert body["withdrawals"] == {"allowed": False}
    assert body["live_accounts"] is False and body["transfers"] is True
    assert body["next_level"] == 1 and body["country_blocked"] is False
    assert [lvl["level"]["number"] for lvl in body["levels"]] == [0, 1, 2, 3]
    assert body["levels"][0]["held"] is True and body["levels"][0]["items"] == []
    ident = item(body, "Identity document")
    assert ident["status"] == "missing" and ident["can_submit"] is True
    assert ident["kind"] == "document" and ident["level"] == 1
    names = [entry["name"] for lvl in body["levels"] for entry in lvl["items"]]
    assert "Source of funds (high-risk countries)" not in names


def test_the_overview_shows_reasons_and_dates(api, fresh):
    compliance = StaffFactory(roles=[COMPLIANCE])
    passport = services.submission_document_create(
        user=fresh,
        requirement=requirement("Identity document"),
        details=services.DocumentDetails(
            document_kind="passport", expires_on=timezone.localdate() + timedelta(days=400)
        ),
        files=[("page", jpeg())],
    )
    services.submission_request_resubmission(
        actor=compliance,
        submission=passport,
        reason=ReviewReason.objects.get(code="unreadable"),
        note="Glare on the photo.",
    )
    body = api.get("/api/v1/kyc/").json()
    ident = item(body, "Identity document")
    assert ident["status"] == "resubmit" and ident["status_label"] == "please resubmit"
    assert ident["reason"] == "The document is not readable: blurred, dark or cut off."
    assert ident["note"] == "Glare on the photo." and ident["can_submit"] is True
    assert ident["submitted_at"] and ident["decided_at"]


def test_the_overview_query_count_does_not_grow(api, fresh):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get("/api/v1/kyc/").status_code == 200
        return len(queries)

    before = count()
    services.submission_document_create(
        user=fresh,
        requirement=requirement("Proof of address"),
        details=services.DocumentDetails(
            document_kind="proof_of_address", issued_on=timezone.localdate()
        ),
        files=[("page", jpeg())],
    )
    for number in (4, 5):
        level = Level.objects.create(number=number, name=f"Extra {number}")
        for index in range(3):
            Requirement.objects.create(
                level=level, name=f"E{number}.{index}", kind="document", document_kinds=["other"]
            )
    assert count() == before
    # The token and its user, KYC row, country, rule, levels + requirements,
    # submissions, deposit usage.
    assert before == 8


def test_no_token_is_401(client):
    response = APIClient().get("/api/v1/kyc/")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- a requirement ------------------------------------------------------------------


def test_a_requirements_details_say_what_to_send(api):
    ident = requirement("Identity document")
    body = api.get(f"/api/v1/kyc/requirements/{ident.pk}/").json()
    assert body["item"]["status"] == "missing"
    assert body["document"]["kinds"] == [
        {"kind": "passport", "label": "Passport", "files": ["page"]},
        {"kind": "national_id", "label": "National ID card", "files": ["front", "back"]},
        {"kind": "driving_licence", "label": "Driving licence", "files": ["front", "back"]},
    ]
    assert body["document"]["expires_on"] is True and body["document"]["issued_on"] is False
    assert body["document"]["max_bytes"] == 10 * 1024 * 1024 and body["questions"] is None
    test = requirement("Appropriateness test")
    body = api.get(f"/api/v1/kyc/requirements/{test.pk}/").json()
    assert body["document"] is None
    assert [q["name"] for q in body["questions"]] == [
        "experience",
        "leverage",
        "stop_out",
        "risk_understood",
    ]
    assert body["questions"][0]["choices"][0] == ["none", "Never"]


def test_requirement_ids_that_do_not_apply_are_404(api):
    extra = requirement("Source of funds (high-risk countries)")
    for requirement_id in (extra.pk, 999999):
        for method, url in (
            ("get", f"/api/v1/kyc/requirements/{requirement_id}/"),
            ("post", f"/api/v1/kyc/requirements/{requirement_id}/documents/"),
            ("post", f"/api/v1/kyc/requirements/{requirement_id}/answers/"),
        ):
            response = getattr(api, method)(url)
            assert response.status_code == 404
            assert response.json()["code"] == "not_found"
    assert not Submission.objects.exists()


# --- documents ------------------------------------------------------------------------


def test_an_id_card_is_uploaded(api, fresh, document_root):
    response = api.post(
        documents_url(requirement("Identity document")),
        {
            "document_kind": "national_id",
            "front": jpeg("f.jpg"),
            "back": jpeg("b.jpg"),
            "expires_on": in_days(500),
            "document_number": "X123",
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["item"]["status"] == "pending"
    assert response.json()["item"]["can_submit"] is False
    submission = Submission.objects.get(user=fresh)
    assert sorted(submission.documents.values_list("side", flat=True)) == ["back", "front"]
    assert len(stored_files(document_root)) == 2


def test_a_proof_of_address_in_pages(api, fresh):
    response = api.post(
        documents_url(requirement("Proof of address")),
        {
            "page": [jpeg("1.jpg"), SimpleUploadedFile("2.pdf", hostile_files.good_pdf())],
            "issued_on": in_days(-5),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert Document.objects.filter(user=fresh, side="page").count() == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (hostile_files.windows_executable, "Programs are not accepted."),
        (hostile_files.pdf_with_javascript, "JavaScript"),
        (hostile_files.svg_image, "SVG"),
    ],
)
def test_a_hostile_file_is_422_and_nothing_is_stored(api, document_root, content, message):
    response = api.post(
        documents_url(requirement("Identity document")),
        {
            "document_kind": "national_id",
            "front": SimpleUploadedFile("front.jpg", content(), "image/jpeg"),
            "back": jpeg(),
            "expires_on": in_days(500),
        },
        format="multipart",
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "document_rejected" and message in body["detail"]
    assert message in body["errors"]["front"][0]
    assert not Submission.objects.exists() and stored_files(document_root) == []


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"document_kind": "national_id", "front": "jpeg"}, "back", "Upload the back of your"),
        ({"document_kind": "passport"}, "page", "Upload your passport."),
        ({"document_kind": "selfie", "page": "jpeg"}, "document_kind", "Choose one of"),
        ({"page": "jpeg"}, "document_kind", "Choose which document you upload."),
        (
            {"document_kind": "passport", "page": "jpeg", "expires_on": "2001-01-01"},
            "expires_on",
            "has expired",
        ),
    ],
)
def test_bad_uploads_are_400_with_the_field(api, document_root, data, field, message):
    payload = {"expires_on": in_days(500)}
    for key, value in data.items():
        payload[key] = jpeg() if value == "jpeg" else value
    response = api.post(
        documents_url(requirement("Identity document")), payload, format="multipart"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid" and message in body["errors"][field][0]
    assert body["detail"].startswith(f"{field}: ")
    assert not Submission.objects.exists() and stored_files(document_root) == []


def test_a_json_upload_or_the_wrong_kind_is_refused(api):
    response = api.post(documents_url(requirement("Identity document")), {}, format="json")
    assert response.status_code == 415
    wrong = api.post(
        documents_url(requirement("Appropriateness test")),
        {"document_kind": "passport", "page": jpeg()},
        format="multipart",
    )
    assert wrong.status_code == 422 and wrong.json()["code"] == "wrong_kind"
    assert not Submission.objects.exists()


def test_nothing_is_sent_while_pending(api, fresh, document_root):
    data = {"document_kind": "passport", "expires_on": in_days(500)}
    url = documents_url(requirement("Identity document"))
    assert api.post(url, {**data, "page": jpeg()}, format="multipart").status_code == 201
    again = api.post(url, {**data, "page": jpeg()}, format="multipart")
    assert again.status_code == 422
    assert again.json() == {"detail": "It is being reviewed.", "code": "refused"}
    assert Submission.objects.count() == 1 and len(stored_files(document_root)) == 1


def test_a_blocked_country_cannot_send(api, fresh):
    ClientProfile.objects.filter(user=fresh).update(country="IR")
    assert api.get("/api/v1/kyc/").json()["country_blocked"] is True
    response = api.post(
        documents_url(requirement("Identity document")),
        {"document_kind": "passport", "page": jpeg(), "expires_on": in_days(500)},
        format="multipart",
    )
    assert response.status_code == 422 and response.json()["code"] == "country_blocked"
    assert not Submission.objects.exists()


# --- answers ----------------------------------------------------------------------------


def test_passing_answers_are_approved_at_once(api, fresh):
    response = api.post(
        answers_url(requirement("Appropriateness test")), {"answers": PASSING}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["item"]["status"] == "approved"
    submission = Submission.objects.get(user=fresh)
    assert submission.answers[3] == {
        "name": "risk_understood",
        "label": "I understand that I can lose all the money I deposit.",
        "answer": True,
        "points": 1,
    }


def test_failing_answers_say_when_to_retake(api, fresh):
    url = answers_url(requirement("Appropriateness test"))
    response = api.post(url, {"answers": FAILING}, format="json")
    assert response.status_code == 201
    entry = response.json()["item"]
    assert entry["status"] == "rejected" and entry["can_submit"] is False
    assert entry["reason"] == "The answers show the product is not appropriate for you."
    assert entry["retake_at"]
    again = api.post(url, {"answers": PASSING}, format="json")
    assert again.status_code == 422 and again.json()["code"] == "refused"
    assert "24 hours" in again.json()["detail"]
    assert Submission.objects.count() == 1


@pytest.mark.parametrize(
    ("answers", "path", "message"),
    [
        ({**PASSING, "experience": "forever"}, "experience", "Select a valid choice"),
        ({**PASSING, "risk_understood": False}, "risk_understood", "Tick this box"),
        ({**PASSING, "risk_understood": "yes"}, "risk_understood", "Answer true or false."),
        ({**PASSING, "experience": {"$gt": ""}}, "experience", "Answer with a string."),
        ({**PASSING, "experience": ["1_3"]}, "experience", "Answer with a string."),
        ({**PASSING, "admin": True}, "admin", "Not a question of this questionnaire."),
        ({k: v for k, v in PASSING.items() if k != "leverage"}, "leverage", "required"),
    ],
)
def test_bad_answers_are_400_with_the_question(api, answers, path, message):
    response = api.post(
        answers_url(requirement("Appropriateness test")), {"answers": answers}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert message in body["errors"]["answers"][path][0]
    assert body["detail"].startswith(f"answers.{path}: ")
    assert not Submission.objects.exists()


@pytest.mark.parametrize("body", [{}, {"answers": "all yes"}, {"answers": [1, 2]}, []])
def test_a_malformed_body_is_400(api, body):
    response = api.post(answers_url(requirement("Appropriateness test")), body, format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    assert not Submission.objects.exists()


def test_the_schema_describes_the_endpoints(api):
    schema = api.get("/api/v1/schema/", {"format": "json"}).json()
    for path in (
        "/api/v1/kyc/",
        "/api/v1/kyc/requirements/{requirement_id}/",
        "/api/v1/kyc/requirements/{requirement_id}/documents/",
        "/api/v1/kyc/requirements/{requirement_id}/answers/",
    ):
        assert path in schema["paths"]
    upload = schema["paths"]["/api/v1/kyc/requirements/{requirement_id}/documents/"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
