"""The trader's verification pages (/room/verification/): the overview per
status (missing, pending, approved with its date, rejected with the reason,
resubmit, expired, renewal), the limits with what is used, the upload page
(an ID card's two sides, a passport's page, a proof of address; hostile
files refused with nothing stored), questionnaires passed and failed,
resubmission, pending items closed, requirement ids that do not apply,
blocked countries, the empty state, the dashboard card, the blocked-action
messages of the withdrawal, deposit and open-account pages with their link
here, and query counts that do not grow with items or levels.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AccountType, ClientProfile
from accounts.roles import COMPLIANCE
from kyc import services
from kyc.models import (
    ClientKyc,
    Document,
    KycProvider,
    Level,
    Requirement,
    ReviewReason,
    Submission,
)
from payments import services as payments_services
from payments.models import Deposit, PaymentMethod, Withdrawal
from payments.services.deposits import deposit_create
from tests.factories import StaffFactory, TraderFactory, set_kyc_level
from tests.kyc import hostile_files

pytestmark = pytest.mark.django_db

OVERVIEW = "/room/verification/"


# --- helpers and fixtures -----------------------------------------------------------


@pytest.fixture(autouse=True)
def document_root(settings, tmp_path):
    settings.KYC_DOCUMENT_ROOT = tmp_path / "kyc-documents"
    return settings.KYC_DOCUMENT_ROOT


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


@pytest.fixture
def fresh(db):
    """A client who has not started verification (level 0, no KYC row)."""
    return TraderFactory(kyc_level=False)


@pytest.fixture
def http(client, fresh):
    client.force_login(fresh)
    return client


@pytest.fixture
def compliance(db):
    return StaffFactory(roles=[COMPLIANCE])


@pytest.fixture
def compliance2(db):
    return StaffFactory(roles=[COMPLIANCE])


def requirement(name: str) -> Requirement:
    return Requirement.objects.select_related("level").get(name=name)


def identity() -> Requirement:
    return requirement("Identity document")


def appropriateness() -> Requirement:
    return requirement("Appropriateness test")


def proof_of_address() -> Requirement:
    return requirement("Proof of address")


def jpeg(name: str = "photo.jpg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, hostile_files.good_jpeg(), "image/jpeg")


def upload(user, req: Requirement | None = None, *, kind: str = "passport", **details):
    """A document submitted through the service (pending review)."""
    req = req or identity()
    if kind in ("national_id", "driving_licence"):
        files = [("front", jpeg()), ("back", jpeg())]
    else:
        files = [("page", jpeg())]
    if req.expiry_required:
        details.setdefault("expires_on", timezone.localdate() + timedelta(days=900))
    if req.max_age_days:
        details.setdefault("issued_on", timezone.localdate() - timedelta(days=10))
    return services.submission_document_create(
        user=user,
        requirement=req,
        details=services.DocumentDetails(document_kind=kind, **details),
        files=files,
    )


def reason(code: str) -> ReviewReason:
    return ReviewReason.objects.get(code=code)


PASSING = {"experience": "1_3", "leverage": "100", "stop_out": "closed", "risk_understood": "on"}
FAILING = {"experience": "none", "leverage": "1", "stop_out": "nothing", "risk_understood": "on"}


def text_of(response) -> str:
    """The page's text with tags and repeated white space removed."""
    body = re.sub(r"<script.*?</script>", " ", response.content.decode(), flags=re.S)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", body)))


def item_html(page: str, name: str) -> str:
    """The <li> of a requirement on the overview."""
    for block in re.findall(r'<li class="kyc-item.*?</li>', page, flags=re.S):
        if f'<span class="kyc-item-name">{name}</span>' in block:
            return block
    raise AssertionError(f"no item {name!r} on the page")


# --- the overview -----------------------------------------------------------------------


