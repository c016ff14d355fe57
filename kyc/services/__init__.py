"""Every write of the KYC app: submissions, reviews, levels, expiry.

A client's level moves up only when an approval completes the next level's
requirements (as configured then), and down only when an approval expires or
staff set it; a configuration change never moves anyone by itself. Each
change is one transaction that locks the client's ``ClientKyc`` row first,
then the submission, and publishes its ``kyc.*`` events in the same
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from backoffice.events import publish

from .. import selectors
from ..exceptions import KycError
from ..models import (
    BACK,
    FRONT,
    PAGE,
    TWO_SIDED_KINDS,
    ClientKyc,
    KycProvider,
    Level,
    LevelChange,
    Requirement,
    Review,
    ReviewReason,
    Submission,
)

COUNTRY_BLOCKED = (
    "We cannot verify residents of your country of residence. If you live elsewhere, "
    "update your country in your profile."
)

# Pages a one-sided document may have (a bank statement over several pages).
MAX_PAGES = 3

# --- the client's state ---------------------------------------------------------------


def _risk_for(rule) -> str:
    return ClientKyc.HIGH if rule is not None and rule.high_risk else ClientKyc.STANDARD


def kyc_ensure(user) -> ClientKyc:
    """The client's KYC row, created at the lowest level (and raised at once
    through any levels that ask for nothing)."""
    kyc = ClientKyc.objects.filter(user=user).first()
    if kyc is not None:
        return kyc
    with transaction.atomic():
        country = selectors.client_country(user=user)
        rule = selectors.country_rule_for(country)
        kyc, created = ClientKyc.objects.get_or_create(
            user=user,
            defaults={
                "level": selectors.level_lowest(),
                "country": country,
                "risk": _risk_for(rule),
            },
        )
        if created:
            _climb(kyc, actor=None, reason="Nothing more is needed for this level.")
    return kyc


def _lock(user) -> ClientKyc:
    """The client's row, locked. Alone, without a join: PostgreSQL re-checks a
    locked row's joins after waiting, and a level changed meanwhile would make
    the row vanish from the result (DoesNotExist in the second of two racing
    reviewers); and a joined Level row would be locked too, making every
    client at that level wait on one row."""
    kyc_ensure(user)
    return ClientKyc.objects.select_for_update().get(user=user)


def kyc_country_refresh(*, user) -> ClientKyc:
    """Re-read the client's country after a profile change: risk and country
    follow; the level does not move (requirements newly due show on the
    verification page)."""
    with transaction.atomic():
        kyc = _lock(user)
        country = selectors.client_country(user=user)
        risk = _risk_for(selectors.country_rule_for(country))
        if (kyc.country or "") != country or kyc.risk != risk:
            kyc.country = country
            kyc.risk = risk
            kyc.save(update_fields=["country", "risk", "updated_at"])
    return kyc


def _set_level(kyc: ClientKyc, level: Level, *, actor, reason: str) -> None:
    previous = kyc.level
    if previous.pk == level.pk:
        return
    now = timezone.now()
    kyc.level = level
    kyc.level_changed_at = now
    kyc.save(update_fields=["level", "level_changed_at", "updated_at"])
    LevelChange.objects.create(
        user_id=kyc.user_id,
        from_level=previous.number,
        to_level=level.number,
        reason=reason[:200],
        actor=actor,
        created_at=now,
    )
    publish(
        "kyc.level_changed",
        kyc.user,
        {
            "from": previous.number,
            "to": level.number,
            "level": level.name,
            "reason": reason[:200],
        },
        actor=actor,
    )


def _climb(kyc: ClientKyc, *, actor, reason: str) -> None:
    """Raise the client through every next level whose requirements (that
    apply to them now) are all approved and in date."""
    now = timezone.now()
    rule = selectors.country_rule_for(kyc.country or selectors.client_country(user=kyc.user))
    submissions = selectors.current_submissions(kyc.user)
    reached = kyc.level
    for level in Level.objects.filter(is_active=True, number__gt=reached.number).order_by("number"):
        requirements = selectors.requirements_for(level=level, rule=rule)
        if all(selectors.satisfied(submissions.get(r.pk), now=now) for r in requirements):
            reached = level
        else:
            break
    if reached.pk != kyc.level_id:
        _set_level(kyc, reached, actor=actor, reason=reason)


def kyc_level_set(*, actor, user, level: Level, reason: str) -> ClientKyc:
    """Staff set a client's level by hand (with the reason, in the history)."""
    if not reason.strip():
        raise KycError("Say why the level is changed.")
    if actor is None or not actor.has_perm("kyc.change_clientkyc"):
        raise KycError("You may not change clients' KYC levels.")
    with transaction.atomic():
        kyc = _lock(user)
        _set_level(kyc, level, actor=actor, reason=reason.strip())
    return kyc


