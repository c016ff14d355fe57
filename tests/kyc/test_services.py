"""The level machinery, through the real services: a client climbs a level
when its requirements (as configured, and as apply to their country) are all
approved; configuration changes and negative decisions never move anyone;
four eyes; the appropriateness test's scoring; when a client may submit;
renewals; and the ``kyc.*`` events, which carry no personal data.
"""

from __future__ import annotations

import io
import json
from datetime import date, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http import Http404
from django.utils import timezone
from PIL import Image

from accounts.models import ClientProfile
from accounts.roles import COMPLIANCE, SUPPORT
from backoffice.models import Event
from kyc import selectors
from kyc.exceptions import KycError
from kyc.models import (
    ClientKyc,
    Document,
    Level,
    LevelChange,
    Requirement,
    Review,
    ReviewReason,
    Submission,
)
from kyc.services import (
    DocumentDetails,
    kyc_country_refresh,
    kyc_ensure,
    kyc_level_set,
    submission_approve,
    submission_document_create,
    submission_questionnaire_create,
    submission_reject,
    submission_request_resubmission,
    submissions_expire,
)
from tests.factories import StaffFactory, TraderFactory

pytestmark = pytest.mark.django_db

PASSING = {"experience": "over_3", "leverage": "100", "stop_out": "closed", "risk_understood": True}
# What a kyc.* event may carry: ids, the requirement's name, levels, a reason code.
SAFE_KEYS = {"submission", "requirement", "name", "level", "kind", "reason", "from", "to"}
FAILING = {"experience": "none", "leverage": "1", "stop_out": "nothing", "risk_understood": True}


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def document_root(settings, tmp_path):
    settings.KYC_DOCUMENT_ROOT = tmp_path / "kyc-documents"
    return settings.KYC_DOCUMENT_ROOT


@pytest.fixture
def reviewer(db):
    return StaffFactory(roles=[COMPLIANCE])


@pytest.fixture
def second_reviewer(db):
    return StaffFactory(roles=[COMPLIANCE])


def photo(name: str = "photo.jpg", fmt: str = "JPEG") -> SimpleUploadedFile:
    """A small, valid image, as a phone's camera would send it."""
    out = io.BytesIO()
    Image.new("RGB", (320, 200), "lightsteelblue").save(out, fmt)
    content_type = "image/jpeg" if fmt == "JPEG" else "image/png"
    return SimpleUploadedFile(name, out.getvalue(), content_type=content_type)


def requirement(name: str) -> Requirement:
    return Requirement.objects.select_related("level", "questionnaire").get(name=name)


def today() -> date:
    return timezone.localdate()


def submit_identity(user, *, kind: str = "passport", expires_in: int = 900, number: str = ""):
    sides = ["front", "back"] if kind in ("national_id", "driving_licence") else ["page"]
    return submission_document_create(
        user=user,
        requirement=requirement("Identity document"),
        details=DocumentDetails(
            document_kind=kind,
            expires_on=today() + timedelta(days=expires_in),
            document_number=number,
        ),
        files=[(side, photo(f"{side}.jpg")) for side in sides],
    )


def submit_address(user, *, issued_days_ago: int = 10):
    return submission_document_create(
        user=user,
        requirement=requirement("Proof of address"),
        details=DocumentDetails(
            document_kind="proof_of_address", issued_on=today() - timedelta(days=issued_days_ago)
        ),
        files=[("page", photo("bill.png", "PNG"))],
    )


def submit_selfie(user):
    return submission_document_create(
        user=user,
        requirement=requirement("Selfie with your document"),
        details=DocumentDetails(document_kind="selfie"),
        files=[("page", photo("selfie.jpg"))],
    )


def submit_source_of_funds(user, name: str = "Source of funds"):
    return submission_document_create(
        user=user,
        requirement=requirement(name),
        details=DocumentDetails(
            document_kind="source_of_funds", issued_on=today() - timedelta(days=5)
        ),
        files=[("page", photo("payslip.jpg"))],
    )


