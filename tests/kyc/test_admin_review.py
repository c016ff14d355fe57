"""What compliance sees: the review queue (order, age, filters, keyset
paging, Sales scoping) and the review page (the documents beside the client's
data; approve, reject, ask for a resubmission with a reason; four eyes;
"and next"), through the real admin pages with a signed-in reviewer, down to
the client's level. Query counts pinned: constant in the number of rows."""

from __future__ import annotations

import io
import re
from datetime import date, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from accounts.models import ClientProfile
from accounts.roles import ADMINISTRATOR, COMPLIANCE, SALES, SUPPORT
from backoffice.models import Event
from kyc.admin import review as review_admin
from kyc.models import ClientKyc, Requirement, Review, ReviewReason, Submission
from kyc.services import (
    DocumentDetails,
    submission_approve,
    submission_document_create,
    submission_questionnaire_create,
)
from tests.accounts.test_admin import signed_in_with_code
from tests.factories import StaffFactory, TraderFactory

pytestmark = pytest.mark.django_db

QUEUE = "/admin/kyc/submission/queue/"
PASSING = {"experience": "over_3", "leverage": "100", "stop_out": "closed", "risk_understood": True}


# --- helpers (shared with the other admin tests) ------------------------------------------


@pytest.fixture(autouse=True)
def document_root(settings, tmp_path):
    settings.KYC_DOCUMENT_ROOT = tmp_path / "kyc-documents"
    return settings.KYC_DOCUMENT_ROOT


@pytest.fixture
def reviewer(db):
    return StaffFactory(roles=[COMPLIANCE], email="reviewer@example.com")


@pytest.fixture
def http(reviewer):
    return signed_in_with_code(reviewer)


def photo(name: str = "photo.jpg", fmt: str = "JPEG") -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (64, 40), "lightsteelblue").save(out, fmt)
    return SimpleUploadedFile(name, out.getvalue(), f"image/{fmt.lower()}")


def requirement(name: str) -> Requirement:
    return Requirement.objects.select_related("level", "questionnaire").get(name=name)


def today() -> date:
    return timezone.localdate()


def submit_identity(user, *, kind: str = "passport") -> Submission:
    sides = ["front", "back"] if kind in ("national_id", "driving_licence") else ["page"]
    return submission_document_create(
        user=user,
        requirement=requirement("Identity document"),
        details=DocumentDetails(
            document_kind=kind, expires_on=today() + timedelta(days=900), document_number="X1234"
        ),
        files=[(side, photo(f"{side}.jpg")) for side in sides],
    )


def submit_address(user) -> Submission:
    return submission_document_create(
        user=user,
        requirement=requirement("Proof of address"),
        details=DocumentDetails(
            document_kind="proof_of_address", issued_on=today() - timedelta(days=10)
        ),
        files=[("page", photo("bill.png", "PNG"))],
    )


def submit_selfie(user) -> Submission:
    return submission_document_create(
        user=user,
        requirement=requirement("Selfie with your document"),
        details=DocumentDetails(document_kind="selfie"),
        files=[("page", photo("selfie.jpg"))],
    )


def submit_source_of_funds(user) -> Submission:
    return submission_document_create(
        user=user,
        requirement=requirement("Source of funds"),
        details=DocumentDetails(
            document_kind="source_of_funds", issued_on=today() - timedelta(days=5)
        ),
        files=[("page", photo("payslip.jpg"))],
    )


def take_test(user) -> Submission:
    return submission_questionnaire_create(
        user=user, requirement=requirement("Appropriateness test"), answers=PASSING
    )


def level_of(user) -> int:
    return ClientKyc.objects.select_related("level").get(user=user).level.number


def reload(submission: Submission) -> Submission:
    return Submission.objects.get(pk=submission.pk)


def waited(submission: Submission, hours: float) -> Submission:
    """Make ``submission`` look submitted ``hours`` ago."""
    Submission.objects.filter(pk=submission.pk).update(
        submitted_at=timezone.now() - timedelta(hours=hours)
    )
    return reload(submission)


def queue_ids(html: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'data-submission="(\d+)"', html)]


def review_url(submission: Submission) -> str:
    return f"/admin/kyc/submission/{submission.pk}/change/"


