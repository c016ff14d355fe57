"""The trader's verification pages (/room/verification/): where they stand
(their level, its limits and what is used of them), what the next level
needs and gives, and a page per requirement to upload a document, answer a
questionnaire or start a provider's check.

Requirement ids from a URL go through ``selectors.requirement_get_for_user``
(404 for one that does not apply to this client); every submission goes
through the services, which decide again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from backoffice.money import to_minor

from .. import selectors, services
from ..exceptions import KycError
from ..forms import DocumentForm, QuestionnaireForm, max_upload_text
from ..models import Level, Requirement, Submission
from ..selectors import RequirementStatus

NAV = "verification"
# A failed questionnaire may be taken again this long after the attempt
# (selectors.submission_allowed decides; this is only for saying when).
RETAKE_AFTER = timedelta(hours=24)

# --- what the pages show ------------------------------------------------------------


def _money(amount: Decimal, level: Level) -> str:
    from payments.templatetags.payments import format_amount

    currency = level.limits_currency
    return format_amount(to_minor(amount, currency.exponent, rounding=ROUND_HALF_UP), currency)


@dataclass(frozen=True)
class LimitLine:
    """One limit of a level (per day or per month) and how much of it is used."""

    period: str
    limit: Decimal | None
    used: Decimal | None
    level: Level

    @property
    def unlimited(self) -> bool:
        return self.limit is None

    @property
    def percent(self) -> int:
        if not self.limit or self.used is None:
            return 0
        return min(100, int(self.used * 100 / self.limit))

    @property
    def limit_text(self) -> str:
        return "No limit" if self.limit is None else _money(self.limit, self.level)

    @property
    def used_text(self) -> str:
        return "" if self.used is None else _money(self.used, self.level)

    @property
    def left_text(self) -> str:
        if self.limit is None or self.used is None:
            return ""
        return _money(max(self.limit - self.used, Decimal(0)), self.level)


@dataclass
class LimitGroup:
    title: str
    allowed: bool
    lines: list[LimitLine] = field(default_factory=list)
    # Why the usage cannot be shown (no exchange rate just now).
    problem: str = ""


def limit_group(user, level: Level, *, title: str, allowed: bool, kind: str) -> LimitGroup:
    """The level's daily and monthly limits for deposits or withdrawals, with
    the usage read only when there is a limit to compare it with."""
    from payments.exceptions import LedgerError

    daily = getattr(level, f"{kind}_daily_limit")
    monthly = getattr(level, f"{kind}_monthly_limit")
    group = LimitGroup(title=title, allowed=allowed)
    if not allowed:
        return group
    usage = None
    if daily is not None or monthly is not None:
        usage_for = selectors.deposit_usage if kind == "deposit" else selectors.withdrawal_usage
        try:
            usage = usage_for(user, level.limits_currency_id)
        except LedgerError as exc:
            group.problem = f"What you used cannot be shown just now: {exc}"
    group.lines = [
        LimitLine("Today", daily, usage.day if usage else None, level),
        LimitLine("This month", monthly, usage.month if usage else None, level),
    ]
    return group


def level_gives(level: Level) -> list[str]:
    """What a level allows, in a few short lines for the trader."""

    def limits(daily, monthly) -> str:
        if daily is None and monthly is None:
            return "with no limit"
        parts = []
        if daily is not None:
            parts.append(f"{_money(daily, level)} a day")
        if monthly is not None:
            parts.append(f"{_money(monthly, level)} a month")
        return "up to " + " and ".join(parts)

    lines = [f"Deposits {limits(level.deposit_daily_limit, level.deposit_monthly_limit)}"]
    if level.allows_withdrawals:
        lines.append(
            "Withdrawals " + limits(level.withdrawal_daily_limit, level.withdrawal_monthly_limit)
        )
    else:
        lines.append("No withdrawals")
    lines.append("Live trading accounts" if level.allows_live_accounts else "Demo accounts only")
    if not level.allows_transfers:
        lines.append("No internal transfers")
    return lines


@dataclass
class Item:
    """A requirement on the page: its status and what the trader can do."""

    state: RequirementStatus
    action: str = ""
    url: str = ""
    # The action is a POST (a provider's check), not a link.
    post: bool = False
    valid_until: date | None = None
    renewal_due: bool = False
    retake_at: datetime | None = None

    @property
    def requirement(self) -> Requirement:
        return self.state.requirement

    @property
    def submission(self) -> Submission | None:
        return self.state.submission

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def status_label(self) -> str:
        return self.state.status_label

    @property
    def reason(self) -> str:
        submission = self.submission
        if submission is None or self.status not in (Submission.REJECTED, Submission.RESUBMIT):
            return ""
        return submission.reason.text if submission.reason_id else ""

    @property
    def note(self) -> str:
        submission = self.submission
        if submission is None or self.status not in (Submission.REJECTED, Submission.RESUBMIT):
            return ""
        return submission.reason_note


def _provider_start_url(requirement: Requirement) -> str:
    try:
        return reverse("kyc:provider_start", args=[requirement.pk])
    except NoReverseMatch:  # no provider view installed: nothing to press
        return ""


def _valid_until(submission: Submission | None) -> date | None:
    """The last day an approval holds (it lapses at the start of the next)."""
    if submission is None or submission.expires_at is None:
        return None
    return timezone.localtime(submission.expires_at).date() - timedelta(days=1)


def _action(state: RequirementStatus) -> tuple[str, str, bool]:
    requirement, status = state.requirement, state.status
    if requirement.kind == Requirement.PROVIDER:
        url = _provider_start_url(requirement) if requirement.provider_id else ""
        provider = requirement.provider.name if requirement.provider_id else "the provider"
        label = "Start again" if status != Submission.MISSING else "Start the check"
        return (f"{label} with {provider}" if url else ""), url, True
    url = reverse("kyc:requirement", args=[requirement.pk])
    if status == Submission.APPROVED:
        return "Renew", url, False
    if requirement.kind == Requirement.QUESTIONNAIRE:
        return (
            ("Answer the questions" if status == Submission.MISSING else "Answer again"),
            url,
            False,
        )
    return ("Upload" if status == Submission.MISSING else "Upload again"), url, False


def item_for(state: RequirementStatus) -> Item:
    item = Item(state=state, valid_until=_valid_until(state.submission))
    submission = state.submission
    if state.status == Submission.APPROVED and state.can_submit:
        item.renewal_due = True
    if (
        state.status == Submission.REJECTED
        and state.requirement.kind == Requirement.QUESTIONNAIRE
        and submission is not None
        and submission.decided_at
        and not state.can_submit
    ):
        item.retake_at = submission.decided_at + RETAKE_AFTER
    if state.can_submit:
        item.action, item.url, item.post = _action(state)
    return item


@dataclass
class LevelView:
    level: Level
    items: list[Item]
    gives: list[str]

    @property
    def done(self) -> int:
        return sum(item.status == Submission.APPROVED for item in self.items)


def _country_name(code: str) -> str:
    from django_countries import countries

    return countries.name(code) if code else ""


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
    country = selectors.client_country(user) if data.country_blocked else ""
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
        "country_name": _country_name(country),
        "nav_active": NAV,
    }
    return render(request, "kyc/overview.html", context)


# --- one requirement ----------------------------------------------------------------


def state_for(user, requirement: Requirement) -> RequirementStatus:
    submission = selectors.current_submissions(user).get(requirement.pk)
    if submission is not None:
        submission.requirement = requirement
    blocked = selectors.submission_allowed(submission)
    return RequirementStatus(
        requirement=requirement,
        submission=submission,
        status=selectors.effective_status(submission),
        can_submit=not blocked,
        blocked_reason=blocked,
    )


def _country_blocked(user) -> bool:
    return selectors.country_blocked(selectors.client_country(user))


BLOCKED_COUNTRY = (
    "We cannot verify residents of your country of residence. If you live elsewhere, "
    "update your country in your profile."
)


@login_required
@require_http_methods(["GET", "POST"])
def requirement_page(request: HttpRequest, requirement_id: int) -> HttpResponse:
    requirement = selectors.requirement_get_for_user(
        user=request.user, requirement_id=requirement_id
    )
    item = item_for(state_for(request.user, requirement))
    blocked_country = _country_blocked(request.user)
    context = {
        "requirement": requirement,
        "item": item,
        "blocked_country": blocked_country,
        "blocked_country_text": BLOCKED_COUNTRY,
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
    context["start_url"] = _provider_start_url(requirement) if requirement.provider_id else ""
    return render(request, "kyc/provider.html", context)


def _refuse_blocked(request, form, context, template) -> HttpResponse:
    form.add_error(None, BLOCKED_COUNTRY)
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