def take_test(user, answers=PASSING):
    return submission_questionnaire_create(
        user=user, requirement=requirement("Appropriateness test"), answers=answers
    )


def level_of(user) -> int:
    return ClientKyc.objects.select_related("level").get(user=user).level.number


def reach_level_1(user, reviewer) -> None:
    submission_approve(actor=reviewer, submission=submit_identity(user))
    take_test(user)
    assert level_of(user) == 1


def reach_level_2(user, reviewer) -> None:
    reach_level_1(user, reviewer)
    submission_approve(actor=reviewer, submission=submit_address(user))
    submission_approve(actor=reviewer, submission=submit_selfie(user))
    assert level_of(user) == 2


def reason(code: str) -> ReviewReason:
    return ReviewReason.objects.get(code=code)


def reload(submission: Submission) -> Submission:
    return Submission.objects.get(pk=submission.pk)


# --- levels -----------------------------------------------------------------------------


def test_a_fresh_client_starts_at_level_0():
    trader = TraderFactory(kyc_level=False)
    kyc = kyc_ensure(trader)
    assert (kyc.level.number, kyc.country, kyc.risk) == (0, "GB", ClientKyc.STANDARD)
    assert kyc_ensure(trader).pk == kyc.pk
    assert ClientKyc.objects.filter(user=trader).count() == 1
    assert not LevelChange.objects.filter(user=trader).exists()


def test_approving_every_level_1_requirement_raises_the_client_to_1(reviewer):
    trader = TraderFactory(kyc_level=False)
    identity = submit_identity(trader)
    assert identity.status == Submission.PENDING
    assert level_of(trader) == 0
    submission_approve(actor=reviewer, submission=identity)
    assert level_of(trader) == 0  # the test is still missing

    test = take_test(trader)
    assert reload(test).status == Submission.APPROVED
    assert level_of(trader) == 1
    change = LevelChange.objects.get(user=trader)
    assert (change.from_level, change.to_level) == (0, 1)
    assert change.reason == "Appropriateness test approved."
    assert change.actor is None  # the test approved itself


def test_level_2_follows_whatever_order_the_items_are_approved_in(reviewer):
    trader = TraderFactory(kyc_level=False)
    selfie, address = submit_selfie(trader), submit_address(trader)
    identity = submit_identity(trader)
    # Level 2's items first: nothing moves while level 1 is incomplete.
    submission_approve(actor=reviewer, submission=selfie)
    submission_approve(actor=reviewer, submission=address)
    assert level_of(trader) == 0
    take_test(trader)
    assert level_of(trader) == 0
    submission_approve(actor=reviewer, submission=identity)
    # Level 1 completes and level 2 is already met: straight to 2.
    assert level_of(trader) == 2
    change = LevelChange.objects.get(user=trader)
    assert (change.from_level, change.to_level, change.actor) == (0, 2, reviewer)


def test_an_extra_requirement_for_a_high_risk_country_is_needed_only_by_its_residents(reviewer):
    extra = requirement("Source of funds (high-risk countries)")
    nigerian = TraderFactory(kyc_level=False, profile__country="NG")
    british = TraderFactory(kyc_level=False)
    assert kyc_ensure(nigerian).risk == ClientKyc.HIGH

    for trader in (nigerian, british):
        submission_approve(actor=reviewer, submission=submit_identity(trader))
        take_test(trader)
    assert level_of(british) == 1
    assert level_of(nigerian) == 0  # the extra document is missing
    overview = selectors.verification_overview(nigerian)
    items = {item.requirement.name: item.status for item in overview.upcoming[0].items}
    assert items[extra.name] == Submission.MISSING

    submission_approve(actor=reviewer, submission=submit_source_of_funds(nigerian, extra.name))
    assert level_of(nigerian) == 1

    # The British client is never asked for it, and cannot submit it.
    names = [i.requirement.name for i in selectors.verification_overview(british).held]
    assert extra.name not in names
    with pytest.raises(Http404):
        submit_source_of_funds(british, extra.name)
    assert not Submission.objects.filter(user=british, requirement=extra).exists()