def decide_url(submission: Submission) -> str:
    return f"/admin/kyc/submission/{submission.pk}/decide/"


def reason(code: str) -> ReviewReason:
    return ReviewReason.objects.get(code=code)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


# --- the queue -----------------------------------------------------------------------------


def test_the_queue_lists_pending_items_oldest_first_with_their_age(http):
    alice = TraderFactory(first_name="Alice", last_name="Archer", kyc_level=0)
    bruno = TraderFactory(first_name="Bruno", last_name="Rossi", kyc_level=1)
    recent = waited(submit_identity(alice), 3)
    oldest = waited(submit_address(bruno), 50)
    middle = waited(submit_selfie(bruno), 25)
    decided = submit_identity(TraderFactory(kyc_level=0))
    submission_approve(actor=StaffFactory(roles=[COMPLIANCE]), submission=decided)

    response = http.get(QUEUE)
    html = response.content.decode()
    assert response.status_code == 200
    assert queue_ids(html) == [oldest.pk, middle.pk, recent.pk]  # decided items are not there
    assert "<strong>3</strong> items waiting" in html
    row = re.search(rf'data-submission="{recent.pk}".*?</tr>', html, re.S).group(0)
    assert "Alice Archer" in row and "United Kingdom" in row and ">3 h<" in row
    assert "overdue" not in row and "first review" in row
    row = re.search(rf'data-submission="{oldest.pk}".*?</tr>', html, re.S).group(0)
    assert "2 days" in row and 'class="kyc-age overdue"' in row and "Proof of address" in row
    assert f'href="/admin/kyc/submission/{oldest.pk}/change/"' in row


def test_the_sla_is_a_setting(http, settings):
    settings.KYC_REVIEW_SLA_HOURS = 2
    item = waited(submit_identity(TraderFactory(kyc_level=0)), 3)
    html = http.get(QUEUE).content.decode()
    row = re.search(rf'data-submission="{item.pk}".*?</tr>', html, re.S).group(0)
    assert "overdue" in row and "Overdue after 2 h" in html


def test_an_empty_queue_says_so(http):
    html = http.get(QUEUE).content.decode()
    assert "The queue is empty." in html
    assert (
        "Nothing waiting matches these filters." in http.get(f"{QUEUE}?risk=high").content.decode()
    )


def test_the_queue_filters_by_country_level_risk_item_and_second_review(http, reviewer):
    gb = TraderFactory(kyc_level=0)
    ng = TraderFactory(kyc_level=1)
    ClientProfile.objects.filter(user=ng).update(country="NG")
    ClientKyc.objects.filter(user=ng).update(risk=ClientKyc.HIGH, country="NG")
    gb_identity = submit_identity(gb)
    ng_address = submit_address(ng)
    top = TraderFactory(kyc_level=2)
    funds = submit_source_of_funds(top)  # level 3: four eyes
    submission_approve(actor=StaffFactory(roles=[COMPLIANCE]), submission=funds)

    def ids(query: str) -> set[int]:
        response = http.get(f"{QUEUE}?{query}")
        assert response.status_code == 200
        return set(queue_ids(response.content.decode()))

    assert ids("") == {gb_identity.pk, ng_address.pk, funds.pk}
    assert ids("country=NG") == {ng_address.pk}
    assert ids("country=GB") == {gb_identity.pk, funds.pk}
    assert ids("level=1") == {gb_identity.pk}
    assert ids("level=3") == {funds.pk}
    assert ids("risk=high") == {ng_address.pk}
    assert ids("risk=standard") == {gb_identity.pk, funds.pk}
    assert ids("kind=document") == {gb_identity.pk, ng_address.pk, funds.pk}
    assert ids("kind=questionnaire") == set()
    assert ids("second=yes") == {funds.pk}
    assert ids("second=no") == {gb_identity.pk, ng_address.pk}
    assert ids("country=GB&level=3&second=yes") == {funds.pk}
    html = http.get(f"{QUEUE}?second=yes").content.decode()
    assert "awaiting second review" in html


