"""Demo verification for the embedded default: Alice verified (level 2) with
her source of funds waiting in the review queue for level 3, Bruno and Chen
enhanced (level 3; their source of funds approved by two reviewers, as the
level asks). The payments demo moves their money within these levels' limits.
Everything goes through the services, with specimen images drawn here (no
real document anywhere)."""

from __future__ import annotations

import io
from datetime import timedelta

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.demo import DEMO_DOMAIN
from accounts.models import User

from . import selectors, services
from .models import BACK, FRONT, PAGE, Requirement, Submission


def specimen(
    title: str, name: str, *, size=(640, 400), colour=(225, 236, 247)
) -> SimpleUploadedFile:
    """A JPEG that looks like a document and says it is a specimen."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle([8, 8, size[0] - 9, size[1] - 9], outline=(40, 70, 120), width=4)
    draw.text((32, 32), title.upper(), fill=(20, 40, 80))
    draw.text((32, 90), f"Name: {name}", fill=(0, 0, 0))
    draw.text((32, 130), "SPECIMEN - DEMO DATA - NOT A REAL DOCUMENT", fill=(160, 0, 0))
    draw.rectangle([size[0] - 200, 60, size[0] - 40, 260], outline=(90, 90, 90), width=2)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return SimpleUploadedFile(
        f"{title.lower().replace(' ', '-')}.jpg", buffer.getvalue(), "image/jpeg"
    )


def _requirement(level: int, kind: str, document_kind: str = "") -> Requirement | None:
    for requirement in Requirement.objects.filter(
        level__number=level, kind=kind, is_active=True, only_for_country_rules=False
    ).select_related("level", "questionnaire"):
        if not document_kind or document_kind in requirement.document_kinds:
            return requirement
    return None


def _submit_document(
    user: User, level: int, document_kind: str, sides: list[str]
) -> Submission | None:
    requirement = _requirement(level, Requirement.DOCUMENT, document_kind)
    if requirement is None:
        return None
    current = selectors.current_submissions(user).get(requirement.pk)
    if current is not None:
        return current
    today = timezone.localdate()
    details = services.DocumentDetails(
        document_kind=document_kind,
        issued_on=today - timedelta(days=20) if requirement.max_age_days else None,
        expires_on=today + timedelta(days=3 * 365) if requirement.expiry_required else None,
        document_number="DEMO123456" if requirement.expiry_required else "",
    )
    name = user.get_full_name()
    files = [(side, specimen(f"{document_kind.replace('_', ' ')} {side}", name)) for side in sides]
    return services.submission_document_create(
        user=user, requirement=requirement, details=details, files=files
    )


def _pass_test(user: User) -> None:
    requirement = _requirement(1, Requirement.QUESTIONNAIRE)
    if requirement is None or requirement.pk in selectors.current_submissions(user):
        return
    answers = {}
    for question in requirement.questionnaire.questions.all():
        if question.kind == "checkbox":
            answers[question.name] = True
        elif question.scores:
            answers[question.name] = max(question.scores, key=lambda k: question.scores[k])
    services.submission_questionnaire_create(user=user, requirement=requirement, answers=answers)


def _approve(reviewer: User, submission: Submission | None) -> None:
    if (
        submission is not None
        and submission.status == Submission.PENDING
        and submission.first_approved_by_id != reviewer.pk
    ):
        services.submission_approve(actor=reviewer, submission=submission, note="Demo data.")


def seed() -> list[str]:
    users = {
        u.email.split("@")[0]: u for u in User.objects.filter(email__endswith=f"@{DEMO_DOMAIN}")
    }
    reviewer = users.get("compliance")
    if reviewer is None or not Requirement.objects.exists():
        return []
    second = users.get("administrator")
    alice, bruno, chen = users.get("alice"), users.get("bruno"), users.get("chen")
    for user, document in ((alice, "passport"), (bruno, "national_id"), (chen, "passport")):
        if user is None:
            continue
        services.kyc_ensure(user)
        sides = [FRONT, BACK] if document == "national_id" else [PAGE]
        _approve(reviewer, _submit_document(user, 1, document, sides))
        _pass_test(user)
        _approve(reviewer, _submit_document(user, 2, "proof_of_address", [PAGE]))
        _approve(reviewer, _submit_document(user, 2, "selfie", [PAGE]))
        funds = _submit_document(user, 3, "source_of_funds", [PAGE])
        if user is not alice and second is not None:
            _approve(reviewer, funds)  # the first of the two approvals level 3 needs
            _approve(second, funds)
    levels = {
        name: selectors.kyc_level_for_user(user).number
        for name, user in (("Alice", alice), ("Bruno", bruno), ("Chen", chen))
        if user is not None
    }
    described = ", ".join(f"{name} level {number}" for name, number in levels.items())
    return [
        "",
        f"Demo verification: {described}; documents waiting in Admin → KYC → Review queue.",
    ]