def test_a_move_to_a_high_risk_country_changes_the_risk_but_not_the_level(reviewer):
    trader = TraderFactory(kyc_level=False)
    reach_level_1(trader, reviewer)
    ClientProfile.objects.filter(user=trader).update(country="NG")
    kyc = kyc_country_refresh(user=trader)
    assert (kyc.country, kyc.risk, level_of(trader)) == ("NG", ClientKyc.HIGH, 1)
    # What is newly due shows on the page.
    held = {i.requirement.name: i.status for i in selectors.verification_overview(trader).held}
    assert held["Source of funds (high-risk countries)"] == Submission.MISSING


def test_adding_a_requirement_does_not_move_clients_already_at_that_level(reviewer):
    verified = TraderFactory(kyc_level=False)
    reach_level_1(verified, reviewer)
    Requirement.objects.create(
        level=Level.objects.get(number=1),
        name="Tax residency",
        kind=Requirement.DOCUMENT,
        document_kinds=["other"],
        order=40,
    )
    assert level_of(verified) == 1
    assert LevelChange.objects.filter(user=verified).count() == 1
    held = {i.requirement.name: i.status for i in selectors.verification_overview(verified).held}
    assert held["Tax residency"] == Submission.MISSING

    # A new client needs it to reach level 1 ...
    newcomer = TraderFactory(kyc_level=False)
    submission_approve(actor=reviewer, submission=submit_identity(newcomer))
    take_test(newcomer)
    assert level_of(newcomer) == 0
    # ... and the verified client still climbs to level 2 with level 2's items.
    submission_approve(actor=reviewer, submission=submit_address(verified))
    submission_approve(actor=reviewer, submission=submit_selfie(verified))
    assert level_of(verified) == 2


def test_a_changed_limit_or_a_removed_requirement_moves_nobody(reviewer):
    trader = TraderFactory(kyc_level=False)
    submission_approve(actor=reviewer, submission=submit_identity(trader))
    Requirement.objects.filter(name="Appropriateness test").update(is_active=False)
    Level.objects.filter(number=1).update(deposit_daily_limit=None)
    # Level 1 now asks only for what the client has, yet nobody re-evaluates
    # them behind their back: the next approval does.
    assert level_of(trader) == 0
    submission_approve(actor=reviewer, submission=submit_selfie(trader))
    assert level_of(trader) == 1


def test_rejection_and_resubmission_do_not_lower_a_level(reviewer):
    trader = TraderFactory(kyc_level=False)
    reach_level_1(trader, reviewer)
    address = submit_address(trader)
    submission_request_resubmission(
        actor=reviewer, submission=address, reason=reason("unreadable"), note="Too dark."
    )
    address = reload(address)
    assert (address.status, address.reason.code, address.reason_note) == (
        Submission.RESUBMIT,
        "unreadable",
        "Too dark.",
    )
    assert level_of(trader) == 1

    again = submit_address(trader)  # a resubmission is allowed
    assert not reload(address).is_current and reload(again).is_current
    submission_reject(actor=reviewer, submission=again, reason=reason("suspected_forgery"))
    assert level_of(trader) == 1
    # A rejected document is final for the client.
    with pytest.raises(KycError, match="It was rejected. Contact support"):
        submit_address(trader)
    assert Submission.objects.filter(user=trader, requirement__name="Proof of address").count() == 2


def test_a_rejected_renewal_keeps_the_level_until_the_old_document_lapses(reviewer):
    trader = TraderFactory(kyc_level=False)
    submission_approve(actor=reviewer, submission=submit_identity(trader, expires_in=20))
    take_test(trader)
    renewal = submit_identity(trader, expires_in=2000)
    submission_reject(actor=reviewer, submission=renewal, reason=reason("name_mismatch"))
    assert level_of(trader) == 1
    Submission.objects.filter(
        user=trader, requirement__name="Identity document", status=Submission.APPROVED
    ).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert submissions_expire() == 1
    assert level_of(trader) == 0