def test_a_bad_filter_or_page_link_is_reported_and_ignored(http):
    item = submit_identity(TraderFactory(kyc_level=0))
    for query, message in [
        ("country=XX", "Country: Select a valid choice."),
        ("level=99", "Level: Select a valid choice."),
        ("risk=<script>", "Risk: Select a valid choice."),
        ("after=not-a-cursor", "This page link is not valid. Showing the first page."),
        ("after=1-99999999999999999999999", "This page link is not valid."),
        ("after=999999999999999999999-1", "This page link is not valid."),
    ]:
        response = http.get(f"{QUEUE}?{query}")
        html = response.content.decode()
        assert response.status_code == 200, query
        assert message in html, query
        assert queue_ids(html) == [item.pk], query
    assert "&lt;script&gt;" in http.get(f"{QUEUE}?risk=<script>").content.decode()


def test_the_queue_pages_by_position_not_by_offset(http, monkeypatch):
    monkeypatch.setattr(review_admin, "QUEUE_PAGE_SIZE", 2)
    items = [waited(submit_identity(TraderFactory(kyc_level=0)), 10 - i) for i in range(5)]
    # Two items submitted at the same instant are ordered by id, never lost.
    Submission.objects.filter(pk=items[2].pk).update(submitted_at=items[1].submitted_at)
    seen, url = [], QUEUE
    for _ in range(4):
        html = http.get(url).content.decode()
        seen.append(queue_ids(html))
        found = re.search(r'href="(\?[^"]*after=[^"]+)" id="queue-next"', html)
        if not found:
            break
        url = QUEUE + found.group(1).replace("&amp;", "&")
    assert seen == [[items[0].pk, items[1].pk], [items[2].pk, items[3].pk], [items[4].pk]]
    assert "Back to the oldest" in html


def test_filters_survive_paging(http, monkeypatch):
    monkeypatch.setattr(review_admin, "QUEUE_PAGE_SIZE", 1)
    for _ in range(2):
        submit_identity(TraderFactory(kyc_level=0))
    submit_address(TraderFactory(kyc_level=1))
    html = http.get(f"{QUEUE}?level=1").content.decode()
    next_link = re.search(r'href="(\?[^"]*)" id="queue-next"', html).group(1)
    assert "level=1" in next_link


def test_sales_see_only_their_own_clients_items(reviewer):
    sales = StaffFactory(roles=[SALES])
    mine = TraderFactory(kyc_level=0)
    ClientProfile.objects.filter(user=mine).update(manager=sales)
    theirs = TraderFactory(kyc_level=0)
    my_item, their_item = submit_identity(mine), submit_identity(theirs)
    http = signed_in_with_code(sales)
    assert queue_ids(http.get(QUEUE).content.decode()) == [my_item.pk]
    assert http.get(review_url(my_item)).status_code == 200
    assert http.get(review_url(their_item)).status_code == 404
    listing = http.get("/admin/kyc/submission/").content.decode()
    assert theirs.email not in listing and mine.email in listing
    # Sales may look, never decide.
    response = http.post(decide_url(my_item), {"decision": "approve"})
    assert response.status_code == 403
    assert reload(my_item).status == Submission.PENDING


@pytest.mark.parametrize("role", [SUPPORT, SALES])
def test_staff_who_may_look_but_not_review_are_refused(role, reviewer):
    staff = StaffFactory(roles=[role])
    item = submit_identity(TraderFactory(kyc_level=0))
    if role == SALES:
        ClientProfile.objects.filter(user=item.user).update(manager=staff)
    http = signed_in_with_code(staff)
    page = http.get(review_url(item)).content.decode()
    assert "deciding needs the Compliance role" in page
    assert 'id="approve-form"' not in page
    for decision in ("approve", "reject", "resubmit"):
        data = {"decision": decision, "reason": reason("other").pk, "note": "x"}
        assert http.post(decide_url(item), data).status_code == 403
    assert reload(item).status == Submission.PENDING
    assert not Review.objects.exists()


def test_staff_without_any_kyc_permission_see_nothing():
    finance = StaffFactory(roles=["Finance"])
    item = submit_identity(TraderFactory(kyc_level=0))
    http = signed_in_with_code(finance)
    assert http.get(QUEUE).status_code == 403
    assert http.get(review_url(item)).status_code == 403