# --- submissions -----------------------------------------------------------------------


def _open_submission(kyc: ClientKyc, requirement: Requirement) -> Submission | None:
    """Check the client may submit for ``requirement`` now; return the
    current submission it replaces (or None)."""
    current = (
        Submission.objects.select_for_update()
        .filter(user_id=kyc.user_id, requirement=requirement, is_current=True)
        .first()
    )
    if current is not None:
        current.requirement = requirement
    refusal = selectors.submission_allowed(current)
    if refusal:
        raise KycError(refusal)
    return current


def _supersede(current: Submission | None) -> None:
    if current is not None:
        current.is_current = False
        current.save(update_fields=["is_current"])


def _submitted(submission: Submission) -> None:
    publish(
        "kyc.submitted",
        submission.user,
        {
            "submission": submission.pk,
            "requirement": submission.requirement_id,
            "name": submission.requirement.name,
            "level": submission.requirement.level.number,
            "kind": submission.requirement.kind,
        },
    )


def _requirement_check(user, requirement: Requirement, kind: str) -> None:
    if requirement.kind != kind:
        raise KycError("This item is not asked that way.")
    if not requirement.is_active or not requirement.level.is_active:
        raise KycError("This item is not asked any more.")
    if selectors.country_blocked(selectors.client_country(user=user)):
        raise KycError(COUNTRY_BLOCKED)
    selectors.requirement_get_for_user(user=user, requirement_id=requirement.pk)


@dataclass(frozen=True)
class DocumentDetails:
    document_kind: str
    issued_on: date | None = None
    expires_on: date | None = None
    document_number: str = ""


def _document_details_check(requirement: Requirement, details: DocumentDetails) -> None:
    today = timezone.localdate()
    if details.document_kind not in (requirement.document_kinds or []):
        raise KycError("Choose one of the document kinds asked for.")
    if requirement.expiry_required:
        if details.expires_on is None:
            raise KycError("Enter the date the document expires.")
        if details.expires_on <= today:
            raise KycError("This document has expired: upload one that is still valid.")
    if details.issued_on is not None and details.issued_on > today:
        raise KycError("The issue date cannot be in the future.")
    if requirement.max_age_days:
        if details.issued_on is None:
            raise KycError("Enter the date the document was issued.")
        if (today - details.issued_on).days > requirement.max_age_days:
            raise KycError(
                f"The document must be issued within the last {requirement.max_age_days} days."
            )


def expected_sides(requirement: Requirement, document_kind: str) -> list[str]:
    """The sides a document of this kind is asked in."""
    if document_kind in TWO_SIDED_KINDS and requirement.back_side_required:
        return [FRONT, BACK]
    if document_kind in TWO_SIDED_KINDS:
        return [FRONT]
    return [PAGE]


def submission_document_create(
    *, user, requirement: Requirement, details: DocumentDetails, files: list[tuple[str, Any]]
) -> Submission:
    """A client uploads a document for ``requirement``: ``files`` is a list of
    (side, uploaded file). Every file is checked by content before anything
    is stored; a refused file stores nothing."""
    from ..documents import check_upload, documents_discard, documents_store

    _requirement_check(user, requirement, Requirement.DOCUMENT)
    _document_details_check(requirement, details)
    sides = expected_sides(requirement, details.document_kind)
    given = [side for side, _ in files]
    if sides == [PAGE]:
        if not given or any(side != PAGE for side in given):
            raise KycError("Upload the document.")
        if len(given) > MAX_PAGES:
            raise KycError(f"Upload at most {MAX_PAGES} pages.")
    elif sorted(given) != sorted(sides):
        raise KycError("Upload both sides of the card." if BACK in sides else "Upload the front.")
    checked = []
    for side, upload in files:
        try:
            checked.append((side, check_upload(upload)))
        except KycError as exc:
            exc.side = side  # which file was refused, for the form that shows it
            raise
    stored = []
    try:
        with transaction.atomic():
            kyc = _lock(user)
            current = _open_submission(kyc, requirement)
            _supersede(current)
            submission = Submission.objects.create(
                user=user,
                requirement=requirement,
                document_kind=details.document_kind,
                document_number=details.document_number.strip()[:50],
                issued_on=details.issued_on,
                expires_on=details.expires_on,
            )
            stored = documents_store(submission, user, checked)
            _submitted(submission)
    except BaseException:
        # The rows were rolled back: their files must go too.
        documents_discard(stored)
        raise
    return submission