def test_reasons_are_checked(reviewer):
    trader = TraderFactory(kyc_level=False)
    identity = submit_identity(trader)
    with pytest.raises(KycError, match="Choose a reason"):
        submission_reject(actor=reviewer, submission=identity, reason=None)
    with pytest.raises(KycError, match="cannot be used here"):
        submission_request_resubmission(
            actor=reviewer, submission=identity, reason=reason("suspected_forgery")
        )
    with pytest.raises(KycError, match="cannot be used here"):
        submission_reject(actor=reviewer, submission=identity, reason=reason("unreadable"))
    with pytest.raises(KycError, match="Explain the reason in the note"):
        submission_reject(actor=reviewer, submission=identity, reason=reason("other"), note=" ")
    ReviewReason.objects.filter(code="name_mismatch").update(is_active=False)
    with pytest.raises(KycError, match="cannot be used here"):
        submission_reject(actor=reviewer, submission=identity, reason=reason("name_mismatch"))
    assert reload(identity).status == Submission.PENDING
    assert not Review.objects.filter(submission=identity).exists()


def test_only_reviewers_decide_and_never_on_their_own_verification(reviewer):
    trader = TraderFactory(kyc_level=False)
    identity = submit_identity(trader)
    support = StaffFactory(roles=[SUPPORT])
    with pytest.raises(KycError, match="You may not review KYC submissions"):
        submission_approve(actor=support, submission=identity)
    with pytest.raises(KycError, match="You may not review KYC submissions"):
        submission_approve(actor=trader, submission=identity)
    # A compliance officer who is also a client here.
    submission = submit_selfie(reviewer)
    with pytest.raises(KycError, match="cannot review your own verification"):
        submission_approve(actor=reviewer, submission=submission)
    submission_approve(actor=reviewer, submission=identity)
    with pytest.raises(KycError, match="already approved"):
        submission_approve(actor=reviewer, submission=identity)


def test_staff_set_a_level_by_hand_with_a_reason(reviewer):
    trader = TraderFactory(kyc_level=False)
    level_3 = Level.objects.get(number=3)
    with pytest.raises(KycError, match="Say why"):
        kyc_level_set(actor=reviewer, user=trader, level=level_3, reason="  ")
    with pytest.raises(KycError, match="may not change"):
        kyc_level_set(actor=StaffFactory(roles=[SUPPORT]), user=trader, level=level_3, reason="VIP")
    kyc_level_set(actor=reviewer, user=trader, level=level_3, reason="Verified in person.")
    change = LevelChange.objects.get(user=trader)
    assert (change.from_level, change.to_level, change.actor, change.reason) == (
        0,
        3,
        reviewer,
        "Verified in person.",
    )


# --- four eyes ------------------------------------------------------------------------------


def test_four_eyes_needs_a_second_different_reviewer_before_the_level_rises(
    reviewer, second_reviewer
):
    trader = TraderFactory(kyc_level=False)
    reach_level_2(trader, reviewer)
    funds = submit_source_of_funds(trader)  # level 3 asks for a second review

    submission_approve(actor=reviewer, submission=funds)
    funds = reload(funds)
    assert funds.status == Submission.PENDING and funds.awaiting_second_review
    assert funds.first_approved_by == reviewer
    assert level_of(trader) == 2
    assert not Event.objects.filter(name="kyc.approved", payload__submission=funds.pk).exists()
    assert funds in selectors.review_queue()  # still waiting in the queue

    with pytest.raises(KycError, match="A second reviewer must approve"):
        submission_approve(actor=reviewer, submission=funds)
    assert level_of(trader) == 2

    submission_approve(actor=second_reviewer, submission=funds)
    assert reload(funds).status == Submission.APPROVED
    assert level_of(trader) == 3
    decisions = list(Review.objects.filter(submission=funds).values_list("decision", "reviewer"))
    assert decisions == [
        (Review.APPROVE, reviewer.pk),
        (Review.SECOND_APPROVE, second_reviewer.pk),
    ]