# --- the review page -------------------------------------------------------------------------


def test_the_review_page_shows_documents_beside_the_clients_data(http):
    client = TraderFactory(first_name="Chen", last_name="Wei", kyc_level=0)
    ClientProfile.objects.filter(user=client).update(date_of_birth=date(1990, 2, 3))
    item = submit_identity(client, kind="national_id")
    response = http.get(review_url(item))
    html = response.content.decode()
    assert response.status_code == 200
    documents = list(item.documents.all())
    assert len(documents) == 2
    for document in documents:
        assert f'src="/room/verification/documents/{document.pk}/"' in html
    assert "Front of the national ID card" in html and "Back of the national ID card" in html
    for fact in ["Chen Wei", "1990-02-03", "United Kingdom", "1 Test Street", "+442079460958"]:
        assert fact in html
    assert "X1234" in html  # the document number
    assert "0 · Unverified" in html  # the current level
    assert "This is the client's first attempt at this item." in html
    assert "No decision yet." in html
    # The reasons offered fit each decision.
    reject_form = re.search(r'id="reject-form".*?</form>', html, re.S).group(0)
    resubmit_form = re.search(r'id="resubmit-form".*?</form>', html, re.S).group(0)
    assert reason("suspected_forgery").text in reject_form
    assert reason("suspected_forgery").text not in resubmit_form
    assert reason("unreadable").text in resubmit_form
    assert reason("unreadable").text not in reject_form
    # And the reviewer may open a document (the staff access check is there).
    file = http.get(f"/room/verification/documents/{documents[0].pk}/")
    assert file.status_code == 200 and file["Content-Type"] == "image/jpeg"


def test_the_review_page_shows_questionnaire_answers_with_points(http):
    client = TraderFactory(kyc_level=0)
    item = submission_questionnaire_create(
        user=client,
        requirement=requirement("Appropriateness test"),
        answers={**PASSING, "experience": "none", "leverage": "1"},
    )
    html = http.get(review_url(item)).content.decode()
    assert 'id="answers"' in html
    assert "How long have you traded leveraged products" in html
    assert "of a pass mark of 5" in html
    assert "nothing to decide" in html  # decided automatically (failed)
    assert "automatic" in html  # the decision's history


def test_approving_through_the_admin_raises_the_clients_level(http, reviewer):
    client = TraderFactory(kyc_level=0)
    take_test(client)
    item = submit_identity(client)
    response = http.post(
        decide_url(item), {"decision": "approve", "note": "Looks fine"}, follow=True
    )
    assert reload(item).status == Submission.APPROVED
    assert level_of(client) == 1
    assert (
        f"Approved: Identity document of {client.email}. The client is now at level 1 · Basic."
        in messages_of(response)
    )
    review = Review.objects.get(submission=item)
    assert (review.reviewer, review.decision, review.note) == (
        reviewer,
        Review.APPROVE,
        "Looks fine",
    )
    assert Event.objects.filter(name="kyc.approved", client=client, actor=reviewer).exists()
    assert Event.objects.filter(name="kyc.level_changed", client=client).exists()
    html = response.content.decode()
    assert "nothing to decide" in html and "reviewer@example.com" in html


def test_rejecting_needs_a_reason_that_fits(http):
    item = submit_identity(TraderFactory(kyc_level=0))
    cases = [
        ({"decision": "reject"}, "Choose a reason."),
        (
            {"decision": "reject", "reason": reason("unreadable").pk},
            "This reason cannot be used here.",
        ),
        ({"decision": "reject", "reason": reason("other").pk}, "Explain the reason in the note."),
        ({"decision": "reject", "reason": "999999"}, "Choose one of the listed reasons."),
        ({"decision": "reject", "reason": "'; DROP TABLE"}, "Choose one of the listed reasons."),
        ({"decision": "burn", "reason": reason("other").pk}, "Select a valid choice."),
        ({"decision": "reject", "reason": reason("other").pk, "note": "x" * 2001}, "at most 2000"),
    ]
    for data, message in cases:
        response = http.post(decide_url(item), data, follow=True)
        assert response.status_code == 200
        assert any(message in m for m in messages_of(response)), (data, messages_of(response))
        assert reload(item).status == Submission.PENDING
    assert not Review.objects.exists()

    data = {"decision": "reject", "reason": reason("suspected_forgery").pk, "note": "Fonts differ"}
    response = http.post(decide_url(item), data, follow=True)
    item = reload(item)
    assert (item.status, item.reason.code, item.reason_note) == (
        Submission.REJECTED,
        "suspected_forgery",
        "Fonts differ",
    )
    assert any("Rejected: Identity document" in m for m in messages_of(response))
    assert Event.objects.filter(name="kyc.rejected", client=item.user).exists()
    assert level_of(item.user) == 0