def test_a_fresh_client_sees_level_0_its_limits_and_what_level_1_needs(http):
    response = http.get(OVERVIEW)
    assert response.status_code == 200
    page = response.content.decode()
    text = text_of(response)
    assert 'class="nav-link nav-shield" aria-current="page"' in page
    assert "Level 0 · Unverified" in text
    assert "Deposits Today $1,000.00" in text and "This month $2,000.00" in text
    assert "Withdrawals Not allowed at this level." in text
    assert "Live trading accounts: not allowed" in text
    assert "Next: level 1 · Basic" in text and "0 of 2 done" in text
    assert "Withdrawals up to $5,000.00 a day and $10,000.00 a month" in text
    ident = item_html(page, "Identity document")
    assert (
        "Missing" in ident and f'href="/room/verification/requirements/{identity().pk}/"' in ident
    )
    assert ">Upload<" in ident
    assert "Answer the questions" in item_html(page, "Appropriateness test")
    # Kept for high-risk countries: not asked of a client from GB.
    assert "Source of funds (high-risk countries)" not in page
    # Later levels, folded.
    assert "Level 2 · Verified" in text and "Level 3 · Enhanced" in text
    assert "kyc-held" not in page  # nothing held at level 0


def test_the_limits_show_what_is_used_today_and_this_month(http, fresh):
    wallet = payments_services.wallet_open(user=fresh, currency="USD")
    card = PaymentMethod.objects.get(name="Card (sandbox)")
    deposit_create(user=fresh, wallet=wallet, method=card, amount=Decimal("250"))
    old = deposit_create(user=fresh, wallet=wallet, method=card, amount=Decimal("100"))
    today = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    first = today.replace(day=1)
    # Paid earlier this month: counts for the month, not the day (on the 1st, both).
    Deposit.objects.filter(pk=old.pk).update(created_at=first, status=Deposit.COMPLETED)
    response = http.get(OVERVIEW)
    text, page = text_of(response), response.content.decode()
    if first < today:
        assert "$250.00 used $750.00 left" in text and 'aria-valuenow="25"' in page
    else:
        assert "$350.00 used $650.00 left" in text
    assert "$350.00 used $1,650.00 left" in text
    assert 'aria-valuenow="17"' in page  # 350 of 2,000


def test_each_status_shows_its_words_and_its_action(http, fresh, compliance):
    set_kyc_level(fresh, 1)
    ClientKyc.objects.filter(user=fresh).update(country="GB")
    poa = upload(fresh, proof_of_address(), kind="proof_of_address")
    page = http.get(OVERVIEW).content.decode()
    pending = item_html(page, "Proof of address")
    assert "Pending review" in pending and "We are reviewing it" in pending
    assert "href=" not in pending  # nothing to do while it is reviewed

    services.submission_request_resubmission(
        actor=compliance, submission=poa, reason=reason("unreadable"), note="The top is cut off."
    )
    page = http.get(OVERVIEW).content.decode()
    again = item_html(page, "Proof of address")
    assert "Please resubmit" in again
    assert "The document is not readable: blurred, dark or cut off." in again
    assert "The top is cut off." in again and "Upload again" in again

    selfie = upload(fresh, requirement("Selfie with your document"), kind="selfie")
    services.submission_reject(
        actor=compliance,
        submission=selfie,
        reason=reason("suspected_forgery"),
        note="Not the person on the document.",
    )
    page = http.get(OVERVIEW).content.decode()
    rejected = item_html(page, "Selfie with your document")
    assert "Rejected" in rejected and "We could not accept this document." in rejected
    assert "Not the person on the document." in rejected
    assert "Contact support" in rejected and "href=" not in rejected
    detail = http.get(f"/room/verification/requirements/{selfie.requirement_id}/")
    text = text_of(detail)
    assert "Not accepted. We could not accept this document." in text
    assert "It was rejected. Contact support if you think this is a mistake." in text
    assert 'type="file"' not in detail.content.decode()


