"""The KYC constructor in the admin: levels (with their limits and
requirements), requirements, questionnaires with their questions, country
rules, review reasons and providers (write-only secrets).

Saving configuration changes configuration only: a client's level is kept as
granted (``ClientKyc``) and moves only on a decision (``kyc.services``), so
editing a level or a requirement never moves anyone. What clients' data
points to cannot be deleted: the page says why and offers deactivating it
instead. Every change is in the audit log.
"""

from __future__ import annotations

import json

from auditlog.registry import auditlog
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from backoffice.secrets import decrypt

from ..admin_forms import (
    KycProviderForm,
    LevelForm,
    QuestionForm,
    QuestionInlineFormSet,
    QuestionnaireForm,
    RequirementForm,
    RequirementInlineForm,
    level_usage,
    questionnaire_usage,
    reason_usage,
    requirement_usage,
)
from ..models import (
    DOCUMENT_KINDS,
    TWO_SIDED_KINDS,
    CountryRule,
    KycProvider,
    Level,
    ProviderApplicant,
    ProviderEvent,
    Question,
    Questionnaire,
    Requirement,
    ReviewReason,
)
from ..services.config import kyc_provider_secrets_set

auditlog.register(Level)
auditlog.register(Requirement)
auditlog.register(Questionnaire)
auditlog.register(Question)
auditlog.register(CountryRule, m2m_fields={"extra_requirements"})
auditlog.register(ReviewReason)
auditlog.register(KycProvider, exclude_fields=["secrets"])

DOCUMENT_LABELS = dict(DOCUMENT_KINDS)


def _limit(value) -> str:
    return "no limit" if value is None else f"{value.normalize():,f}"


def requirement_summary(requirement: Requirement) -> str:
    """What a requirement asks, in a line."""
    if requirement.kind == Requirement.DOCUMENT:
        kinds = requirement.document_kinds or []
        parts = [" or ".join(DOCUMENT_LABELS.get(k, k) for k in kinds) or "no document chosen"]
        if requirement.back_side_required and set(kinds) & TWO_SIDED_KINDS:
            parts.append("both sides of cards")
        if requirement.expiry_required:
            parts.append("expiry date")
        if requirement.max_age_days:
            parts.append(f"issued within {requirement.max_age_days} days")
        return " · ".join(parts)
    if requirement.kind == Requirement.QUESTIONNAIRE:
        questionnaire = requirement.questionnaire
        if questionnaire is None:
            return "no questionnaire chosen"
        if questionnaire.pass_mark is not None:
            return f"{questionnaire.name} (pass mark {questionnaire.pass_mark})"
        return questionnaire.name
    provider = requirement.provider
    return f"{provider.name if provider else 'no provider'} · {requirement.provider_level or '-'}"


class InUseDeleteMixin:
    """Deleting configuration clients' data points to is refused with the
    reason and what to do instead. The bulk delete action is removed: it
    would list every protected row (100,000 submissions) on one page."""

    instead = "Untick “active” instead: it is then no longer used for anyone new."

    def usage(self, obj) -> str:
        raise NotImplementedError

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request, object_id, extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        if obj is not None and self.has_delete_permission(request, obj):
            reason = self.usage(obj)
            if reason:
                messages.error(request, f"“{obj}” cannot be deleted: {reason}. {self.instead}")
                opts = self.opts
                return HttpResponseRedirect(
                    reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
                )
        return super().delete_view(request, object_id, extra_context)


# --- Levels and requirements ------------------------------------------------------------