def _score(question, value) -> int:
    scores = question.scores or {}
    if value is None or value == "":
        return 0
    if isinstance(value, bool):
        return int(scores.get("true" if value else "false", 0))
    if isinstance(value, list | tuple):
        return sum(int(scores.get(str(v), 0)) for v in value)
    return int(scores.get(str(value), 0))


def submission_questionnaire_create(*, user, requirement: Requirement, answers: dict) -> Submission:
    """A client answers a questionnaire (``answers``: a form's cleaned data by
    question name). Scored: below the pass mark it is refused at once; at or
    above it, approved at once when the questionnaire says so."""
    from accounts.dynamic_fields import answer_to_json

    _requirement_check(user, requirement, Requirement.QUESTIONNAIRE)
    questionnaire = requirement.questionnaire
    if questionnaire is None or not questionnaire.is_active:
        raise KycError("This questionnaire is not available.")
    questions = list(questionnaire.questions.all())
    recorded, score = [], 0
    for question in questions:
        value = answers.get(question.name)
        if question.required and value in (None, "", [], False) and question.kind != "checkbox":
            raise KycError(f"Answer: {question.label}")
        if question.required and question.kind == "checkbox" and not value:
            raise KycError(f"Confirm: {question.label}")
        points = _score(question, value)
        score += points
        recorded.append(
            {
                "name": question.name,
                "label": question.label,
                "answer": answer_to_json(question, value),
                "points": points,
            }
        )
    scored = questionnaire.pass_mark is not None
    with transaction.atomic():
        kyc = _lock(user)
        current = _open_submission(kyc, requirement)
        _supersede(current)
        submission = Submission.objects.create(
            user=user, requirement=requirement, answers=recorded, score=score if scored else None
        )
        _submitted(submission)
        if scored and score < questionnaire.pass_mark:
            reason = ReviewReason.objects.filter(code="failed_test").first()
            _decide(
                kyc,
                submission,
                Submission.REJECTED,
                reviewer=None,
                decision=Review.REJECT,
                reason=reason,
                note=f"Score {score}, pass mark {questionnaire.pass_mark}.",
            )
        elif scored and questionnaire.approve_on_pass:
            _decide(
                kyc,
                submission,
                Submission.APPROVED,
                reviewer=None,
                decision=Review.APPROVE,
                note=f"Passed with score {score} (pass mark {questionnaire.pass_mark}).",
            )
    return submission


# --- decisions ----------------------------------------------------------------------------


def _expiry_of(submission: Submission) -> datetime | None:
    """When an approval lapses: the document's expiry date, or its issue date
    plus the requirement's maximum age, whichever comes first."""
    requirement = submission.requirement
    ends: list[date] = []
    if submission.expires_on:
        ends.append(submission.expires_on)
    if requirement.max_age_days and submission.issued_on:
        ends.append(submission.issued_on + timedelta(days=requirement.max_age_days))
    if not ends:
        return None
    tz = timezone.get_current_timezone()
    return datetime.combine(min(ends) + timedelta(days=1), time.min, tzinfo=tz)


_EVENTS = {
    Submission.APPROVED: "kyc.approved",
    Submission.REJECTED: "kyc.rejected",
    Submission.RESUBMIT: "kyc.resubmission_requested",
}