def test_approved_items_show_their_date_renewal_and_expiry(http, fresh, compliance):
    soon = timezone.localdate() + timedelta(days=10)
    passport = upload(fresh, kind="passport", expires_on=soon)
    services.submission_approve(actor=compliance, submission=passport)
    test = services.submission_questionnaire_create(
        user=fresh, requirement=appropriateness(), answers=_cleaned(PASSING)
    )
    assert test.status == Submission.APPROVED
    assert ClientKyc.objects.get(user=fresh).level.number == 1
    page = http.get(OVERVIEW).content.decode()
    text = re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", page)))
    assert "Level 1 · Basic" in text and "Next: level 2 · Verified" in text
    held = item_html(page, "Identity document")
    assert "Approved" in held and f"Valid until {soon:%-d %b %Y}" in held
    assert "renew it now to keep your level" in held and ">Renew<" in held
    assert "Some items need your attention" in page
    # Past its date it reads as expired (before the sweep marks it) and asks again.
    Submission.objects.filter(pk=passport.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    page = http.get(OVERVIEW).content.decode()
    expired = item_html(page, "Identity document")
    assert "Expired" in expired and "It has expired: send a current one." in expired
    assert "Upload again" in expired


def _cleaned(data: dict) -> dict:
    """A questionnaire's answers as its form cleans them."""
    from kyc.forms import QuestionnaireForm

    questions = list(appropriateness().questionnaire.questions.all())
    form = QuestionnaireForm(data, questions=questions)
    assert form.is_valid(), form.errors
    return form.cleaned_data


def test_a_provider_check_offers_its_button(http):
    manual = KycProvider.objects.get(identifier="manual")
    check = Requirement.objects.create(
        level=Level.objects.get(number=1),
        name="Video check",
        kind=Requirement.PROVIDER,
        provider=manual,
        provider_level="basic",
        order=50,
    )
    page = http.get(OVERVIEW).content.decode()
    item = item_html(page, "Video check")
    assert f'action="/room/verification/provider/{check.pk}/start/"' in item
    assert "Start the check with Manual review (built-in)" in item
    detail = http.get(f"/room/verification/requirements/{check.pk}/").content.decode()
    assert f'action="/room/verification/provider/{check.pk}/start/"' in detail
    assert http.post(f"/room/verification/requirements/{check.pk}/").status_code == 405


def test_a_fully_verified_client_and_the_empty_state(client):
    top = TraderFactory(kyc_level=3)
    client.force_login(top)
    assert "You are fully verified" in text_of(client.get(OVERVIEW))
    Level.objects.update(is_active=False)
    response = client.get(OVERVIEW)
    assert response.status_code == 200
    assert "Verification is not available yet" in text_of(response)


def test_a_blocked_country_is_told_and_cannot_send(http, fresh):
    ClientProfile.objects.filter(user=fresh).update(country="KP")
    response = http.get(OVERVIEW)
    text = text_of(response)
    assert "We cannot offer our services to residents of North Korea" in text
    assert 'href="/room/profile/"' in response.content.decode()
    assert ">Upload<" not in response.content.decode()
    url = f"/room/verification/requirements/{identity().pk}/"
    assert 'type="file"' not in http.get(url).content.decode()
    refused = http.post(
        url, {"document_kind": "passport", "expires_on": "2031-01-01", "pages": jpeg()}
    )
    assert refused.status_code == 400
    assert "We cannot verify residents of your country of residence" in text_of(refused)
    assert not Submission.objects.exists()


def test_pages_need_sign_in(client):
    for url in (OVERVIEW, f"/room/verification/requirements/{identity().pk}/"):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_overview_query_count_does_not_grow_with_items_or_levels(client, settings, compliance):
    user = TraderFactory(kyc_level=False)
    client.force_login(user)
    client.get(OVERVIEW)  # warm the brand cache

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert client.get(OVERVIEW).status_code == 200
        return len(queries)

    before = count()
    # Every status, more levels and requirements, usage of both limits.
    poa = upload(user, proof_of_address(), kind="proof_of_address")
    services.submission_request_resubmission(
        actor=compliance, submission=poa, reason=reason("unreadable")
    )
    upload(user, kind="national_id")
    services.submission_questionnaire_create(
        user=user, requirement=appropriateness(), answers=_cleaned(FAILING)
    )
    upload(user, requirement("Selfie with your document"), kind="selfie")
    for number in (4, 5, 6):
        level = Level.objects.create(number=number, name=f"Extra {number}")
        for index in range(3):
            Requirement.objects.create(
                level=level,
                name=f"Extra {number}.{index}",
                kind=Requirement.DOCUMENT,
                document_kinds=["other"],
            )
    after = count()
    assert after == before
    # The user, the client's KYC row, country, country rule, levels + their
    # requirements, the submissions, the deposit usage (and the session when
    # it is not in the cache).
    session = 1 if settings.SESSION_ENGINE.endswith(".db") else 0
    assert after == 8 + session


# --- a document ----------------------------------------------------------------------


def test_the_upload_page_asks_what_the_requirement_needs(http):
    page = http.get(f"/room/verification/requirements/{identity().pk}/").content.decode()
    assert 'enctype="multipart/form-data"' in page
    # The kinds, each saying the sides it needs (the script shows only those inputs).
    assert 'value="passport"' in page and 'data-sides="pages"' in page
    assert 'value="national_id"' in page and 'data-sides="front back"' in page
    for name in ("front", "back", "pages"):
        assert re.search(
            rf'<input type="file" name="{name}"[^>]*accept="image/jpeg,image/png,application/pdf"',
            page,
        )
    # Documents: the phone offers camera, photo library and files (no capture).
    assert "capture=" not in page
    assert 'name="expires_on"' in page and 'name="issued_on"' not in page
    assert 'name="document_number"' in page
    assert 'data-max-bytes="10485760"' in page and "up to 10 MB" in page
    assert "js/kyc.js" in page
    selfie = requirement("Selfie with your document")
    page = http.get(f"/room/verification/requirements/{selfie.pk}/").content.decode()
    assert 'capture="user"' in page and 'accept="image/jpeg,image/png"' in page
    poa = http.get(f"/room/verification/requirements/{proof_of_address().pk}/").content.decode()
    assert 'name="issued_on"' in poa and "less than 90 days old" in poa
    assert 'name="expires_on"' not in poa and "multiple" in poa


def test_an_id_card_with_both_sides_is_uploaded(http, fresh, document_root):
    expires = timezone.localdate() + timedelta(days=700)
    response = http.post(
        f"/room/verification/requirements/{identity().pk}/",
        {
            "document_kind": "national_id",
            "front": jpeg("front.jpg"),
            "back": jpeg("back.jpg"),
            "expires_on": expires.isoformat(),
            "document_number": "AB 123456",
        },
        follow=True,
    )
    assert response.redirect_chain[-1][0] == OVERVIEW
    assert "Thank you: your identity document is uploaded" in text_of(response)
    submission = Submission.objects.get(user=fresh)
    assert submission.status == Submission.PENDING and submission.document_kind == "national_id"
    assert submission.expires_on == expires and submission.document_number == "AB 123456"
    assert sorted(Document.objects.values_list("side", flat=True)) == ["back", "front"]
    assert len(stored_files(document_root)) == 2
    assert "Pending review" in item_html(response.content.decode(), "Identity document")


def test_a_passport_page_and_a_proof_of_address_are_uploaded(http, fresh):
    url = f"/room/verification/requirements/{identity().pk}/"
    expires = (timezone.localdate() + timedelta(days=700)).isoformat()
    response = http.post(url, {"document_kind": "passport", "expires_on": expires, "pages": jpeg()})
    assert response.status_code == 302
    issued = (timezone.localdate() - timedelta(days=20)).isoformat()
    response = http.post(
        f"/room/verification/requirements/{proof_of_address().pk}/",
        {
            "pages": [
                SimpleUploadedFile("p1.pdf", hostile_files.good_pdf(), "application/pdf"),
                SimpleUploadedFile("p2.png", hostile_files.good_png(), "image/png"),
            ],
            "issued_on": issued,
        },
    )
    assert response.status_code == 302, text_of(response)
    poa = Submission.objects.get(user=fresh, requirement=proof_of_address())
    assert poa.document_kind == "proof_of_address"
    assert [d.content_type for d in poa.documents.all()] == ["application/pdf", "image/png"]
    assert Document.objects.filter(submission__requirement=identity()).get().side == "page"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("id.jpg", hostile_files.windows_executable, "Programs are not accepted."),
        ("id.pdf", hostile_files.pdf_with_javascript, "JavaScript"),
        ("id.png", lambda: hostile_files.zip_bomb(expanded_bytes=5_000_000), "Archives"),
        ("id.png", hostile_files.png_decompression_bomb, "too large"),
        ("id.jpg", hostile_files.jpeg_polyglot, "damaged or incomplete"),
    ],
)
def test_a_hostile_file_is_refused_next_to_its_field_and_nothing_is_stored(
    http, document_root, name, content, message
):
    expires = (timezone.localdate() + timedelta(days=700)).isoformat()
    response = http.post(
        f"/room/verification/requirements/{identity().pk}/",
        {
            "document_kind": "national_id",
            "front": jpeg(),
            "back": SimpleUploadedFile(name, content(), "image/jpeg"),
            "expires_on": expires,
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    back = re.search(r'data-side-field="back".*?</div>\s*</div>', page, flags=re.S).group(0)
    assert message in unescape(back)
    assert "Nothing was uploaded: choose the files again." in page
    assert not Submission.objects.exists() and not Document.objects.exists()
    assert stored_files(document_root) == []


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"document_kind": "national_id", "front": "jpeg"}, "back", "Upload the back of your"),
        ({"document_kind": "passport"}, "pages", "Upload your passport."),
        (
            {"document_kind": "passport", "pages": "jpeg", "front": "jpeg"},
            "front",
            "uploaded as pages",
        ),
        ({"document_kind": "diploma", "pages": "jpeg"}, "document_kind", "Choose one of"),
        (
            {"document_kind": "passport", "pages": "jpeg", "expires_on": "yesterday"},
            "expires_on",
            "has expired",
        ),
        (
            {"document_kind": "passport", "pages": "jpeg", "expires_on": ""},
            "expires_on",
            "Enter the date the document expires.",
        ),
        (
            {"document_kind": "passport", "pages": "jpeg", "expires_on": "not a date"},
            "expires_on",
            "Enter a valid date.",
        ),
        (
            {"document_kind": "passport", "pages": "jpeg", "document_number": "<script>"},
            "document_number",
            "Use letters",
        ),
    ],
)
def test_bad_input_is_shown_at_its_field_and_nothing_is_stored(
    http, document_root, data, field, message
):
    payload = {"expires_on": (timezone.localdate() + timedelta(days=700)).isoformat()}
    for key, value in data.items():
        if value == "jpeg":
            payload[key] = jpeg()
        elif value == "yesterday":
            payload[key] = (timezone.localdate() - timedelta(days=1)).isoformat()
        else:
            payload[key] = value
    response = http.post(f"/room/verification/requirements/{identity().pk}/", payload)
    assert response.status_code == 400
    page = unescape(response.content.decode())
    assert message in page
    assert 'aria-invalid="true"' in page or "has-error" in page
    assert not Submission.objects.exists() and stored_files(document_root) == []
    del field