class RequirementInline(admin.TabularInline):
    """A level's requirements: order and on/off here; the rest on the
    requirement's own page (its kind decides which fields matter)."""

    model = Requirement
    form = RequirementInlineForm
    fields = ["name_link", "kind", "asks", "only_for_country_rules", "order", "is_active"]
    readonly_fields = ["name_link", "kind", "asks", "only_for_country_rules"]
    extra = 0
    can_delete = False
    ordering = ["order", "id"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # added on the requirement's page, where its kind is chosen

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("level", "questionnaire", "provider")

    @admin.display(description="requirement")
    def name_link(self, obj: Requirement) -> str:
        url = reverse("admin:kyc_requirement_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.name)

    @admin.display(description="asks")
    def asks(self, obj: Requirement) -> str:
        return requirement_summary(obj)


@admin.register(Level)
class LevelAdmin(InUseDeleteMixin, admin.ModelAdmin):
    form = LevelForm
    inlines = [RequirementInline]
    list_display = [
        "number",
        "name",
        "deposits",
        "withdrawals",
        "limits_currency",
        "allows_live_accounts",
        "allows_withdrawals",
        "allows_transfers",
        "four_eyes",
        "requirements_count",
        "is_active",
    ]
    list_display_links = ["number", "name"]
    list_filter = ["is_active", "four_eyes"]
    ordering = ["number"]
    readonly_fields = ["add_requirement"]
    fieldsets = [
        (None, {"fields": ["number", "name", "description", "is_active"]}),
        (
            "Limits",
            {
                "description": "Deposits and withdrawals are summed over the day and the "
                "calendar month in the broker's time zone, converted into the limits "
                "currency at the current rate.",
                "fields": [
                    "limits_currency",
                    ("deposit_daily_limit", "deposit_monthly_limit"),
                    ("withdrawal_daily_limit", "withdrawal_monthly_limit"),
                ],
            },
        ),
        (
            "What the level allows",
            {"fields": ["allows_live_accounts", "allows_withdrawals", "allows_transfers"]},
        ),
        ("Review", {"fields": ["four_eyes"]}),
        ("Requirements", {"fields": ["add_requirement"]}),
    ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("limits_currency")
            .annotate(requirements_total=Count("requirements"))
        )

    def usage(self, obj: Level) -> str:
        return level_usage(obj)

    @admin.display(description="deposits (day / month)")
    def deposits(self, obj: Level) -> str:
        return f"{_limit(obj.deposit_daily_limit)} / {_limit(obj.deposit_monthly_limit)}"

    @admin.display(description="withdrawals (day / month)")
    def withdrawals(self, obj: Level) -> str:
        return f"{_limit(obj.withdrawal_daily_limit)} / {_limit(obj.withdrawal_monthly_limit)}"

    @admin.display(description="requirements", ordering="requirements_total")
    def requirements_count(self, obj: Level) -> int:
        return obj.requirements_total

    @admin.display(description="add")
    def add_requirement(self, obj: Level | None) -> str:
        if obj is None or obj.pk is None:
            return "Save the level first, then add its requirements."
        url = reverse("admin:kyc_requirement_add") + f"?level={obj.pk}"
        return format_html(
            '<a href="{}" class="addlink">Add a requirement to this level</a>'
            '<div class="help">Its kind (a document, a questionnaire or a check by a '
            "provider) decides what it asks. Clients who already hold the level keep it: "
            "a new requirement is asked of those who climb to it from now on.</div>",
            url,
        )


@admin.register(Requirement)
class RequirementAdmin(InUseDeleteMixin, admin.ModelAdmin):
    form = RequirementForm
    list_display = [
        "name",
        "level",
        "kind",
        "asks",
        "only_for_country_rules",
        "order",
        "is_active",
    ]
    list_filter = ["level", "kind", "is_active", "only_for_country_rules"]
    list_select_related = ["level", "questionnaire", "provider"]
    search_fields = ["name"]
    ordering = ["level__number", "order", "id"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "level",
                    "name",
                    "kind",
                    "instructions",
                    ("order", "is_active"),
                    "only_for_country_rules",
                ]
            },
        ),
        (
            "Documents",
            {
                "description": "For a document requirement only.",
                "fields": [
                    "document_kinds",
                    "back_side_required",
                    "max_age_days",
                    "expiry_required",
                ],
            },
        ),
        (
            "Questionnaire",
            {"description": "For a questionnaire only.", "fields": ["questionnaire"]},
        ),
        (
            "Check by a provider",
            {
                "description": "For a check by an outside provider only.",
                "fields": ["provider", "provider_level"],
            },
        ),
    ]

    def usage(self, obj: Requirement) -> str:
        return requirement_usage(obj)

    @admin.display(description="asks")
    def asks(self, obj: Requirement) -> str:
        return requirement_summary(obj)


# --- Questionnaires ------------------------------------------------------------------------


class QuestionInline(admin.StackedInline):
    model = Question
    form = QuestionForm
    formset = QuestionInlineFormSet
    extra = 0
    fields = [
        ("order", "name", "kind", "required"),
        "label",
        "help_text",
        ("choices", "scores"),
        ("min_value", "max_value"),
        ("regex", "regex_message"),
    ]


