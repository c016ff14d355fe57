"""Deposits, payment providers and methods, and received webhooks in the admin.

- **Deposits** are read-only (no status field anywhere): a list with filters,
  search and a CSV/XLSX export, and a detail page with the two things Finance
  does by hand, each through its service: match an incoming bank payment to
  a pending wire deposit, and resolve a flagged deposit (credit or fail).
  Both need ``payments.confirm_deposit``; their URLs refuse anyone else.
- **Providers**: the implementation is chosen from the PSP registry; secrets
  are write-only fields, encrypted by the service and never shown back (the
  page says only which are set); the webhook IP allow-list is validated.
- **Methods**: currencies, countries, limits, fees, order, icon, on/off.
- **Webhook events**: read-only, for investigating what a provider said.
"""

from __future__ import annotations

import json

from auditlog.registry import auditlog
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from import_export import fields, resources, widgets
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from backoffice.money import from_minor
from backoffice.secrets import decrypt

from ..forms_deposits import MatchWireForm, ResolveFlaggedForm
from ..models import Deposit, PaymentMethod, PaymentProvider, WebhookEvent
from ..providers import PSPS
from ..providers.base import webhook_networks
from ..services.deposits import (
    CONFIRM_PERMISSION,
    DepositError,
    deposit_match_wire,
    deposit_resolve_flagged,
    provider_secrets_set,
)
from .ledger import ReadOnlyAdmin, format_amount

# Configuration changes belong in the audit log; the encrypted secrets never do.
auditlog.register(PaymentProvider, exclude_fields=["secrets"])
auditlog.register(PaymentMethod, m2m_fields={"currencies"})

LATEST_WEBHOOKS = 20


# --- Deposits ------------------------------------------------------------------------


class DepositResource(resources.ModelResource):
    """The export: one row per deposit, amounts as decimals in major units."""

    client = fields.Field(attribute="user__email", column_name="client")
    method = fields.Field(attribute="method__name", column_name="method")
    provider = fields.Field(attribute="provider__identifier", column_name="provider")
    currency = fields.Field(attribute="currency_id", column_name="currency")
    amount = fields.Field(column_name="amount", widget=widgets.DecimalWidget())
    fee = fields.Field(column_name="fee", widget=widgets.DecimalWidget())
    wallet_currency = fields.Field(attribute="wallet__currency_id", column_name="wallet_currency")
    credit_amount = fields.Field(column_name="credit_amount", widget=widgets.DecimalWidget())

    class Meta:
        model = Deposit
        fields = [
            "reference",
            "created_at",
            "completed_at",
            "client",
            "method",
            "provider",
            "currency",
            "amount",
            "fee",
            "wallet_currency",
            "credit_amount",
            "rate",
            "status",
            "provider_reference",
            "flag_reason",
        ]
        export_order = fields

    def dehydrate_amount(self, deposit: Deposit):
        return from_minor(deposit.amount, deposit.currency.exponent)

    def dehydrate_fee(self, deposit: Deposit):
        return from_minor(deposit.fee, deposit.currency.exponent)

    def dehydrate_credit_amount(self, deposit: Deposit):
        return from_minor(deposit.credit_amount, deposit.wallet.currency.exponent)