def test_a_proof_of_address_too_old_is_refused(http):
    old = (timezone.localdate() - timedelta(days=120)).isoformat()
    response = http.post(
        f"/room/verification/requirements/{proof_of_address().pk}/",
        {"pages": jpeg(), "issued_on": old},
    )
    assert response.status_code == 400
    assert "The document must be issued within the last 90 days." in text_of(response)
    assert not Submission.objects.exists()


def test_nothing_can_be_sent_while_pending_and_a_resubmission_is_taken(
    http, fresh, compliance, document_root
):
    url = f"/room/verification/requirements/{identity().pk}/"
    first = upload(fresh)
    page = http.get(url)
    assert "We are reviewing what you sent on" in text_of(page)
    assert 'type="file"' not in page.content.decode()
    expires = (timezone.localdate() + timedelta(days=700)).isoformat()
    again = {"document_kind": "passport", "expires_on": expires, "pages": jpeg()}
    refused = http.post(url, again)
    assert refused.status_code == 400 and "It is being reviewed." in text_of(refused)
    assert Submission.objects.count() == 1 and len(stored_files(document_root)) == 1

    services.submission_request_resubmission(
        actor=compliance, submission=first, reason=reason("expired"), note="Use the new one."
    )
    page = text_of(http.get(url))
    assert "Please send it again. The document has expired." in page and "Use the new one." in page
    again["pages"] = jpeg()
    assert http.post(url, again).status_code == 302
    current = Submission.objects.get(user=fresh, is_current=True)
    assert current.pk != first.pk and current.status == Submission.PENDING
    first.refresh_from_db()
    assert first.status == Submission.RESUBMIT and not first.is_current


