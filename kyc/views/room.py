"""The trader's verification pages (/room/verification/): where they stand
(their level, its limits and what is used of them), what the next level
needs and gives, and a page per requirement to upload a document, answer a
questionnaire or start a provider's check.

Requirement ids from a URL go through ``selectors.requirement_get_for_user``
(404 for one that does not apply to this client); every submission goes
through the services, which decide again.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .. import selectors, services
from ..display import (
    Item,
    LevelView,
    country_name,
    item_for,
    level_gives,
    limit_group,
    provider_start_url,
)
from ..exceptions import KycError
from ..forms import DocumentForm, QuestionnaireForm, max_upload_text
from ..models import Level, Requirement, Submission

NAV = "verification"
# A failed questionnaire may be taken again this long after the attempt
# (selectors.submission_allowed decides; this is only for saying when).
# --- the overview --------------------------------------------------------------------


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    user = request.user
    try:
        data = selectors.verification_overview(user)
    except Level.DoesNotExist:
        data = None
    if data is None or not data.levels:
        return render(request, "kyc/overview.html", {"configured": False, "nav_active": NAV})
    level = data.level
    upcoming = [
        LevelView(
            level=progress.level,
            items=[item_for(state) for state in progress.items],
            gives=level_gives(progress.level),
        )
        for progress in data.upcoming
    ]
    held = [item_for(state) for state in data.held]
    country = selectors.client_country(user=user) if data.country_blocked else ""
    context = {
        "configured": True,
        "overview": data,
        "level": level,
        "gives": level_gives(level),
        "deposits": limit_group(user, level, title="Deposits", allowed=True, kind="deposit"),
        "withdrawals": limit_group(
            user, level, title="Withdrawals", allowed=level.allows_withdrawals, kind="withdrawal"
        ),
        "next": upcoming[0] if upcoming else None,
        "later": upcoming[1:],
        "held": held,
        "renewals": [
            item
            for item in held
            if item.renewal_due or item.status in (Submission.EXPIRED, Submission.RESUBMIT)
        ],
        "country_blocked": data.country_blocked,
        "country_name": country_name(country),
        "nav_active": NAV,
    }
    return render(request, "kyc/overview.html", context)


# --- one requirement ----------------------------------------------------------------


def _country_blocked(user) -> bool:
    return selectors.country_blocked(selectors.client_country(user=user))


@login_required
@require_http_methods(["GET", "POST"])
def requirement_page(request: HttpRequest, requirement_id: int) -> HttpResponse:
    requirement = selectors.requirement_get_for_user(
        user=request.user, requirement_id=requirement_id
    )
    item = item_for(selectors.requirement_status(user=request.user, requirement=requirement))
    blocked_country = _country_blocked(request.user)
    context = {
        "requirement": requirement,
        "item": item,
        "blocked_country": blocked_country,
        "blocked_country_text": services.COUNTRY_BLOCKED,
        "nav_active": NAV,
    }
    if request.method == "POST" and not item.state.can_submit:
        # Pending, approved, rejected for good: say why, change nothing (the
        # services refuse it too, under their lock).
        context["refusal"] = item.state.blocked_reason
        template = {
            Requirement.DOCUMENT: "kyc/document.html",
            Requirement.QUESTIONNAIRE: "kyc/questionnaire.html",
        }.get(requirement.kind, "kyc/provider.html")
        return render(request, template, context, status=400)
    if requirement.kind == Requirement.DOCUMENT:
        return _document_page(request, requirement, item, context)
    if requirement.kind == Requirement.QUESTIONNAIRE:
        return _questionnaire_page(request, requirement, item, context)
    if request.method == "POST":  # a provider's check starts at kyc:provider_start
        return HttpResponseNotAllowed(["GET"])
    context["start_url"] = provider_start_url(requirement) if requirement.provider_id else ""
    return render(request, "kyc/provider.html", context)


def _refuse_blocked(request, form, context, template) -> HttpResponse:
    form.add_error(None, services.COUNTRY_BLOCKED)
    return render(request, template, {**context, "form": form}, status=400)


def _document_page(request, requirement: Requirement, item: Item, context: dict) -> HttpResponse:
    template = "kyc/document.html"
    context["max_upload"] = max_upload_text()
    if request.method != "POST":
        form = DocumentForm(requirement=requirement)
        return render(request, template, {**context, "form": form})
    form = DocumentForm(request.POST, request.FILES, requirement=requirement)
    if context["blocked_country"]:
        return _refuse_blocked(request, form, context, template)
    if not form.is_valid():
        return render(request, template, {**context, "form": form}, status=400)
    try:
        services.submission_document_create(
            user=request.user,
            requirement=requirement,
            details=form.details(),
            files=form.files_for_service(),
        )
    except KycError as exc:
        form.add_service_error(exc)
        return render(request, template, {**context, "form": form}, status=400)
    messages.success(
        request,
        f"Thank you: your {requirement.name.lower()} is uploaded. We will review it and "
        "let you know.",
    )
    return redirect("kyc:verification")


def _questionnaire_page(
    request, requirement: Requirement, item: Item, context: dict
) -> HttpResponse:
    template = "kyc/questionnaire.html"
    questionnaire = requirement.questionnaire
    if questionnaire is None or not questionnaire.is_active:
        context["unavailable"] = True
        return render(request, template, context)
    questions = list(questionnaire.questions.order_by("order", "id"))
    context["questionnaire"] = questionnaire
    if request.method != "POST":
        form = QuestionnaireForm(questions=questions)
        return render(request, template, {**context, "form": form})
    form = QuestionnaireForm(request.POST, questions=questions)
    if context["blocked_country"]:
        return _refuse_blocked(request, form, context, template)
    if not form.is_valid():
        return render(request, template, {**context, "form": form}, status=400)
    try:
        submission = services.submission_questionnaire_create(
            user=request.user, requirement=requirement, answers=form.cleaned_data
        )
    except KycError as exc:
        form.add_error(None, str(exc))
        return render(request, template, {**context, "form": form}, status=400)
    if submission.status == Submission.APPROVED:
        messages.success(request, f"You passed the {questionnaire.name.lower()}.")
    elif submission.status == Submission.REJECTED:
        messages.warning(
            request,
            f"You did not pass the {questionnaire.name.lower()}. You can take it again "
            "in 24 hours.",
        )
    else:
        messages.success(request, "Thank you: your answers are sent. We will review them.")
    return redirect("kyc:requirement", requirement_id=requirement.pk)