@admin.register(Deposit)
class DepositAdmin(ExportMixin, admin.ModelAdmin):
    resource_classes = [DepositResource]
    # XLSX needs openpyxl (django-import-export[xlsx]); without it, CSV only
    # rather than an export page that fails.
    formats = [f for f in (CSV, XLSX) if f.is_available()]
    change_form_template = "payments/deposits/admin/change_form.html"
    list_display = [
        "reference",
        "client",
        "method",
        "amount_display",
        "fee_display",
        "credit_display",
        "status",
        "created_at",
    ]
    list_filter = ["status", "method", "currency", "created_at"]
    list_select_related = ["user", "method", "currency", "wallet__currency"]
    search_fields = ["reference", "user__email", "provider_reference"]
    search_help_text = "Reference, client's e-mail or provider's reference"
    date_hierarchy = "created_at"
    ordering = ["-id"]
    show_full_result_count = False
    fields = [
        "reference",
        "status",
        "flag_reason",
        "client_link",
        "wallet_link",
        "method",
        "provider",
        "amount_display",
        "fee_display",
        "credit_display",
        "rate",
        "provider_reference",
        "journal_link",
        "created_at",
        "updated_at",
        "completed_at",
        "webhooks_panel",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    # Exporting needs payments.export_deposit (IMPORT_EXPORT_EXPORT_PERMISSION_CODE):
    # every client's deposits in one file is more than viewing one.

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("user", "method", "provider", "currency", "wallet__currency")
        )

    def get_export_queryset(self, request):
        return (
            super()
            .get_export_queryset(request)
            .select_related("user", "method", "provider", "currency", "wallet__currency")
        )

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: Deposit) -> str:
        return obj.user.email

    @admin.display(description="paid", ordering="amount")
    def amount_display(self, obj: Deposit) -> str:
        return format_amount(obj.amount, obj.currency)

    @admin.display(description="fee")
    def fee_display(self, obj: Deposit) -> str:
        return format_amount(obj.fee, obj.currency)

    @admin.display(description="credit")
    def credit_display(self, obj: Deposit) -> str:
        return format_amount(obj.credit_amount, obj.wallet.currency)

    @admin.display(description="client")
    def client_link(self, obj: Deposit) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user.email)

    @admin.display(description="wallet")
    def wallet_link(self, obj: Deposit) -> str:
        url = reverse("admin:payments_ledgeraccount_change", args=[obj.wallet_id])
        return format_html('<a href="{}">{} wallet</a>', url, obj.wallet.currency_id)

    @admin.display(description="ledger")
    def journal_link(self, obj: Deposit) -> str:
        if obj.journal_id is None:
            return "not credited"
        url = reverse("admin:payments_journaltransaction_change", args=[obj.journal_id])
        return format_html('credited by <a href="{}">#{}</a>', url, obj.journal_id)

    @admin.display(description=f"webhooks (latest {LATEST_WEBHOOKS})")
    def webhooks_panel(self, obj: Deposit) -> str:
        events = list(obj.webhooks.order_by("-id")[:LATEST_WEBHOOKS])
        if not events:
            return "-"
        return format_html(
            "<ul>{}</ul>",
            format_html_join(
                "",
                '<li><a href="{}">{}</a> {} · {} · {}</li>',
                (
                    (
                        reverse("admin:payments_webhookevent_change", args=[e.pk]),
                        e.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                        e.event_type or "-",
                        e.get_result_display(),
                        e.message,
                    )
                    for e in events
                ),
            ),
        )

    # --- Finance's actions ----------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            can_confirm = request.user.has_perm(CONFIRM_PERMISSION)
            context["can_match_wire"] = (
                can_confirm
                and obj.provider.kind == "manual"
                and obj.status in (Deposit.CREATED, Deposit.PENDING)
            )
            context["can_resolve"] = can_confirm and obj.status == Deposit.FLAGGED
            context["subtitle"] = f"{obj.reference} · {obj.user.email}"
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/match-wire/",
                self.admin_site.admin_view(self.match_wire_view),
                name="payments_deposit_match_wire",
            ),
            path(
                "<path:object_id>/resolve/",
                self.admin_site.admin_view(self.resolve_view),
                name="payments_deposit_resolve",
            ),
            *super().get_urls(),
        ]

    def _deposit(self, request, object_id: str) -> Deposit:
        if not request.user.has_perm(CONFIRM_PERMISSION):
            raise PermissionDenied
        deposit = self.get_object(request, unquote(object_id))
        if deposit is None:
            raise Http404("No such deposit.")
        return deposit

    def _back(self, deposit: Deposit) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:payments_deposit_change", args=[deposit.pk]))

    def _page(self, request, deposit: Deposit, form, *, title: str, template: str):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": deposit,
            "title": title,
            "subtitle": f"{deposit.reference} · {deposit.user.email}",
            "deposit": deposit,
            "expected": format_amount(deposit.amount, deposit.currency),
            "credit": format_amount(deposit.credit_amount, deposit.wallet.currency),
            "form": form,
        }
        return TemplateResponse(request, template, context)

    def match_wire_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Record the bank payment that pays a wire deposit (credited when it
        is the deposit's amount and currency, flagged otherwise)."""
        deposit = self._deposit(request, object_id)
        if request.method == "POST":
            form = MatchWireForm(request.POST)
            if form.is_valid():
                try:
                    change = deposit_match_wire(
                        actor=request.user,
                        deposit=deposit,
                        amount=form.cleaned_data["amount"],
                        currency=form.cleaned_data["currency"],
                        bank_reference=form.cleaned_data["bank_reference"],
                    )
                except DepositError as exc:
                    form.add_error(None, str(exc))
                else:
                    done = change.deposit
                    if done.status == Deposit.COMPLETED:
                        credit = format_amount(done.credit_amount, deposit.wallet.currency)
                        messages.success(
                            request,
                            f"{done.reference} matched: {credit} credited to "
                            f"{deposit.user.email} (transaction #{done.journal_id}).",
                        )
                    else:
                        messages.warning(
                            request,
                            f"{done.reference} flagged, nothing credited: {done.flag_reason} "
                            "Resolve it below.",
                        )
                    return self._back(deposit)
        else:
            form = MatchWireForm(
                initial={
                    "amount": from_minor(deposit.amount, deposit.currency.exponent),
                    "currency": deposit.currency_id,
                }
            )
        return self._page(
            request,
            deposit,
            form,
            title="Match a bank payment",
            template="payments/deposits/admin/match_wire.html",
        )

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        deposit = self._deposit(request, object_id)
        form = ResolveFlaggedForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            credit = form.cleaned_data["decision"] == "credit"
            try:
                deposit_resolve_flagged(
                    actor=request.user,
                    deposit=deposit,
                    credit=credit,
                    note=form.cleaned_data["note"],
                )
            except DepositError as exc:
                form.add_error(None, str(exc))
            else:
                if credit:
                    amount = format_amount(deposit.credit_amount, deposit.wallet.currency)
                    messages.success(request, f"{deposit.reference} credited: {amount}.")
                else:
                    messages.success(request, f"{deposit.reference} failed; nothing credited.")
                return self._back(deposit)
        return self._page(
            request,
            deposit,
            form,
            title="Resolve a flagged deposit",
            template="payments/deposits/admin/resolve.html",
        )


# --- Providers ------------------------------------------------------------------------


def _secret_names(registry=PSPS) -> dict[str, list[str]]:
    """Each secret name, with the implementations (of ``registry``) that read it."""
    names: dict[str, list[str]] = {}
    for kind, _label in registry.choices():
        for name in registry.get(kind).secret_names:
            names.setdefault(name, []).append(kind)
    return names


class PaymentProviderForm(forms.ModelForm):
    """The provider's configuration, plus a write-only field for each secret
    (blank keeps what is stored) and boxes to remove stored ones.

    Other kinds of provider (KYC) reuse it: a subclass names its model and
    its ``registry`` of implementations (each with ``label``,
    ``secret_names`` and ``required_settings``)."""

    registry = PSPS
    kind = forms.ChoiceField(label="Implementation")
    clear_secrets = forms.MultipleChoiceField(
        label="Remove secrets",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick to delete a stored secret.",
    )

    class Meta:
        model = PaymentProvider
        fields = ["identifier", "name", "kind", "enabled", "settings", "webhook_ip_allowlist"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        registry = self.registry
        self.fields["kind"].choices = [
            (kind, f"{registry.get(kind).label or kind} ({kind})") for kind, _ in registry.choices()
        ]
        stored = decrypt(self.instance.secrets) if self.instance.pk else {}
        self.secret_fields = []
        for name, kinds in _secret_names(registry).items():
            field_name = f"secret_{name}"
            state = "set; leave blank to keep it" if name in stored else "not set"
            self.fields[field_name] = forms.CharField(
                label=name.replace("_", " ").capitalize(),
                required=False,
                strip=True,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                help_text=f"Used by: {', '.join(kinds)}. Currently {state}.",
            )
            self.secret_fields.append(field_name)
        self.fields["clear_secrets"].choices = [(name, name) for name in sorted(stored)]
        if not stored:
            del self.fields["clear_secrets"]

    def clean_settings(self):
        value = self.cleaned_data.get("settings")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Settings are a JSON object, e.g. {"url": "https://…"}.')
        return value

    def clean_webhook_ip_allowlist(self) -> str:
        value = self.cleaned_data.get("webhook_ip_allowlist", "")
        try:
            webhook_networks(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        return "\n".join(line.strip() for line in value.splitlines() if line.strip())

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind in self.registry:
            missing = [
                key
                for key in self.registry.get(kind).required_settings
                if not str((cleaned.get("settings") or {}).get(key) or "").strip()
            ]
            if missing:
                self.add_error("settings", f"{kind} needs these settings: {', '.join(missing)}.")
        return cleaned

    def secret_values(self) -> dict[str, str]:
        return {
            name.removeprefix("secret_"): self.cleaned_data.get(name, "")
            for name in self.secret_fields
        }


@admin.register(PaymentProvider)
class PaymentProviderAdmin(admin.ModelAdmin):
    form = PaymentProviderForm
    list_display = ["name", "identifier", "kind", "enabled", "secrets_state", "webhook_url"]
    list_filter = ["kind", "enabled"]
    search_fields = ["identifier", "name"]
    readonly_fields = ["secrets_state", "webhook_url", "created_at"]

    def get_fieldsets(self, request, obj=None):
        secrets = [f"secret_{name}" for name in _secret_names()]
        if obj is not None and obj.secrets:
            secrets.append("clear_secrets")
        return [
            (None, {"fields": ["identifier", "name", "kind", "enabled", "created_at"]}),
            ("Settings", {"fields": ["settings"]}),
            ("Secrets (encrypted, never shown)", {"fields": ["secrets_state", *secrets]}),
            ("Webhooks", {"fields": ["webhook_url", "webhook_ip_allowlist"]}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The secret fields are added by the form itself, per instance.
        kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            # The webhook URL configured at the PSP depends on it.
            return [*self.readonly_fields, "identifier"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # referenced by deposits: disable instead

    @admin.display(description="secrets set")
    def secrets_state(self, obj: PaymentProvider) -> str:
        if obj is None or not obj.secrets:
            return "none"
        return ", ".join(sorted(decrypt(obj.secrets))) or "none"

    @admin.display(description="webhook URL")
    def webhook_url(self, obj: PaymentProvider) -> str:
        if obj is None or not obj.identifier:
            return "-"
        return settings.SITE_URL + reverse("payments_webhook", args=[obj.identifier])

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        values = form.secret_values()
        clear = form.cleaned_data.get("clear_secrets") or []
        if any(values.values()) or clear:
            provider_secrets_set(actor=request.user, provider=obj, values=values, clear=clear)


# --- Methods -----------------------------------------------------------------------------


@admin.register(PaymentMethod)
class PaymentMethodAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "provider",
        "direction",
        "currencies_display",
        "fees_display",
        "limits_display",
        "countries_display",
        "display_order",
        "enabled",
    ]
    list_editable = ["display_order", "enabled"]
    list_filter = ["provider", "direction", "enabled", "icon"]
    list_select_related = ["provider", "provider_currency"]
    search_fields = ["name", "provider__name"]
    filter_horizontal = ["currencies"]
    ordering = ["display_order", "name"]
    fieldsets = [
        (None, {"fields": ["name", "provider", "direction", "enabled", "display_order", "icon"]}),
        ("Currencies and countries", {"fields": ["currencies", "provider_currency", "countries"]}),
        ("Limits and fees", {"fields": ["min_amount", "max_amount", "fee_percent", "fee_fixed"]}),
        ("Shown to the client", {"fields": ["instructions"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("currencies")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # referenced by deposits and withdrawals: disable instead

    @admin.display(description="currencies")
    def currencies_display(self, obj: PaymentMethod) -> str:
        return ", ".join(sorted(c.code for c in obj.currencies.all())) or "-"

    @admin.display(description="fee")
    def fees_display(self, obj: PaymentMethod) -> str:
        return f"{obj.fee_percent.normalize()} % + {obj.fee_fixed.normalize()}"

    @admin.display(description="limits")
    def limits_display(self, obj: PaymentMethod) -> str:
        high = obj.max_amount.normalize() if obj.max_amount is not None else "∞"
        return f"{obj.min_amount.normalize()} – {high}"

    @admin.display(description="countries")
    def countries_display(self, obj: PaymentMethod) -> str:
        codes = [c.code for c in obj.countries]
        if not codes:
            return "all"
        return ", ".join(codes[:6]) + (f" +{len(codes) - 6}" if len(codes) > 6 else "")


# --- Webhook events ---------------------------------------------------------------------


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "provider", "event_type", "event_id", "deposit", "result"]
    list_filter = ["provider", "result", "event_type"]
    list_select_related = ["provider", "deposit"]
    search_fields = ["=event_id", "deposit__reference"]
    search_help_text = "Exact event id, or deposit reference"
    date_hierarchy = "received_at"
    ordering = ["-id"]
    show_full_result_count = False
    fields = [
        "provider",
        "event_id",
        "event_type",
        "deposit",
        "result",
        "message",
        "received_at",
        "payload_pretty",
    ]
    readonly_fields = fields

    @admin.display(description="payload")
    def payload_pretty(self, obj: WebhookEvent) -> str:
        text = json.dumps(obj.payload, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', text)