def test_requirement_ids_that_do_not_apply_are_404(http, fresh):
    extra = requirement("Source of funds (high-risk countries)")
    gone = Requirement.objects.create(
        level=Level.objects.get(number=1), name="Old", kind="document", is_active=False
    )
    for requirement_id in (extra.pk, gone.pk, 999999):
        url = f"/room/verification/requirements/{requirement_id}/"
        assert http.get(url).status_code == 404
        assert (
            http.post(url, {"document_kind": "source_of_funds", "pages": jpeg()}).status_code == 404
        )
    assert not Submission.objects.exists()
    # A resident of a high-risk country is asked for it.
    ClientProfile.objects.filter(user=fresh).update(country="NG")
    assert http.get(f"/room/verification/requirements/{extra.pk}/").status_code == 200


def test_another_clients_document_is_404(http):
    other = TraderFactory(kyc_level=False)
    submission = upload(other)
    document = submission.documents.get()
    assert http.get(f"/room/verification/documents/{document.pk}/").status_code == 404


def test_the_upload_page_query_count(http, settings, django_assert_max_num_queries):
    url = f"/room/verification/requirements/{identity().pk}/"
    http.get(url)
    session = 1 if settings.SESSION_ENGINE.endswith(".db") else 0
    # The user, the requirement, the submissions, the country and its rule.
    with django_assert_max_num_queries(5 + session):
        assert http.get(url).status_code == 200


