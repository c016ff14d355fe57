"""Races on PostgreSQL, with threads (each on its own connection): two
reviewers deciding the same submission at once make one decision; a client
submitting the same item twice at once gets one current submission (and one
set of stored files); two expiry sweeps at once expire once.

Every KYC write locks the client's ``ClientKyc`` row first, then the
submission (kyc.services), so these serialize instead of deadlocking.
"""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from PIL import Image

from accounts.roles import COMPLIANCE
from backoffice.models import Event
from kyc.exceptions import KycError
from kyc.models import (
    ClientKyc,
    Document,
    LevelChange,
    Requirement,
    Review,
    ReviewReason,
    Submission,
)
from kyc.services import (
    DocumentDetails,
    submission_approve,
    submission_document_create,
    submission_questionnaire_create,
    submission_reject,
    submissions_expire,
)
from tests.conftest import require_or_skip
from tests.factories import StaffFactory, TraderFactory, set_kyc_level
from tests.payments.test_withdrawals import run_in_threads

pytestmark = pytest.mark.django_db(transaction=True)

PASSING = {"experience": "over_3", "leverage": "100", "stop_out": "closed", "risk_understood": True}
ROUNDS = 4


@pytest.fixture(autouse=True)
def _postgresql(settings, tmp_path):
    require_or_skip(connection.vendor == "postgresql", "row locks need PostgreSQL")
    settings.KYC_DOCUMENT_ROOT = tmp_path / "kyc-documents"


def photo() -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), "honeydew").save(out, "JPEG")
    return SimpleUploadedFile("scan.jpg", out.getvalue(), content_type="image/jpeg")


def requirement(name: str) -> Requirement:
    return Requirement.objects.select_related("level", "questionnaire").get(name=name)


def passport(user, expires_in: int = 900) -> Submission:
    return submission_document_create(
        user=user,
        requirement=requirement("Identity document"),
        details=DocumentDetails(
            "passport", expires_on=timezone.localdate() + timedelta(days=expires_in)
        ),
        files=[("page", photo())],
    )


def split(results: list[object]) -> tuple[list[object], list[BaseException]]:
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    return won, lost


def level_of(user) -> int:
    return ClientKyc.objects.select_related("level").get(user=user).level.number


def test_two_reviewers_approving_at_once_make_one_decision():
    reviewers = [StaffFactory(roles=[COMPLIANCE]) for _ in range(2)]
    for _round in range(ROUNDS):
        trader = TraderFactory(kyc_level=False)
        submission_questionnaire_create(
            user=trader, requirement=requirement("Appropriateness test"), answers=PASSING
        )
        submission = passport(trader)
        won, lost = split(
            run_in_threads(
                *[
                    (lambda r=r, s=submission: submission_approve(actor=r, submission=s))
                    for r in reviewers
                ]
            )
        )
        assert len(won) == 1 and len(lost) == 1, (won, lost)
        assert isinstance(lost[0], KycError) and "already approved" in str(lost[0])
        assert Review.objects.filter(submission=submission).count() == 1
        approved = Event.objects.filter(name="kyc.approved", payload__submission=submission.pk)
        assert approved.count() == 1
        assert level_of(trader) == 1
        assert LevelChange.objects.filter(user=trader).count() == 1


def test_approve_and_reject_at_once_have_exactly_one_outcome():
    approver, rejecter = StaffFactory(roles=[COMPLIANCE]), StaffFactory(roles=[COMPLIANCE])
    forgery = ReviewReason.objects.get(code="suspected_forgery")
    outcomes = set()
    for _round in range(ROUNDS):
        trader = TraderFactory(kyc_level=False)
        submission = passport(trader)
        approve, reject = run_in_threads(
            lambda s=submission: submission_approve(actor=approver, submission=s),
            lambda s=submission: submission_reject(actor=rejecter, submission=s, reason=forgery),
        )
        won, lost = split([approve, reject])
        assert len(won) == 1 and isinstance(lost[0], KycError), (approve, reject)
        final = Submission.objects.get(pk=submission.pk)
        assert final.status == (
            Submission.REJECTED if isinstance(approve, BaseException) else Submission.APPROVED
        )
        assert Review.objects.filter(submission=submission).count() == 1
        outcomes.add(final.status)
    assert outcomes <= {Submission.APPROVED, Submission.REJECTED}


def test_one_reviewer_clicking_twice_on_a_four_eyes_item_gives_one_first_approval():
    reviewer = StaffFactory(roles=[COMPLIANCE])
    for _round in range(ROUNDS):
        trader = TraderFactory(kyc_level=False)
        set_kyc_level(trader, 2)
        funds = submission_document_create(
            user=trader,
            requirement=requirement("Source of funds"),
            details=DocumentDetails(
                "source_of_funds", issued_on=timezone.localdate() - timedelta(days=3)
            ),
            files=[("page", photo())],
        )
        won, lost = split(
            run_in_threads(
                lambda s=funds: submission_approve(actor=reviewer, submission=s),
                lambda s=funds: submission_approve(actor=reviewer, submission=s),
            )
        )
        assert len(won) == 1 and "second reviewer must approve" in str(lost[0]), (won, lost)
        final = Submission.objects.get(pk=funds.pk)
        assert final.status == Submission.PENDING and final.first_approved_by == reviewer
        assert level_of(trader) == 2


