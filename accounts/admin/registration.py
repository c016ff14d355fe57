"""The registration constructor in the admin (Compliance edits it).

- **Sign-up flows** with their fields inline, ordered by step and order:
  profile fields (their own checks apply) and custom questions (a kind,
  choices, bounds, a pattern), the countries and campaign codes the flow is
  for, its priority and the documents to accept. Checked before saving: a
  custom question's name is an identifier that clashes with nothing, each
  profile field appears once, choices and patterns can be read, and exactly
  one flow is the default (ticking "default" on a flow moves it there; the
  default cannot be switched off, deactivated or deleted). "Preview" opens
  the sign-up page as a visitor would see the flow.
- **Legal documents** with their versions inline. Versions are append-only:
  once a client accepted a version, it cannot be edited (make a new one) and
  no version is ever deleted.
- **Consents**: a read-only list (who accepted which version, when, from
  which IP address), filtered by document, version and date. A sales
  manager sees only their own clients', as for clients.

The client's page shows the flow, campaign, answers and consents of their
sign-up (:func:`client_registration_html`). Configuration changes are in the
audit log.
"""

from __future__ import annotations

import re

from auditlog.registry import auditlog
from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ..dynamic_fields import answer_display, definition_errors
from ..forms import ProfileForm
from ..models import (
    Client,
    Consent,
    LegalDocument,
    LegalDocumentVersion,
    RegistrationField,
    RegistrationFlow,
)
from ..registration import CAMPAIGN_PATTERN
from ..selectors import clients_visible_to

auditlog.register(RegistrationFlow, m2m_fields={"documents"})
auditlog.register(RegistrationField)
auditlog.register(LegalDocument)
auditlog.register(LegalDocumentVersion)

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,49}")
PROFILE_NAMES = {name for name, _ in RegistrationField.PROFILE_FIELDS}
# Names the sign-up form itself uses, or that read as a profile field.
RESERVED_NAMES = PROFILE_NAMES | {
    "email",
    "password",
    "password1",
    "password2",
    "flow",
    "promo_code",
}
CUSTOM_ONLY = ("choices", "min_value", "max_value", "regex", "regex_message")


# --- Sign-up flows ---------------------------------------------------------------------


class RegistrationFieldForm(forms.ModelForm):
    class Meta:
        model = RegistrationField
        fields = [
            "step",
            "order",
            "profile_field",
            "name",
            "label",
            "kind",
            "required",
            "help_text",
            *CUSTOM_ONLY,
        ]
        widgets = {"choices": forms.Textarea(attrs={"rows": 3, "cols": 40})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Short help: a flow has many of these forms on one page.
        self.fields["name"].required = False
        self.fields["name"].help_text = "Custom question: its answer's key (a_z_0_9)."
        self.fields["label"].required = False
        self.fields["label"].help_text = "Blank: the profile field's usual label."
        self.fields["profile_field"].help_text = "Blank: a custom question."
        self.fields["step"].help_text = ""
        self.fields["order"].help_text = ""
        self.fields["required"].help_text = ""

    def clean(self):
        cleaned = super().clean()
        profile_field = cleaned.get("profile_field")
        if profile_field:
            cleaned["name"] = profile_field
            if not cleaned.get("label"):
                cleaned["label"] = ProfileForm.base_fields[profile_field].label
            for name in CUSTOM_ONLY:
                if cleaned.get(name) not in (None, ""):
                    self.add_error(name, "A profile field has its own checks: leave this empty.")
            return cleaned
        name = (cleaned.get("name") or "").strip()
        if not name:
            self.add_error("name", "Name the custom question (or pick a profile field).")
        elif not NAME_PATTERN.fullmatch(name):
            self.add_error(
                "name", "Lower-case letters, digits and underscores, starting with a letter."
            )
        elif name in RESERVED_NAMES:
            self.add_error(
                "name",
                f"“{name}” is taken by the sign-up form or a profile field: "
                "pick the profile field instead, or another name.",
            )
        if not cleaned.get("label"):
            self.add_error("label", "A custom question needs a label.")
        definition = RegistrationField(
            kind=cleaned.get("kind") or RegistrationField.TEXT,
            choices=cleaned.get("choices") or "",
            min_value=cleaned.get("min_value"),
            max_value=cleaned.get("max_value"),
            regex=cleaned.get("regex") or "",
        )
        for field, message in definition_errors(definition).items():
            self.add_error(field, message)
        return cleaned


class RegistrationFieldFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        # Before the formset's own duplicate check, which says less.
        names: set[str] = set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE"):
                continue
            name = data.get("name")
            if not name:
                continue
            if name in names:
                what = "profile field" if data.get("profile_field") else "name"
                raise ValidationError(f"The {what} “{name}” appears twice in this flow.")
            names.add(name)
        super().clean()


class RegistrationFieldInline(admin.StackedInline):
    model = RegistrationField
    form = RegistrationFieldForm
    formset = RegistrationFieldFormSet
    extra = 0
    ordering = ["step", "order", "id"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    ("step", "order", "profile_field", "name"),
                    ("label", "kind", "required"),
                    "help_text",
                ]
            },
        ),
        (
            "Custom questions only: choices, bounds, pattern",
            {
                "classes": ["collapse"],
                "fields": ["choices", ("min_value", "max_value"), ("regex", "regex_message")],
            },
        ),
    ]