def _decide(
    kyc: ClientKyc,
    submission: Submission,
    status: str,
    *,
    reviewer,
    decision: str,
    reason: ReviewReason | None = None,
    note: str = "",
) -> None:
    now = timezone.now()
    Review.objects.create(
        submission=submission,
        reviewer=reviewer,
        decision=decision,
        reason=reason,
        note=note,
        created_at=now,
    )
    submission.status = status
    submission.decided_at = now
    submission.reason = reason
    submission.reason_note = note if status != Submission.APPROVED else ""
    submission.expires_at = _expiry_of(submission) if status == Submission.APPROVED else None
    submission.save(update_fields=["status", "decided_at", "reason", "reason_note", "expires_at"])
    publish(
        _EVENTS[status],
        kyc.user,
        {
            "submission": submission.pk,
            "requirement": submission.requirement_id,
            "name": submission.requirement.name,
            "level": submission.requirement.level.number,
            "reason": reason.code if reason else "",
        },
        actor=reviewer,
    )
    if status == Submission.APPROVED:
        _climb(kyc, actor=reviewer, reason=f"{submission.requirement.name} approved.")


def _lock_pending(submission: Submission) -> tuple[ClientKyc, Submission]:
    kyc = _lock(submission.user)
    locked = (
        Submission.objects.select_for_update(of=("self",))
        .select_related("requirement__level", "user")
        .get(pk=submission.pk)
    )
    if locked.status != Submission.PENDING:
        raise KycError(f"This item is already {locked.get_status_display()}.")
    return kyc, locked


def _reviewer_check(actor, submission: Submission) -> None:
    if actor is None or not actor.has_perm("kyc.review_submission"):
        raise KycError("You may not review KYC submissions.")
    if actor.pk == submission.user_id:
        raise KycError("You cannot review your own verification.")


@transaction.atomic
def submission_approve(*, actor, submission: Submission, note: str = "") -> Submission:
    """Approve a pending submission. When its level asks for a second review,
    the first approval is recorded and the submission waits for another
    reviewer; the second approval completes it."""
    _reviewer_check(actor, submission)
    kyc, submission = _lock_pending(submission)
    if submission.requirement.level.four_eyes and submission.first_approved_by_id is None:
        submission.first_approved_by = actor
        submission.save(update_fields=["first_approved_by"])
        Review.objects.create(
            submission=submission, reviewer=actor, decision=Review.APPROVE, note=note
        )
        return submission
    if submission.first_approved_by_id == actor.pk:
        raise KycError("A second reviewer must approve: you gave the first approval.")
    decision = Review.SECOND_APPROVE if submission.first_approved_by_id else Review.APPROVE
    _decide(kyc, submission, Submission.APPROVED, reviewer=actor, decision=decision, note=note)
    return submission


def _reason_check(reason: ReviewReason | None, use: str, note: str) -> None:
    if reason is None:
        raise KycError("Choose a reason.")
    if not reason.is_active or reason.use not in (use, ReviewReason.BOTH):
        raise KycError("This reason cannot be used here.")
    if reason.code == "other" and not note.strip():
        raise KycError("Explain the reason in the note.")


@transaction.atomic
def submission_reject(
    *, actor, submission: Submission, reason: ReviewReason | None, note: str = ""
) -> Submission:
    """Reject a pending submission for good (the client sees the reason)."""
    _reviewer_check(actor, submission)
    _reason_check(reason, ReviewReason.REJECT, note)
    kyc, submission = _lock_pending(submission)
    _decide(
        kyc,
        submission,
        Submission.REJECTED,
        reviewer=actor,
        decision=Review.REJECT,
        reason=reason,
        note=note.strip(),
    )
    return submission


@transaction.atomic
def submission_request_resubmission(
    *, actor, submission: Submission, reason: ReviewReason | None, note: str = ""
) -> Submission:
    """Ask the client to submit this item again (the reason says what to fix)."""
    _reviewer_check(actor, submission)
    _reason_check(reason, ReviewReason.RESUBMIT, note)
    kyc, submission = _lock_pending(submission)
    _decide(
        kyc,
        submission,
        Submission.RESUBMIT,
        reviewer=actor,
        decision=Review.RESUBMIT,
        reason=reason,
        note=note.strip(),
    )
    return submission


PROVIDER_OUTCOMES = {
    "approved": Submission.APPROVED,
    "rejected": Submission.REJECTED,
    "resubmit": Submission.RESUBMIT,
}
FINAL = (Submission.APPROVED, Submission.REJECTED)