def test_the_same_item_submitted_twice_at_once_makes_one_current_submission():
    for _round in range(ROUNDS):
        trader = TraderFactory(kyc_level=False)  # no KYC row yet: both create it
        results = run_in_threads(lambda t=trader: passport(t), lambda t=trader: passport(t))
        won, lost = split(results)
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], KycError) and "It is being reviewed" in str(lost[0])
        assert Submission.objects.filter(user=trader).count() == 1
        assert Submission.objects.filter(user=trader, is_current=True).count() == 1
        assert ClientKyc.objects.filter(user=trader).count() == 1
        assert Document.objects.filter(user=trader).count() == 1
        assert Event.objects.filter(client=trader, name="kyc.submitted").count() == 1


def test_the_test_answered_twice_at_once_makes_one_current_submission():
    for _round in range(ROUNDS):
        trader = TraderFactory(kyc_level=False)
        take = lambda t=trader: submission_questionnaire_create(  # noqa: E731
            user=t, requirement=requirement("Appropriateness test"), answers=PASSING
        )
        won, lost = split(run_in_threads(take, take))
        assert len(won) == 1 and "It is approved" in str(lost[0]), (won, lost)
        assert Submission.objects.filter(user=trader).count() == 1
        assert level_of(trader) == 0  # the identity document is still missing
        assert LevelChange.objects.filter(user=trader).count() == 0


def test_stored_files_match_the_documents_after_racing_uploads(settings):
    traders = [TraderFactory(kyc_level=False) for _ in range(ROUNDS)]
    for trader in traders:
        run_in_threads(lambda t=trader: passport(t), lambda t=trader: passport(t))
    on_disk = [p for p in settings.KYC_DOCUMENT_ROOT.rglob("*") if p.is_file()]
    # The losing upload stored nothing: one file per client, each a document's.
    assert len(on_disk) == Document.objects.count() == ROUNDS
    names = set(Document.objects.values_list("storage_name", flat=True))
    assert {p.relative_to(settings.KYC_DOCUMENT_ROOT).as_posix() for p in on_disk} == names


def test_two_expiry_sweeps_at_once_expire_once():
    reviewer = StaffFactory(roles=[COMPLIANCE])
    traders = [TraderFactory(kyc_level=False) for _ in range(3)]
    for trader in traders:
        submission_approve(actor=reviewer, submission=passport(trader, expires_in=5))
        submission_questionnaire_create(
            user=trader, requirement=requirement("Appropriateness test"), answers=PASSING
        )
        assert level_of(trader) == 1
    later = timezone.now() + timedelta(days=7)
    counts = run_in_threads(
        lambda: submissions_expire(now=later), lambda: submissions_expire(now=later)
    )
    assert not [c for c in counts if isinstance(c, BaseException)], counts
    assert sum(counts) == 3
    assert Event.objects.filter(name="kyc.expired").count() == 3
    for trader in traders:
        assert level_of(trader) == 0
        assert LevelChange.objects.filter(user=trader, to_level=0).count() == 1


# --- limits: two requests at once do not both pass a daily limit --------------------------


def test_two_deposits_at_once_do_not_both_pass_the_daily_limit():
    from payments.services.deposits import DepositError, deposit_create
    from tests.kyc.test_policies import wallet, wire

    for _ in range(ROUNDS):
        trader = TraderFactory(kyc_level=1)  # 10,000 USD a day
        usd = wallet(trader)
        method = wire()

        def deposit_6000(trader=trader, usd=usd, method=method):
            return deposit_create(user=trader, wallet=usd, method=method, amount=Decimal("6000"))

        results = run_in_threads(deposit_6000, deposit_6000)
        refused = [r for r in results if isinstance(r, DepositError)]
        assert len(refused) == 1, results
        assert "is left this day" in str(refused[0])


def test_two_withdrawals_at_once_do_not_both_pass_the_daily_limit():
    import uuid

    from payments.services.withdrawals import WithdrawalError, withdrawal_request
    from tests.kyc.test_policies import BANK, wallet, wire

    for _ in range(ROUNDS):
        trader = TraderFactory(kyc_level=1)  # 5,000 USD a day
        usd = wallet(trader, fund="10000")
        method = wire()

        def withdraw_3000(trader=trader, usd=usd, method=method):
            return withdrawal_request(
                user=trader,
                wallet=usd,
                method=method,
                amount=Decimal("3000"),
                destination=BANK,
                otp_code=None,
                idempotency_key=str(uuid.uuid4()),
            )

        results = run_in_threads(withdraw_3000, withdraw_3000)
        refused = [r for r in results if isinstance(r, WithdrawalError)]
        assert len(refused) == 1, results
        assert "is left this day" in str(refused[0])