# --- a questionnaire ------------------------------------------------------------------


def test_passing_the_test_approves_it_at_once(http, fresh):
    url = f"/room/verification/requirements/{appropriateness().pk}/"
    page = http.get(url).content.decode()
    assert "Appropriateness test" in page and 'type="radio"' in page
    assert "How long have you traded leveraged products" in page
    response = http.post(url, PASSING, follow=True)
    assert response.redirect_chain[-1][0] == url
    text = text_of(response)
    assert "You passed the appropriateness test." in text and "Approved" in text
    assert 'type="radio"' not in response.content.decode()
    assert Submission.objects.get(user=fresh).status == Submission.APPROVED


def test_failing_the_test_says_when_it_can_be_retaken(http, fresh):
    url = f"/room/verification/requirements/{appropriateness().pk}/"
    response = http.post(url, FAILING, follow=True)
    text = text_of(response)
    assert "You did not pass the appropriateness test." in text
    assert "The answers show the product is not appropriate for you." in text
    submission = Submission.objects.get(user=fresh)
    retake = timezone.localtime(submission.decided_at + timedelta(hours=24))
    assert f"You can take it again from {retake:%-d %b %Y, %H:%M}" in text
    again = http.post(url, PASSING)
    assert again.status_code == 400
    assert "You can take the test again 24 hours after your last attempt." in text_of(again)
    assert Submission.objects.count() == 1
    # A day later the test is offered again.
    Submission.objects.update(decided_at=timezone.now() - timedelta(hours=25))
    assert 'type="radio"' in http.get(url).content.decode()
    assert http.post(url, PASSING).status_code == 302
    assert Submission.objects.get(is_current=True).status == Submission.APPROVED