@admin.register(Questionnaire)
class QuestionnaireAdmin(InUseDeleteMixin, admin.ModelAdmin):
    form = QuestionnaireForm
    inlines = [QuestionInline]
    list_display = ["name", "questions_count", "pass_mark", "approve_on_pass", "is_active"]
    list_filter = ["is_active"]
    search_fields = ["name"]
    fieldsets = [
        (None, {"fields": ["name", "description", "is_active"]}),
        (
            "Scoring",
            {
                "description": "With a pass mark, each answer's points (the questions' "
                "scores) are summed; a score below the pass mark is refused at once. "
                "Answers already given keep the points they had.",
                "fields": ["pass_mark", "approve_on_pass"],
            },
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(questions_total=Count("questions"))

    def usage(self, obj: Questionnaire) -> str:
        return questionnaire_usage(obj)

    @admin.display(description="questions", ordering="questions_total")
    def questions_count(self, obj: Questionnaire) -> int:
        return obj.questions_total


# --- Countries, reasons, providers ------------------------------------------------------------


@admin.register(CountryRule)
class CountryRuleAdmin(admin.ModelAdmin):
    list_display = ["country_name", "country", "blocked", "high_risk", "extras", "note"]
    list_filter = ["blocked", "high_risk"]
    search_fields = ["country", "note"]
    filter_horizontal = ["extra_requirements"]
    fieldsets = [
        (None, {"fields": ["country", "blocked", "high_risk", "note"]}),
        (
            "Extra requirements",
            {
                "description": "Requirements marked “only for countries naming it”, asked "
                "of this country's residents on top of each level's own.",
                "fields": ["extra_requirements"],
            },
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("extra_requirements__level")

    @admin.display(description="country", ordering="country")
    def country_name(self, obj: CountryRule) -> str:
        return obj.country.name

    @admin.display(description="extra requirements")
    def extras(self, obj: CountryRule) -> str:
        return ", ".join(str(r) for r in obj.extra_requirements.all()) or "-"


@admin.register(ReviewReason)
class ReviewReasonAdmin(InUseDeleteMixin, admin.ModelAdmin):
    list_display = ["text", "code", "use", "order", "is_active"]
    list_editable = ["order", "is_active"]
    list_filter = ["use", "is_active"]
    search_fields = ["text", "code"]
    ordering = ["order", "text"]

    def get_readonly_fields(self, request, obj=None):
        # Decisions name reasons by code ("other" needs a note, "failed_test"
        # is what a failed questionnaire cites).
        return ["code"] if obj is not None else []

    def usage(self, obj: ReviewReason) -> str:
        return reason_usage(obj)


@admin.register(KycProvider)
class KycProviderAdmin(admin.ModelAdmin):
    form = KycProviderForm
    list_display = ["name", "identifier", "kind", "enabled", "secrets_state", "webhook_url"]
    list_filter = ["kind", "enabled"]
    search_fields = ["identifier", "name"]
    readonly_fields = ["secrets_state", "webhook_url", "created_at"]

    def get_fieldsets(self, request, obj=None):
        form = self.form(instance=obj)
        secrets = list(form.secret_fields)
        if obj is not None and obj.secrets:
            secrets.append("clear_secrets")
        return [
            (None, {"fields": ["identifier", "name", "kind", "enabled", "created_at"]}),
            ("Settings", {"fields": ["settings"]}),
            ("Secrets (encrypted, never shown)", {"fields": ["secrets_state", *secrets]}),
            ("Webhooks", {"fields": ["webhook_url"]}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["fields"] = None  # the secret fields are added by the form, per instance
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            # The webhook URL configured at the provider depends on it.
            return [*self.readonly_fields, "identifier"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # submissions and applicants refer to it: disable instead

    @admin.display(description="secrets set")
    def secrets_state(self, obj: KycProvider | None) -> str:
        if obj is None or not obj.secrets:
            return "none"
        return ", ".join(sorted(decrypt(obj.secrets))) or "none"

    @admin.display(description="webhook URL")
    def webhook_url(self, obj: KycProvider | None) -> str:
        if obj is None or not obj.identifier:
            return "-"
        try:
            return settings.SITE_URL + reverse("kyc_webhook", args=[obj.identifier])
        except NoReverseMatch:
            return "-"

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        values = form.secret_values()
        clear = form.cleaned_data.get("clear_secrets") or []
        if any(values.values()) or clear:
            kyc_provider_secrets_set(actor=request.user, provider=obj, values=values, clear=clear)


# --- What providers said (read-only, for investigating) -----------------------------------


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ProviderApplicant)
class ProviderApplicantAdmin(_ReadOnly):
    list_display = ["applicant_id", "provider", "client", "created_at"]
    list_filter = ["provider"]
    list_select_related = ["provider", "user"]
    search_fields = ["=applicant_id", "user__email"]
    search_help_text = "Exact applicant id, or the client's e-mail"
    ordering = ["-id"]
    show_full_result_count = False

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: ProviderApplicant) -> str:
        return obj.user.email


@admin.register(ProviderEvent)
class ProviderEventAdmin(_ReadOnly):
    list_display = ["received_at", "provider", "event_key", "processed_at", "error"]
    list_filter = ["provider"]
    list_select_related = ["provider"]
    search_fields = ["event_key"]
    date_hierarchy = "received_at"
    ordering = ["-id"]
    show_full_result_count = False
    fields = ["provider", "event_key", "received_at", "processed_at", "error", "payload_pretty"]
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, obj: ProviderEvent) -> str:
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)