def test_the_second_reviewer_may_reject_instead(reviewer, second_reviewer):
    trader = TraderFactory(kyc_level=False)
    reach_level_2(trader, reviewer)
    funds = submit_source_of_funds(trader)
    submission_approve(actor=reviewer, submission=funds)
    submission_reject(
        actor=second_reviewer, submission=funds, reason=reason("other"), note="Payslip edited."
    )
    assert reload(funds).status == Submission.REJECTED
    assert level_of(trader) == 2


# --- the appropriateness test ------------------------------------------------------------


def test_a_score_below_the_pass_mark_is_refused_at_once():
    trader = TraderFactory(kyc_level=False)
    test = reload(take_test(trader, FAILING))
    assert (test.status, test.score, test.reason.code) == (Submission.REJECTED, 1, "failed_test")
    assert test.decided_at is not None
    review = Review.objects.get(submission=test)
    assert (review.decision, review.reviewer, review.note) == (
        Review.REJECT,
        None,
        "Score 1, pass mark 5.",
    )
    answers = {a["name"]: (a["answer"], a["points"]) for a in test.answers}
    assert answers == {
        "experience": ("none", 0),
        "leverage": ("1", 0),
        "stop_out": ("nothing", 0),
        "risk_understood": (True, 1),
    }
    assert level_of(trader) == 0


def test_the_test_may_be_retaken_only_after_24_hours():
    trader = TraderFactory(kyc_level=False)
    failed = take_test(trader, FAILING)
    with pytest.raises(KycError, match="24 hours after your last attempt"):
        take_test(trader, PASSING)
    Submission.objects.filter(pk=failed.pk).update(
        decided_at=timezone.now() - timedelta(hours=23, minutes=50)
    )
    with pytest.raises(KycError, match="24 hours"):
        take_test(trader, PASSING)
    Submission.objects.filter(pk=failed.pk).update(
        decided_at=timezone.now() - timedelta(hours=24, minutes=1)
    )
    passed = take_test(trader, PASSING)
    assert (reload(passed).status, reload(passed).score) == (Submission.APPROVED, 8)
    assert not reload(failed).is_current


def test_passing_is_approved_at_once_and_a_missing_answer_stores_nothing():
    trader = TraderFactory(kyc_level=False)
    with pytest.raises(KycError, match="Answer: How long have you traded"):
        take_test(trader, {**PASSING, "experience": ""})
    with pytest.raises(KycError, match="Confirm: I understand"):
        take_test(trader, {**PASSING, "risk_understood": False})
    assert not Submission.objects.filter(user=trader).exists()
    test = reload(take_test(trader, {**PASSING, "experience": "1_3", "leverage": "10"}))
    assert (test.status, test.score) == (Submission.APPROVED, 5)  # the pass mark exactly


# --- when a client may submit ------------------------------------------------------------


def test_a_client_cannot_submit_while_an_item_is_pending_or_approved(reviewer):
    trader = TraderFactory(kyc_level=False)
    identity = submit_identity(trader)
    with pytest.raises(KycError, match="It is being reviewed"):
        submit_identity(trader)
    submission_approve(actor=reviewer, submission=identity)
    with pytest.raises(KycError, match="It is approved"):
        submit_identity(trader)
    assert Submission.objects.filter(user=trader).count() == 1
    assert Document.objects.filter(user=trader).count() == 1


def test_a_document_close_to_its_expiry_may_be_renewed(reviewer):
    trader = TraderFactory(kyc_level=False)
    old = submit_identity(trader, expires_in=20)
    submission_approve(actor=reviewer, submission=old)
    take_test(trader)
    overview = selectors.verification_overview(trader)
    identity = next(i for i in overview.held if i.requirement.name == "Identity document")
    assert (identity.status, identity.can_submit) == (Submission.APPROVED, True)

    renewal = submit_identity(trader, expires_in=3000)
    assert not reload(old).is_current and reload(old).status == Submission.APPROVED
    assert level_of(trader) == 1  # the pending renewal changes nothing yet
    submission_approve(actor=reviewer, submission=renewal)
    assert level_of(trader) == 1
    assert LevelChange.objects.filter(user=trader).count() == 1
    assert reload(renewal).expires_at.date() == today() + timedelta(days=3001)