class RegistrationFlowForm(forms.ModelForm):
    class Meta:
        model = RegistrationFlow
        fields = [
            "name",
            "is_active",
            "is_default",
            "countries",
            "campaigns",
            "priority",
            "documents",
        ]
        widgets = {
            "countries": FilteredSelectMultiple("countries", is_stacked=False),
            "documents": forms.CheckboxSelectMultiple,
            "campaigns": forms.Textarea(attrs={"rows": 3, "cols": 40}),
        }

    def _get_validation_exclusions(self):
        # The one-default constraint is kept by save_model(), which moves the
        # default to this flow; checking it before would refuse that move.
        exclude = super()._get_validation_exclusions()
        exclude.add("is_default")
        return exclude

    def clean_campaigns(self) -> str:
        codes, bad = [], []
        for line in self.cleaned_data.get("campaigns", "").splitlines():
            code = line.strip().lower()
            if not code:
                continue
            (codes if CAMPAIGN_PATTERN.fullmatch(code) else bad).append(code)
        if bad:
            raise ValidationError(
                "Codes have letters, digits, dots, dashes and underscores (50 at most): "
                + ", ".join(bad[:5])
            )
        return "\n".join(dict.fromkeys(codes))

    def clean(self):
        cleaned = super().clean()
        # The instance still holds the saved values here (the form fills it after clean()).
        was_default = self.instance.pk is not None and self.instance.is_default
        if cleaned.get("is_default") and not cleaned.get("is_active"):
            self.add_error("is_active", "The default flow must stay active.")
        if was_default and not cleaned.get("is_default"):
            self.add_error(
                "is_default",
                "One flow must be the default: tick “default” on another flow to move it there.",
            )
        return cleaned


