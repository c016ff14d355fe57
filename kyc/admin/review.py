"""What compliance sees: the review queue, the review page of a submission,
and the history of decisions.

- **The queue** (``/admin/kyc/submission/queue/``): pending items oldest
  first, with the client, country, risk, level, item and age (overdue past
  ``KYC_REVIEW_SLA_HOURS``), filters, and keyset paging on the partial index
  ``submission_queue``: no OFFSET and no full COUNT, so the first page costs
  the same with 100 or 100,000 items waiting (docs/PERFORMANCE.md).
- **The review page** (the submission's change page): the documents beside
  the client's data, the submission's details, the client's earlier attempts
  at the same item and every decision so far, and the decisions themselves:
  approve, reject or ask for a resubmission with a reason from the list.
  Each is a few lines calling ``kyc.services``; four eyes (a second,
  different reviewer) is the service's rule, the page only explains it.

Viewing needs ``kyc.view_submission``; deciding ``kyc.review_submission``
(the decision URL refuses anyone else with 403, whatever the page showed).
A sales manager sees only their own clients' items; another's is a 404.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from .. import selectors, services
from ..admin_forms import DecisionForm, QueueFilterForm, after_position, keyset_cursor
from ..exceptions import KycError
from ..models import ClientKyc, Level, Review, ReviewReason, Submission
from .common import age_label, review_sla, scoped

REVIEW_PERMISSION = "kyc.review_submission"
QUEUE_PAGE_SIZE = 50
# The queue says "1,000+" rather than counting every waiting item.
QUEUE_COUNT_CAP = 1000
HISTORY_LIMIT = 20


def pending_queue(staff, filters: dict):
    """The pending items ``staff`` may see, oldest first, filtered."""
    qs = selectors.review_queue(
        country=filters.get("country", ""),
        level=filters.get("level"),
        risk=filters.get("risk", ""),
        requirement_kind=filters.get("kind", ""),
    )
    if filters.get("second") == "yes":
        qs = qs.filter(first_approved_by__isnull=False)
    elif filters.get("second") == "no":
        qs = qs.filter(first_approved_by__isnull=True)
    return scoped(qs, staff)


def queue_page(staff, filters: dict, position, size: int) -> list[Submission]:
    """Up to ``size`` pending items after ``position``, with what the rows show.

    In two steps: the page's ids first, joining only what the filters need
    (on the partial index ``submission_queue`` the database stops after
    ``size`` rows), then those rows with their client, profile, KYC row,
    requirement and levels. Joining all of that before the limit made the
    database join every match of a broad filter (20,000 rows for "level 3")
    before sorting (docs/PERFORMANCE.md)."""
    ids = list(
        pending_queue(staff, filters)
        .filter(after_position(position))
        .values_list("pk", flat=True)[:size]
    )
    rows = Submission.objects.filter(pk__in=ids).select_related(
        "user__profile", "user__kyc__level", "requirement__level", "first_approved_by"
    )
    by_id = {submission.pk: submission for submission in rows}
    return [by_id[pk] for pk in ids if pk in by_id]


def _queue_filters(querystring: str) -> dict:
    """The filters a review page was opened with (from the queue's link)."""
    form = QueueFilterForm(QueryDict(querystring or ""), levels=list(Level.objects.all()))
    form.is_valid()
    return form.filters()


def _client_name(user) -> str:
    return f"{user.first_name} {user.last_name}".strip() or user.email


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    """All submissions (a search over the history); the queue and the review
    page are this admin's own views."""

    change_list_template = "admin/kyc/submission/change_list.html"
    list_display = [
        "submitted_at",
        "client",
        "requirement",
        "level",
        "status",
        "decided_at",
        "is_current",
    ]
    list_filter = ["status", "requirement__kind", "requirement__level", "is_current"]
    list_select_related = ["user", "requirement__level"]
    search_fields = ["user__email", "user__last_name", "=document_number", "provider_reference"]
    search_help_text = "Client's e-mail or last name, exact document number, provider reference"
    ordering = ["-submitted_at", "-id"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False  # clients submit in the room

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # decisions go through the review page's buttons

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # the history stays

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user)

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: Submission) -> str:
        return obj.user.email

    @admin.display(description="level", ordering="requirement__level__number")
    def level(self, obj: Submission) -> int:
        return obj.requirement.level.number

    def get_urls(self):
        return [
            path(
                "queue/",
                self.admin_site.admin_view(self.queue_view),
                name="kyc_submission_queue",
            ),
            path(
                "<path:object_id>/decide/",
                self.admin_site.admin_view(require_POST(self.decide_view)),
                name="kyc_submission_decide",
            ),
            *super().get_urls(),
        ]

    # --- The queue ---------------------------------------------------------------------

    def queue_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        levels = list(Level.objects.order_by("number"))
        form = QueueFilterForm(request.GET or None, levels=levels)
        position = None
        if form.is_bound:
            form.is_valid()
            position = form.cleaned_data.get("after")
        filters = form.filters() if form.is_bound else {}
        rows = queue_page(request.user, filters, position, QUEUE_PAGE_SIZE + 1)
        has_next = len(rows) > QUEUE_PAGE_SIZE
        rows = rows[:QUEUE_PAGE_SIZE]
        waiting = pending_queue(request.user, filters)[: QUEUE_COUNT_CAP + 1].count()
        now = timezone.now()
        sla = review_sla()
        filter_qs = urlencode({k: v for k, v in filters.items()})
        items = []
        for submission in rows:
            age = now - submission.submitted_at
            items.append(
                {
                    "submission": submission,
                    "client": submission.user,
                    "name": _client_name(submission.user),
                    "profile": getattr(submission.user, "profile", None),
                    "kyc": getattr(submission.user, "kyc", None),
                    "age": age_label(age),
                    "overdue": age > sla,
                    # Which document was sent, when the item accepts several.
                    "several_kinds": len(submission.requirement.document_kinds or []) > 1,
                    "url": reverse("admin:kyc_submission_change", args=[submission.pk])
                    + (f"?{urlencode({'queue': filter_qs})}" if filter_qs else ""),
                }
            )
        next_url = ""
        if has_next:
            next_url = "?" + urlencode({**filters, "after": keyset_cursor(rows[-1])})
        selected = filters.get("country", "")
        # 250 countries: joined here, not through the select widget's
        # template per option (a third of the page's time otherwise).
        country_options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (code, " selected" if code == selected else "", name)
                for code, name in form.fields["country"].choices
            ),
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Review queue",
            "form": form,
            "country_options": country_options,
            "items": items,
            "filters": filters,
            "filtered": bool(filters),
            "first_page": position is None,
            "first_url": "?" + filter_qs if filter_qs else "?",
            "next_url": next_url,
            "waiting": waiting,
            "waiting_capped": waiting > QUEUE_COUNT_CAP,
            "count_cap": QUEUE_COUNT_CAP,
            "sla_hours": int(sla.total_seconds() // 3600),
            "can_review": request.user.has_perm(REVIEW_PERMISSION),
        }
        return TemplateResponse(request, "admin/kyc/submission/queue.html", context)

    # --- The review page ---------------------------------------------------------------

    def _submission(self, request, object_id: str) -> Submission:
        submission = (
            self.get_queryset(request)
            .select_related(
                "user__profile",
                "user__kyc__level",
                "requirement__level",
                "requirement__questionnaire",
                "provider",
                "reason",
                "first_approved_by",
            )
            .filter(pk=_int_or_none(unquote(object_id)))
            .first()
        )
        if submission is None:
            raise Http404("No such submission.")
        return submission

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if not self.has_view_permission(request):
            raise PermissionDenied
        submission = self._submission(request, object_id)
        return TemplateResponse(
            request,
            "admin/kyc/submission/review.html",
            {**self.admin_site.each_context(request), **self._review_context(request, submission)},
        )

    def _review_context(self, request, submission: Submission) -> dict:
        user = request.user
        client = submission.user
        requirement = submission.requirement
        pending = submission.status == Submission.PENDING
        can_review = user.has_perm(REVIEW_PERMISSION)
        own = submission.user_id == user.pk
        gave_first = pending and submission.first_approved_by_id == user.pk
        reasons = list(ReviewReason.objects.filter(is_active=True))
        reviews = list(submission.reviews.select_related("reviewer", "reason"))
        history = list(
            Submission.objects.filter(user_id=submission.user_id, requirement_id=requirement.pk)
            .exclude(pk=submission.pk)
            .select_related("reason")
            .order_by("-submitted_at", "-id")[:HISTORY_LIMIT]
        )
        documents = list(submission.documents.all())
        age = timezone.now() - submission.submitted_at
        questionnaire = requirement.questionnaire
        queue_qs = request.GET.get("queue", "")[:300]
        return {
            "opts": self.opts,
            "title": f"Review: {requirement.name}",
            "subtitle": f"{_client_name(client)} · {client.email}",
            "submission": submission,
            "requirement": requirement,
            "client": client,
            "client_name": _client_name(client),
            "profile": getattr(client, "profile", None),
            "kyc": getattr(client, "kyc", None),
            "documents": documents,
            "images": [d for d in documents if d.content_type.startswith("image/")],
            "reviews": reviews,
            "history": history,
            "age": age_label(age),
            "overdue": pending and age > review_sla(),
            "pass_mark": questionnaire.pass_mark if questionnaire else None,
            "reject_reasons": [r for r in reasons if r.use in (r.REJECT, r.BOTH)],
            "resubmit_reasons": [r for r in reasons if r.use in (r.RESUBMIT, r.BOTH)],
            "can_decide": pending and can_review and not own,
            "can_approve": pending and can_review and not own and not gave_first,
            "gave_first": gave_first,
            "own": own,
            "can_review": can_review,
            "four_eyes": requirement.level.four_eyes,
            "queue": queue_qs,
            "queue_url": reverse("admin:kyc_submission_queue")
            + (f"?{queue_qs}" if queue_qs else ""),
            "decide_url": reverse("admin:kyc_submission_decide", args=[submission.pk]),
            "client_url": reverse("admin:accounts_client_change", args=[client.pk]),
            "client_kyc_url": reverse("admin:kyc_clientkyc_change", args=[client.pk]),
            "client_submissions_url": reverse("admin:kyc_submission_changelist")
            + f"?user__id__exact={client.pk}",
        }

    # --- Decisions -----------------------------------------------------------------------

    def decide_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(REVIEW_PERMISSION):
            raise PermissionDenied
        submission = self._submission(request, object_id)
        form = DecisionForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return self._back(submission, request.POST.get("queue", ""))
        data = form.cleaned_data
        queue = data["queue"]
        level_before = _level_number(submission.user_id)
        try:
            decided = self._decide(request.user, submission, data)
        except KycError as exc:
            messages.error(request, str(exc))
            return self._back(submission, queue)
        self._report(request, decided, level_before)
        if data["and_next"]:
            following = self._next_in_queue(request.user, decided, _queue_filters(queue))
            if following is None:
                messages.info(request, "Nothing else is waiting in this queue.")
                return HttpResponseRedirect(
                    reverse("admin:kyc_submission_queue") + (f"?{queue}" if queue else "")
                )
            return self._back(following, queue)
        return self._back(decided, queue)

    @staticmethod
    def _decide(actor, submission: Submission, data: dict) -> Submission:
        decision, reason, note = data["decision"], data["reason"], data["note"]
        if decision == DecisionForm.APPROVE:
            return services.submission_approve(actor=actor, submission=submission, note=note)
        if decision == DecisionForm.REJECT:
            return services.submission_reject(
                actor=actor, submission=submission, reason=reason, note=note
            )
        return services.submission_request_resubmission(
            actor=actor, submission=submission, reason=reason, note=note
        )

    @staticmethod
    def _report(request, submission: Submission, level_before: int | None) -> None:
        what = f"{submission.requirement.name} of {submission.user.email}"
        if submission.status == Submission.PENDING:
            messages.success(
                request,
                f"First approval recorded for {what}: a second reviewer must approve it.",
            )
            return
        if submission.status == Submission.APPROVED:
            text = f"Approved: {what}."
        elif submission.status == Submission.REJECTED:
            text = f"Rejected: {what}. The client sees the reason."
        else:
            text = f"Resubmission requested: {what}. The client sees the reason."
        kyc = ClientKyc.objects.select_related("level").filter(user_id=submission.user_id).first()
        if kyc is not None and kyc.level.number != level_before:
            text += f" The client is now at level {kyc.level}."
        messages.success(request, text)

    @staticmethod
    def _next_in_queue(staff, decided: Submission, filters: dict) -> Submission | None:
        """The next item after the one just decided (then from the oldest),
        leaving out those this reviewer gave the first approval to."""
        qs = pending_queue(staff, filters).exclude(first_approved_by=staff).exclude(pk=decided.pk)
        position = (decided.submitted_at, decided.pk)
        return qs.filter(after_position(position)).first() or qs.first()

    @staticmethod
    def _back(submission: Submission, queue: str = "") -> HttpResponse:
        url = reverse("admin:kyc_submission_change", args=[submission.pk])
        if queue:
            url += "?" + urlencode({"queue": queue})
        return HttpResponseRedirect(url)


def _int_or_none(value: str) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def _level_number(user_id: int) -> int | None:
    return ClientKyc.objects.filter(user_id=user_id).values_list("level__number", flat=True).first()


# --- The history of decisions ---------------------------------------------------------------


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    """Every decision on every submission (append-only)."""

    list_display = ["created_at", "submission_link", "client", "decision", "reason", "reviewer"]
    list_filter = ["decision", "reason"]
    list_select_related = ["submission__user", "submission__requirement", "reason", "reviewer"]
    search_fields = ["submission__user__email", "reviewer__email"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    fields = ["submission_link", "client", "decision", "reason", "note", "reviewer", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user, user_path="submission__user")

    @admin.display(description="submission")
    def submission_link(self, obj: Review) -> str:
        url = reverse("admin:kyc_submission_change", args=[obj.submission_id])
        return format_html('<a href="{}">{}</a>', url, obj.submission.requirement.name)

    @admin.display(description="client", ordering="submission__user__email")
    def client(self, obj: Review) -> str:
        return obj.submission.user.email