def test_asking_for_a_resubmission(http):
    item = submit_identity(TraderFactory(kyc_level=0))
    data = {"decision": "resubmit", "reason": reason("unreadable").pk, "note": ""}
    response = http.post(decide_url(item), data, follow=True)
    assert reload(item).status == Submission.RESUBMIT
    assert any("Resubmission requested" in m for m in messages_of(response))
    assert Event.objects.filter(name="kyc.resubmission_requested", client=item.user).exists()
    # The client's next attempt shows the earlier one in its history.
    again = submit_identity(item.user)
    html = http.get(review_url(again)).content.decode()
    history = re.search(r'id="earlier-attempts".*', html, re.S).group(0)
    assert "resubmission requested" in history and reason("unreadable").text in history


def test_an_item_already_decided_is_not_decided_again(http):
    item = submit_identity(TraderFactory(kyc_level=0))
    http.post(decide_url(item), {"decision": "approve"})
    response = http.post(
        decide_url(item),
        {"decision": "reject", "reason": reason("suspected_forgery").pk},
        follow=True,
    )
    assert "This item is already approved." in messages_of(response)
    assert reload(item).status == Submission.APPROVED
    assert Review.objects.filter(submission=item).count() == 1


def test_four_eyes_needs_a_second_different_reviewer(http, reviewer):
    client = TraderFactory(kyc_level=2)
    item = submit_source_of_funds(client)  # level 3 asks for two reviewers
    page = http.get(review_url(item)).content.decode()
    assert "Approve (first of two)" in page

    response = http.post(decide_url(item), {"decision": "approve"}, follow=True)
    item = reload(item)
    assert item.status == Submission.PENDING and item.first_approved_by == reviewer
    assert level_of(client) == 2
    assert any("a second reviewer must approve it" in m for m in messages_of(response))
    page = response.content.decode()
    assert 'id="gave-first"' in page and 'id="approve-form"' not in page
    assert "awaiting second review · first approved by reviewer@example.com" in page

    # The same reviewer cannot give the second approval, whatever they post.
    response = http.post(decide_url(item), {"decision": "approve"}, follow=True)
    assert any("you gave the first approval" in m for m in messages_of(response))
    assert reload(item).status == Submission.PENDING

    second = StaffFactory(roles=[COMPLIANCE])
    other = signed_in_with_code(second)
    assert 'id="approve-form"' in other.get(review_url(item)).content.decode()
    response = other.post(decide_url(item), {"decision": "approve"}, follow=True)
    assert reload(item).status == Submission.APPROVED
    assert level_of(client) == 3
    decisions = list(Review.objects.filter(submission=item).values_list("decision", "reviewer"))
    assert decisions == [(Review.APPROVE, reviewer.pk), (Review.SECOND_APPROVE, second.pk)]
    assert any("now at level 3 · Enhanced" in m for m in messages_of(response))