@transaction.atomic
def submission_provider_outcome(
    *,
    user,
    requirement: Requirement,
    provider: KycProvider,
    reference: str,
    outcome: str,
    provider_status: str = "",
    note: str = "",
) -> Submission:
    """Record what an outside provider says about a client's check.

    ``outcome`` is pending, approved, rejected or resubmit. The current
    submission for the requirement is reused while it belongs to the same
    provider reference and is not final; a pending after a final decision
    (an out-of-order webhook) changes nothing, and the same outcome twice is
    applied once. A new check after a resubmission request opens a new
    submission.
    """
    if outcome != "pending" and outcome not in PROVIDER_OUTCOMES:
        raise KycError(f"Unknown provider outcome {outcome!r}.")
    if requirement.kind != Requirement.PROVIDER:
        raise KycError("This requirement is not a provider check.")
    kyc = _lock(user)
    current = (
        Submission.objects.select_for_update(of=("self",))
        .select_related("requirement__level")
        .filter(user=user, requirement=requirement, is_current=True)
        .first()
    )
    reusable = (
        current is not None
        and current.provider_reference == reference
        and current.status in (Submission.PENDING, *FINAL)
    )
    if reusable:
        submission = current
        if submission.status in FINAL:
            # A final answer stands; a later different final answer (the
            # provider re-reviewed) is applied as a new submission below.
            if outcome == "pending" or PROVIDER_OUTCOMES.get(outcome) == submission.status:
                return submission
            reusable = False
    if not reusable:
        _supersede(current)
        submission = Submission.objects.create(
            user=user,
            requirement=requirement,
            provider=provider,
            provider_reference=reference,
            provider_status=provider_status[:100],
        )
        _submitted(submission)
    if provider_status and submission.provider_status != provider_status[:100]:
        submission.provider_status = provider_status[:100]
        submission.save(update_fields=["provider_status"])
    if outcome == "pending":
        return submission
    status = PROVIDER_OUTCOMES[outcome]
    reason = None
    if status != Submission.APPROVED:
        reason = ReviewReason.objects.filter(code="other").first()
    _decide(
        kyc,
        submission,
        status,
        reviewer=None,
        decision=Review.PROVIDER,
        reason=reason,
        note=note[:2000],
    )
    return submission


# --- expiry ----------------------------------------------------------------------------


def submission_expire(*, submission_id: int, now: datetime | None = None) -> bool:
    """Mark one approval past its date as expired and move the client back
    to the highest level they still satisfy. Returns whether it expired."""
    now = now or timezone.now()
    with transaction.atomic():
        submission = Submission.objects.select_related("requirement__level", "user").get(
            pk=submission_id
        )
        kyc = _lock(submission.user)
        submission = (
            Submission.objects.select_for_update(of=("self",))
            .select_related("requirement__level", "user")
            .get(pk=submission_id)
        )
        if (
            submission.status != Submission.APPROVED
            or submission.expires_at is None
            or submission.expires_at > now
        ):
            return False
        submission.status = Submission.EXPIRED
        submission.save(update_fields=["status"])
        requirement = submission.requirement
        # A renewal already approved keeps the level; a pending one does not.
        current = selectors.current_submissions(kyc.user).get(requirement.pk)
        renewed = selectors.satisfied(current, now=now)
        if not renewed:
            # (When renewed, the lapse of the old copy changes nothing for the
            # client: no event, so no "upload a new one" notification.)
            publish(
                "kyc.expired",
                kyc.user,
                {
                    "submission": submission.pk,
                    "requirement": requirement.pk,
                    "name": requirement.name,
                    "level": requirement.level.number,
                },
            )
        if not renewed and kyc.level.number >= requirement.level.number:
            below = (
                Level.objects.filter(number__lt=requirement.level.number, is_active=True)
                .order_by("-number")
                .first()
            ) or selectors.level_lowest()
            _set_level(kyc, below, actor=None, reason=f"{requirement.name} expired.")
            _climb(kyc, actor=None, reason="Requirements still met.")
    return True


def submissions_expire(*, now: datetime | None = None) -> int:
    """Expire every approval past its date (the beat runs this)."""
    now = now or timezone.now()
    ids = list(selectors.submissions_due_to_expire(now).values_list("pk", flat=True)[:10000])
    return sum(submission_expire(submission_id=pk, now=now) for pk in ids)