@admin.register(RegistrationFlow)
class RegistrationFlowAdmin(admin.ModelAdmin):
    form = RegistrationFlowForm
    inlines = [RegistrationFieldInline]
    list_display = [
        "name",
        "is_active",
        "is_default",
        "country_list",
        "campaign_list",
        "priority",
        "field_count",
        "preview_link",
    ]
    list_filter = ["is_active", "is_default"]
    search_fields = ["name", "campaigns"]
    readonly_fields = ["preview_link"]
    fieldsets = [
        (None, {"fields": ["name", ("is_active", "is_default"), "priority", "preview_link"]}),
        ("Who it is for", {"fields": ["countries", "campaigns"]}),
        ("Documents to accept", {"fields": ["documents"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(field_total=Count("fields"))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one at a time, never the default
        return actions

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.is_default:
            return False
        return super().has_delete_permission(request, obj)

    @transaction.atomic
    def save_model(self, request, obj, form, change) -> None:
        if obj.is_default:
            # Exactly one default: this one takes it over (the database
            # refuses two).
            RegistrationFlow.objects.filter(is_default=True).exclude(pk=obj.pk).update(
                is_default=False
            )
        super().save_model(request, obj, form, change)

    @admin.display(description="countries")
    def country_list(self, obj: RegistrationFlow) -> str:
        codes = [c.code for c in obj.countries]
        return ", ".join(codes[:8]) + (f" (+{len(codes) - 8})" if len(codes) > 8 else "") or "any"

    @admin.display(description="campaigns")
    def campaign_list(self, obj: RegistrationFlow) -> str:
        return ", ".join(obj.campaign_codes) or "-"

    @admin.display(description="fields", ordering="field_total")
    def field_count(self, obj: RegistrationFlow) -> int:
        return getattr(obj, "field_total", 0)

    @admin.display(description="preview")
    def preview_link(self, obj: RegistrationFlow) -> str:
        if obj.pk is None:
            return "-"
        return format_html(
            '<a href="{}?flow={}" target="_blank" rel="noopener">Preview the sign-up page</a>',
            reverse("account_signup"),
            obj.pk,
        )


# --- Legal documents --------------------------------------------------------------------


class LegalDocumentVersionForm(forms.ModelForm):
    class Meta:
        model = LegalDocumentVersion
        fields = ["version", "effective_at", "body"]
        widgets = {"body": forms.Textarea(attrs={"rows": 8, "cols": 80})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.instance, "accepted_count", 0):
            # Clients accepted this text: it stays as they read it.
            for field in self.fields.values():
                field.disabled = True


class LegalDocumentVersionInline(admin.StackedInline):
    model = LegalDocumentVersion
    form = LegalDocumentVersionForm
    extra = 0
    can_delete = False
    ordering = ["-effective_at", "-id"]
    readonly_fields = ["accepted"]
    fields = [("version", "effective_at"), "body", "accepted"]
    verbose_name = "version"
    verbose_name_plural = "versions (a version clients accepted cannot be changed: add a new one)"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(accepted_count=Count("consents"))

    @admin.display(description="accepted by")
    def accepted(self, obj: LegalDocumentVersion) -> str:
        count = getattr(obj, "accepted_count", 0)
        if not obj.pk:
            return "-"
        return f"{count} client{'s' if count != 1 else ''}" if count else "nobody yet"


@admin.register(LegalDocument)
class LegalDocumentAdmin(admin.ModelAdmin):
    inlines = [LegalDocumentVersionInline]
    list_display = ["title", "kind", "slug", "version_count", "public_page"]
    list_filter = ["kind"]
    search_fields = ["title", "slug"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(version_total=Count("versions"))

    def get_readonly_fields(self, request, obj=None):
        # Consent checkboxes and links name the document by its slug.
        return ["slug"] if obj is not None else []

    @admin.display(description="versions", ordering="version_total")
    def version_count(self, obj: LegalDocument) -> int:
        return getattr(obj, "version_total", 0)

    @admin.display(description="public page")
    def public_page(self, obj: LegalDocument) -> str:
        url = reverse("legal_document", kwargs={"slug": obj.slug})
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)


# --- Consents ----------------------------------------------------------------------------


class VersionFilter(admin.SimpleListFilter):
    """By version, labelled with its document (one query, not one per version)."""

    title = "version"
    parameter_name = "version"

    def lookups(self, request, model_admin):
        versions = LegalDocumentVersion.objects.select_related("document").order_by(
            "document__title", "-effective_at", "-id"
        )
        return [(str(v.pk), f"{v.document.title} {v.version}") for v in versions]

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(version_id=int(value))
        return queryset


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ["accepted_at", "user", "document", "version_label", "ip", "flow"]
    list_filter = [
        ("version__document", admin.RelatedOnlyFieldListFilter),
        VersionFilter,
        "accepted_at",
    ]
    list_select_related = ["user", "version__document", "flow"]
    search_fields = ["user__email"]
    date_hierarchy = "accepted_at"
    show_full_result_count = False
    ordering = ["-accepted_at", "-id"]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        return qs.filter(user__in=clients_visible_to(staff=request.user).values("pk"))

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a record of what a client did

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="document", ordering="version__document__title")
    def document(self, obj: Consent) -> str:
        return obj.version.document.title

    @admin.display(description="version", ordering="version__version")
    def version_label(self, obj: Consent) -> str:
        return obj.version.version


# --- On the client's page ---------------------------------------------------------------


def client_registration_html(client: Client) -> str:
    """The client's sign-up: flow, campaign, answers to the flow's custom
    questions (labels from the flow as it is now; the stored keys otherwise)
    and every consent with its version, date and IP address."""
    profile = getattr(client, "profile", None)
    flow = profile.registration_flow if profile and profile.registration_flow_id else None
    answers = (profile.registration_data or {}) if profile else {}
    definitions = {f.name: f for f in flow.fields.all()} if flow else {}
    answer_rows = [
        (
            definitions[key].label if key in definitions else key,
            answer_display(definitions[key], value) if key in definitions else str(value),
        )
        for key, value in answers.items()
    ]
    consents = client.consents.select_related("version__document").order_by("-accepted_at")
    consent_rows = [
        (
            c.version.document.title,
            c.version.version,
            c.accepted_at.strftime("%Y-%m-%d %H:%M"),
            c.ip or "",
        )
        for c in consents
    ]
    return format_html(
        "<p><strong>Flow:</strong> {} · <strong>Campaign:</strong> {}</p>{}{}",
        flow.name if flow else "-",
        (profile.campaign if profile else "") or "-",
        format_html(
            '<table class="registration-answers"><thead><tr><th>question</th><th>answer</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", answer_rows),
        )
        if answer_rows
        else format_html("<p>{}</p>", "No answers to custom questions."),
        format_html(
            '<table class="consents"><thead><tr><th>document</th><th>version</th>'
            "<th>accepted</th><th>IP address</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", consent_rows
            ),
        )
        if consent_rows
        else format_html("<p>{}</p>", "No consents recorded."),
    )