def test_unanswered_questions_are_marked_and_nothing_is_sent(http):
    url = f"/room/verification/requirements/{appropriateness().pk}/"
    response = http.post(url, {"experience": "over_3", "leverage": "1000"})
    assert response.status_code == 400
    page = unescape(response.content.decode())
    assert "Please answer the questions marked below. Nothing was sent." in page
    assert "Select a valid choice." in page and "Tick this box to continue." in page
    assert not Submission.objects.exists()


# --- the dashboard -----------------------------------------------------------------------


def test_the_dashboard_shows_the_level_and_a_verify_button(
    client, compliance, django_capture_on_commit_callbacks
):
    user = TraderFactory(kyc_level=False)
    client.force_login(user)
    text = text_of(client.get("/room/"))
    assert "Level 0 · Unverified" in text and "Next: level 1 · Basic." in text
    assert 'href="/room/verification/"' in client.get("/room/").content.decode()
    # A decision bumps the room version: the cached card follows the level.
    with django_capture_on_commit_callbacks(execute=True):
        upload(user)
        services.submission_approve(actor=compliance, submission=Submission.objects.get())
        services.submission_questionnaire_create(
            user=user, requirement=appropriateness(), answers=_cleaned(PASSING)
        )
    text = text_of(client.get("/room/"))
    assert "Level 1 · Basic" in text and "Next: level 2 · Verified." in text
    top = TraderFactory(kyc_level=3)
    client.force_login(top)
    text = text_of(client.get("/room/"))
    assert "You are fully verified." in text and "See your verification" in text


# --- blocked actions say which level is needed and link here -----------------------------


UNLOCK_LINK = '<a href="/room/verification/">Verify to level 1</a>'


def test_a_withdrawal_refused_by_the_level_links_here(http, fresh):
    wallet = payments_services.wallet_open(user=fresh, currency="USD")
    payments_services.wallet_adjust(
        actor=None,
        wallet=wallet,
        amount=Decimal("500"),
        reason="test funding",
        idempotency_key=f"fund:{uuid.uuid4()}",
    )
    page = http.get("/room/wallets/withdraw/").content.decode()
    key = re.search(r'name="idempotency_key" value="([0-9a-f-]{36})"', page).group(1)
    bank = PaymentMethod.objects.get(name="Bank wire")
    response = http.post(
        "/room/wallets/withdraw/request/",
        {
            "wallet": wallet.pk,
            "method": bank.pk,
            "amount": "100",
            "idempotency_key": key,
            "iban": "DE89 3704 0044 0532 0130 00",
            "account_holder": "Test User",
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "It needs verification level 1 (Basic)." in page and UNLOCK_LINK in page
    assert not Withdrawal.objects.exists()


def test_a_deposit_over_the_limit_links_here(http, fresh):
    card = PaymentMethod.objects.get(name="Card (sandbox)")
    data = {
        "currency": "USD",
        "method": card.pk,
        "amount": "1500",
        "previewed": f"{card.pk}|1500|USD",
    }
    response = http.post("/room/wallets/deposit/", data)
    assert response.status_code == 400
    page = unescape(response.content.decode())
    assert "This deposit would pass your daily deposit limit of 1,000.00 USD" in page
    assert "It needs verification level 1 (Basic)." in page and UNLOCK_LINK in page
    assert not Deposit.objects.exists()


def test_a_live_account_refused_by_the_level_links_here(http):
    page = http.get("/room/accounts/").content.decode()
    request_id = re.search(r'name="request_id" value="([0-9a-f-]{36})"', page).group(1)
    live = AccountType.objects.filter(platform__identifier="demo", is_demo=False).first()
    response = http.post(
        "/room/accounts/open/", {"account_type": live.pk, "leverage": "", "request_id": request_id}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "A live trading account needs a verified identity." in page
    assert "It needs verification level 1 (Basic)." in page and UNLOCK_LINK in page
