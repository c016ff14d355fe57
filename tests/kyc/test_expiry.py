"""Expiry through the beat task: an identity document past its expiry date and
a proof of address older than its maximum age lapse, the client moves back
to the level they still satisfy, the client is told (event and
notification), an approved renewal keeps the level, and the limits follow.

Time moves forward by pinning ``timezone.now`` to a later day while the task
runs, as the beat would run it then.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import TestCase
from django.utils import timezone
from PIL import Image

from accounts.roles import COMPLIANCE
from backoffice.models import Event, Notification
from kyc import selectors, tasks
from kyc.models import ClientKyc, LevelChange, Requirement, Submission
from kyc.services import (
    DocumentDetails,
    submission_approve,
    submission_document_create,
    submission_questionnaire_create,
    submission_reject,
)
from payments.policies import can_withdraw
from tests.factories import StaffFactory, TraderFactory

pytestmark = pytest.mark.django_db

PASSING = {"experience": "over_3", "leverage": "100", "stop_out": "closed", "risk_understood": True}


@pytest.fixture(autouse=True)
def document_root(settings, tmp_path):
    settings.KYC_DOCUMENT_ROOT = tmp_path / "kyc-documents"


@pytest.fixture
def reviewer(db):
    return StaffFactory(roles=[COMPLIANCE])


def photo() -> SimpleUploadedFile:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), "wheat").save(out, "JPEG")
    return SimpleUploadedFile("scan.jpg", out.getvalue(), content_type="image/jpeg")


def requirement(name: str) -> Requirement:
    return Requirement.objects.select_related("level").get(name=name)


def passport(user, expires_in: int):
    return submission_document_create(
        user=user,
        requirement=requirement("Identity document"),
        details=DocumentDetails(
            "passport", expires_on=timezone.localdate() + timedelta(days=expires_in)
        ),
        files=[("page", photo())],
    )


def proof_of_address(user, issued_days_ago: int):
    return submission_document_create(
        user=user,
        requirement=requirement("Proof of address"),
        details=DocumentDetails(
            "proof_of_address", issued_on=timezone.localdate() - timedelta(days=issued_days_ago)
        ),
        files=[("page", photo())],
    )


def selfie(user):
    return submission_document_create(
        user=user,
        requirement=requirement("Selfie with your document"),
        details=DocumentDetails("selfie"),
        files=[("page", photo())],
    )


def verified(reviewer, *, passport_days: int = 900, address_age: int = 10):
    """A client brought to level 2 through the real flow."""
    trader = TraderFactory(kyc_level=False)
    submission_approve(actor=reviewer, submission=passport(trader, passport_days))
    submission_questionnaire_create(
        user=trader, requirement=requirement("Appropriateness test"), answers=PASSING
    )
    submission_approve(actor=reviewer, submission=proof_of_address(trader, address_age))
    submission_approve(actor=reviewer, submission=selfie(trader))
    assert level_of(trader) == 2
    return trader


def level_of(user) -> int:
    return ClientKyc.objects.select_related("level").get(user=user).level.number


def run_beat(days: int) -> int:
    """Run the expiry task as beat would ``days`` from now, with the outbox
    delivering what it publishes (the notifications)."""
    later = timezone.now() + timedelta(days=days)
    with (
        mock.patch.object(timezone, "now", return_value=later),
        TestCase.captureOnCommitCallbacks(execute=True),
    ):
        return tasks.submissions_expire.delay().get()


def midnight_after(day) -> datetime:
    return datetime.combine(
        day + timedelta(days=1), datetime.min.time(), tzinfo=timezone.get_current_timezone()
    )


# --- the beat entry ---------------------------------------------------------------------


def test_beat_runs_the_expiry_task_every_interval():
    entry = django_settings.CELERY_BEAT_SCHEDULE["kyc-expiry"]
    assert entry == {
        "task": "kyc.tasks.submissions_expire",
        "schedule": django_settings.KYC_EXPIRY_INTERVAL,
    }
    assert tasks.submissions_expire.name == "kyc.tasks.submissions_expire"


# --- identity documents -------------------------------------------------------------------


def test_an_expired_passport_takes_a_verified_client_back_to_level_0(reviewer):
    trader = verified(reviewer, passport_days=20)
    approval = Submission.objects.get(user=trader, requirement__name="Identity document")
    assert approval.expires_at == midnight_after(approval.expires_on)
    assert can_withdraw(trader, Decimal("100"), "USD").allowed

    assert run_beat(days=20) == 0  # valid through its last day
    assert level_of(trader) == 2
    assert run_beat(days=21) == 1

    approval.refresh_from_db()
    assert approval.status == Submission.EXPIRED and approval.is_current
    assert level_of(trader) == 0
    change = LevelChange.objects.filter(user=trader).first()  # the newest
    assert (change.from_level, change.to_level, change.reason) == (
        2,
        0,
        "Identity document expired.",
    )
    events = Event.objects.filter(client=trader, name__in=["kyc.expired", "kyc.level_changed"])
    assert [(e.name, e.payload.get("to")) for e in events.order_by("-id")[:2]] == [
        ("kyc.level_changed", 0),
        ("kyc.expired", None),
    ]
    titles = set(Notification.objects.filter(user=trader).values_list("kind", "title"))
    assert ("kyc.expired", "A verification document expired") in titles
    assert ("kyc.level_changed", "Your verification level changed") in titles
    body = Notification.objects.get(user=trader, kind="kyc.expired").body
    assert body == (
        "Identity document has expired. Upload a new one in Verification to keep your limits."
    )

    # The limits follow at once, and the page says what to do.
    refused = can_withdraw(trader, Decimal("100"), "USD")
    assert not refused.allowed and refused.unlock_url == "kyc:verification"
    upcoming = selectors.verification_overview(trader).upcoming[0]
    identity = next(i for i in upcoming.items if i.requirement.name == "Identity document")
    assert (identity.status, identity.can_submit) == (Submission.EXPIRED, True)
    # A second run finds nothing more to do.
    assert run_beat(days=22) == 0
    assert Event.objects.filter(client=trader, name="kyc.expired").count() == 1


def test_an_expired_identity_document_reads_as_expired_before_the_sweep(reviewer):
    trader = verified(reviewer, passport_days=20)
    approval = Submission.objects.get(user=trader, requirement__name="Identity document")
    later = timezone.now() + timedelta(days=22)
    assert selectors.effective_status(approval, now=later) == Submission.EXPIRED
    assert selectors.submission_allowed(approval, now=later) == ""


# --- proofs of address --------------------------------------------------------------------


def test_a_proof_of_address_older_than_its_maximum_age_takes_level_2_back_to_1(reviewer):
    trader = verified(reviewer, address_age=80)  # 90 days allowed: lapses in 10 days
    assert run_beat(days=10) == 0
    assert run_beat(days=11) == 1
    assert level_of(trader) == 1
    address = Submission.objects.get(user=trader, requirement__name="Proof of address")
    assert address.status == Submission.EXPIRED
    # The passport and the selfie still stand.
    statuses = set(
        Submission.objects.filter(user=trader)
        .exclude(pk=address.pk)
        .values_list("status", flat=True)
    )
    assert statuses == {Submission.APPROVED}
    change = LevelChange.objects.filter(user=trader).first()
    assert (change.from_level, change.to_level) == (2, 1)
    assert Notification.objects.filter(user=trader, kind="kyc.expired").count() == 1
    # Level 1's withdrawal limit now applies (5,000 a day, not 25,000).
    refused = can_withdraw(trader, Decimal("6000"), "USD")
    assert not refused.allowed and "level 1 (Basic)" in refused.reason


def test_a_lapsed_item_of_a_level_above_the_clients_changes_no_level(reviewer):
    trader = TraderFactory(kyc_level=False)
    submission_approve(actor=reviewer, submission=proof_of_address(trader, 85))
    assert level_of(trader) == 0
    assert run_beat(days=6) == 1
    assert level_of(trader) == 0
    assert not LevelChange.objects.filter(user=trader).exists()


# --- renewals -----------------------------------------------------------------------------


def test_an_approved_renewal_keeps_the_level(reviewer):
    trader = verified(reviewer, passport_days=20)
    old = Submission.objects.get(user=trader, requirement__name="Identity document")
    renewal = passport(trader, 3000)
    submission_approve(actor=reviewer, submission=renewal)

    assert run_beat(days=21) == 1
    old.refresh_from_db()
    assert (old.status, old.is_current) == (Submission.EXPIRED, False)
    assert level_of(trader) == 2
    assert LevelChange.objects.filter(user=trader).count() == 2  # the climbs to 1 and 2 only
    # Nothing to tell the client: their renewal stands.
    assert not Event.objects.filter(client=trader, name="kyc.expired").exists()
    assert not Notification.objects.filter(user=trader, kind="kyc.expired").exists()


@pytest.mark.parametrize("decision", ["pending", "rejected"])
def test_a_renewal_not_approved_in_time_does_not_keep_the_level(reviewer, decision):
    trader = verified(reviewer, passport_days=20)
    renewal = passport(trader, 3000)
    if decision == "rejected":
        from kyc.models import ReviewReason

        submission_reject(
            actor=reviewer,
            submission=renewal,
            reason=ReviewReason.objects.get(code="name_mismatch"),
        )
    assert level_of(trader) == 2
    assert run_beat(days=21) == 1
    assert level_of(trader) == 0
    assert Event.objects.filter(client=trader, name="kyc.expired").count() == 1