def test_details_that_do_not_fit_the_requirement_store_nothing(document_root):
    trader = TraderFactory(kyc_level=False)
    identity = requirement("Identity document")
    cases = [
        (DocumentDetails("selfie", expires_on=today() + timedelta(days=99)), "document kinds"),
        (DocumentDetails("passport"), "Enter the date the document expires"),
        (DocumentDetails("passport", expires_on=today()), "has expired"),
        (
            DocumentDetails(
                "passport",
                issued_on=today() + timedelta(days=1),
                expires_on=today() + timedelta(days=99),
            ),
            "cannot be in the future",
        ),
    ]
    for details, message in cases:
        with pytest.raises(KycError, match=message):
            submission_document_create(
                user=trader, requirement=identity, details=details, files=[("page", photo())]
            )
    card = DocumentDetails("national_id", expires_on=today() + timedelta(days=99))
    with pytest.raises(KycError, match="Upload both sides of the card"):
        submission_document_create(
            user=trader, requirement=identity, details=card, files=[("front", photo())]
        )
    with pytest.raises(KycError, match="issued within the last 90 days"):
        submit_address(trader, issued_days_ago=91)
    with pytest.raises(KycError, match="Upload at most 3 pages"):
        submission_document_create(
            user=trader,
            requirement=requirement("Selfie with your document"),
            details=DocumentDetails("selfie"),
            files=[("page", photo()) for _ in range(4)],
        )
    with pytest.raises(KycError, match="not asked that way"):
        submission_questionnaire_create(user=trader, requirement=identity, answers=PASSING)
    assert not Submission.objects.filter(user=trader).exists()
    assert not [path for path in document_root.rglob("*") if path.is_file()]


def test_a_two_sided_card_is_stored_with_both_sides(document_root):
    trader = TraderFactory(kyc_level=False)
    card = submit_identity(trader, kind="national_id")
    sides = sorted(Document.objects.filter(submission=card).values_list("side", flat=True))
    assert sides == ["back", "front"]
    assert len([p for p in document_root.rglob("*") if p.is_file()]) == 2


# --- events --------------------------------------------------------------------------------


def test_every_decision_is_an_event_without_personal_data(reviewer):
    trader = TraderFactory(
        kyc_level=False, first_name="Zelda", last_name="Quixote", profile__country="GB"
    )
    submission_approve(
        actor=reviewer, submission=submit_identity(trader, expires_in=40, number="P99887766")
    )
    take_test(trader)  # kyc.submitted, kyc.approved, kyc.level_changed
    address = submit_address(trader)
    submission_request_resubmission(
        actor=reviewer, submission=address, reason=reason("unreadable"), note="Blurred."
    )
    submission_reject(
        actor=reviewer, submission=submit_address(trader), reason=reason("suspected_forgery")
    )
    Submission.objects.filter(user=trader, requirement__name="Identity document").update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert submissions_expire() == 1

    events = list(Event.objects.filter(client=trader, name__startswith="kyc.").order_by("id"))
    assert [e.name for e in events] == [
        "kyc.submitted",
        "kyc.approved",
        "kyc.submitted",
        "kyc.approved",
        "kyc.level_changed",
        "kyc.submitted",
        "kyc.resubmission_requested",
        "kyc.submitted",
        "kyc.rejected",
        "kyc.expired",
        "kyc.level_changed",
    ]
    assert events[1].actor == reviewer
    assert events[4].payload == {
        "from": 0,
        "to": 1,
        "level": "Basic",
        "reason": "Appropriateness test approved.",
    }
    assert events[6].payload["reason"] == "unreadable"
    assert events[-1].payload["to"] == 0
    profile = ClientProfile.objects.get(user=trader)
    personal = [
        trader.email,
        "Zelda",
        "Quixote",
        "P99887766",
        "Blurred.",  # a reviewer's note may quote the document
        str(profile.phone),
        profile.address_line1,
        profile.date_of_birth.isoformat(),
    ]
    for event in events:
        assert set(event.payload) <= SAFE_KEYS, event.name
        text = json.dumps(event.payload)
        assert not [value for value in personal if value in text], event.name