def test_approve_and_next_moves_through_the_filtered_queue(http, reviewer):
    first = waited(submit_identity(TraderFactory(kyc_level=0)), 5)
    address = waited(submit_address(TraderFactory(kyc_level=1)), 4)
    second = waited(submit_identity(TraderFactory(kyc_level=0)), 3)
    mine_first = submit_source_of_funds(TraderFactory(kyc_level=2))
    submission_approve(actor=reviewer, submission=mine_first)  # I cannot give its second
    html = http.get(f"{QUEUE}?level=1").content.decode()
    assert queue_ids(html) == [first.pk, second.pk]
    link = re.search(rf'href="(/admin/kyc/submission/{first.pk}/change/[^"]*)"', html).group(1)
    assert "queue=level%3D1" in link

    data = {"decision": "approve", "and_next": "1", "queue": "level=1"}
    response = http.post(decide_url(first), data)
    assert response.status_code == 302
    assert response["Location"] == f"{review_url(second)}?queue=level%3D1"
    response = http.post(decide_url(second), data)
    assert response["Location"] == f"{QUEUE}?level=1"
    assert "Nothing else is waiting in this queue." in messages_of(http.get(response["Location"]))
    assert reload(address).status == Submission.PENDING

    # Unfiltered, the item I gave the first approval to is skipped.
    response = http.post(
        decide_url(address),
        {"decision": "resubmit", "reason": reason("too_old").pk, "and_next": "1"},
    )
    assert response["Location"] == QUEUE


def test_reviewers_cannot_review_themselves():
    admin_user = StaffFactory(roles=[ADMINISTRATOR])
    ClientProfile.objects.create(user=admin_user, country="GB", date_of_birth=date(1980, 1, 1))
    item = submit_identity(admin_user)
    http = signed_in_with_code(admin_user)
    page = http.get(review_url(item)).content.decode()
    assert "This is your own verification" in page
    response = http.post(decide_url(item), {"decision": "approve"}, follow=True)
    assert "You cannot review your own verification." in messages_of(response)
    assert reload(item).status == Submission.PENDING


def test_hostile_ids_and_methods(http):
    item = submit_identity(TraderFactory(kyc_level=0))
    assert http.get("/admin/kyc/submission/abc/change/").status_code == 404
    assert http.get("/admin/kyc/submission/99999999999999999999999/change/").status_code == 404
    assert (
        http.post("/admin/kyc/submission/999999/decide/", {"decision": "approve"}).status_code
        == 404
    )
    assert http.get(decide_url(item)).status_code == 405
    assert reload(item).status == Submission.PENDING


# --- queries ----------------------------------------------------------------------------------


def test_the_queue_query_count_does_not_grow_with_the_rows(http, django_assert_num_queries):
    for _ in range(2):
        submit_identity(TraderFactory(kyc_level=0))
    http.get(QUEUE)  # warm: the session's first read
    with django_assert_num_queries(QUEUE_QUERIES) as small:
        assert http.get(QUEUE).status_code == 200
    for _ in range(6):
        submit_address(TraderFactory(kyc_level=1))
    with django_assert_num_queries(QUEUE_QUERIES):
        html = http.get(f"{QUEUE}?risk=standard&second=no").content.decode()
    assert len(queue_ids(html)) == 8
    assert small  # the captured queries, for the failure message


# The user, their verified device (two-factor), their permissions (user and
# roles) and role names (Sales scoping), the levels (filter choices), the
# page's ids, those rows with everything they show, the bounded count.
QUEUE_QUERIES = 9
REVIEW_QUERIES = 10


def test_the_review_page_query_count_does_not_grow_with_documents_or_history(
    http, django_assert_num_queries
):
    client = TraderFactory(kyc_level=0)
    item = submit_identity(client)
    http.get(review_url(item))
    with django_assert_num_queries(REVIEW_QUERIES):
        assert http.get(review_url(item)).status_code == 200
    reviewer_b = StaffFactory(roles=[COMPLIANCE])
    for _ in range(3):
        http.post(decide_url(item), {"decision": "resubmit", "reason": reason("unreadable").pk})
        item = submit_identity(client, kind="national_id")
    submission_approve(actor=reviewer_b, submission=submit_address(TraderFactory(kyc_level=1)))
    with django_assert_num_queries(REVIEW_QUERIES):
        html = http.get(review_url(item)).content.decode()
    assert html.count("resubmission requested") >= 3 and html.count("<img ") == 2


def test_the_queue_is_first_in_the_kyc_menu_for_those_who_may_see_it(http, db):
    from accounts.roles import FINANCE

    page = http.get("/admin/").content.decode()
    assert 'href="/admin/kyc/submission/queue/"' in page and "Review queue" in page
    finance = signed_in_with_code(StaffFactory(roles=[FINANCE], email="fin@example.com"))
    assert "Review queue" not in finance.get("/admin/").content.decode()
