"""Exchange rates, markups, conversions and transfers in the admin.

- Rate sources: settings editable; secrets are write-only password fields,
  stored encrypted and shown only as "set" / "not set"; "Refresh now" calls
  the same service as the beat task.
- Rates: listed with their age; Finance adds or changes a rate of the manual
  source through ``rate_set_manual`` (fetched rates are read-only).
- Markups: plain configuration.
- Conversions and transfers: read-only, with filters.

Who may do what comes from the permissions of migration 0006 (Finance:
change_ratesource, add_rate, change_rate, the markup permissions; views for
Compliance and Support).
"""

from __future__ import annotations

from auditlog.registry import auditlog
from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from backoffice.secrets import SecretError, decrypt

from ..exceptions import LedgerError
from ..models import Conversion, Currency, Markup, Rate, RateSource, Transfer
from ..providers import RATE_PROVIDERS
from ..services import rates as rate_services
from .ledger import ReadOnlyAdmin, format_amount

auditlog.register(RateSource, exclude_fields=["secrets", "last_refreshed_at", "last_error"])
auditlog.register(Rate, exclude_fields=["fetched_at"])
auditlog.register(Markup)


def _seconds(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} s"


# --- Rate sources -------------------------------------------------------------------


class RateSourceForm(forms.ModelForm):
    """The source's configuration, plus one write-only field per secret its
    provider reads (blank keeps the stored value)."""

    clear_secrets = forms.BooleanField(
        required=False, label="Remove the stored secrets", help_text="Then enter new ones, if any."
    )

    class Meta:
        model = RateSource
        fields = [
            "identifier",
            "kind",
            "name",
            "enabled",
            "priority",
            "max_age_seconds",
            "settings",
        ]
        widgets = {"kind": forms.Select(choices=RATE_PROVIDERS.choices())}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.secret_names: list[str] = []
        kind = self.instance.kind if self.instance.pk else None
        if kind in RATE_PROVIDERS:
            try:
                stored = decrypt(self.instance.secrets)
            except SecretError:
                stored = {}
            for name, label in RATE_PROVIDERS.get(kind).secret_fields.items():
                field_name = f"secret_{name}"
                self.fields[field_name] = forms.CharField(
                    label=label,
                    required=False,
                    strip=True,
                    widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                    help_text=("Set" if stored.get(name) else "Not set")
                    + ". Leave blank to keep; the value is never shown.",
                )
                self.secret_names.append(name)
        else:
            self.fields.pop("clear_secrets")

    def clean_kind(self) -> str:
        kind = self.cleaned_data["kind"]
        if kind not in RATE_PROVIDERS:
            raise ValidationError("Choose a rate provider implementation from the list.")
        return kind

    def clean_settings(self):
        value = self.cleaned_data["settings"]
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValidationError('Settings are a JSON object, such as {"url": "https://..."}.')
        return value

    def new_secrets(self) -> dict[str, str]:
        return {
            name: self.cleaned_data.get(f"secret_{name}", "")
            for name in self.secret_names
            if self.cleaned_data.get(f"secret_{name}")
        }


@admin.register(RateSource)
class RateSourceAdmin(admin.ModelAdmin):
    form = RateSourceForm
    list_display = [
        "name",
        "identifier",
        "kind",
        "enabled",
        "priority",
        "max_age",
        "last_refreshed_at",
        "status",
        "secrets_status",
    ]
    list_filter = ["enabled", "kind"]
    ordering = ["priority", "identifier"]
    actions = ["refresh_now"]
    readonly_fields = ["last_refreshed_at", "last_error", "secrets_status"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields += ["identifier", "kind"]  # rates and conversions refer to them
        return fields

    def get_fieldsets(self, request, obj=None):
        config = ["identifier", "kind", "name", "enabled", "priority", "max_age_seconds"]
        fieldsets = [(None, {"fields": config}), ("Settings", {"fields": ["settings"]})]
        if obj is not None:
            names = RATE_PROVIDERS.get(obj.kind).secret_fields if obj.kind in RATE_PROVIDERS else {}
            secrets = ["secrets_status", *(f"secret_{name}" for name in names), "clear_secrets"]
            fieldsets.append(("Secrets", {"fields": secrets}))
            fieldsets.append(("Last refresh", {"fields": ["last_refreshed_at", "last_error"]}))
        return fieldsets

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The secret fields are the form's own (made per provider), not the
        # model's: keep them out of the model fields the factory is given.
        fields = kwargs.get("fields") or flatten_fieldsets(self.get_fieldsets(request, obj))
        kwargs["fields"] = [
            name for name in fields if not name.startswith("secret_") and name != "clear_secrets"
        ]
        return super().get_form(request, obj, change=change, **kwargs)

    @admin.display(description="max age")
    def max_age(self, obj: RateSource) -> str:
        return _seconds(obj.max_age_seconds)

    @admin.display(description="status")
    def status(self, obj: RateSource) -> str:
        if obj.last_error:
            return format_html(
                '<span title="{}">error: {}</span>', obj.last_error, obj.last_error[:60]
            )
        return "ok" if obj.last_refreshed_at else "-"

    @admin.display(description="secrets")
    def secrets_status(self, obj: RateSource) -> str:
        return "set" if obj.secrets else "not set"

    def save_model(self, request, obj, form, change) -> None:
        try:
            rate_services.rate_source_save(
                actor=request.user,
                source=obj,
                secrets=form.new_secrets(),
                clear_secrets=bool(form.cleaned_data.get("clear_secrets")),
            )
        except LedgerError as exc:
            # Reached only by a source whose stored secrets cannot be read.
            messages.error(request, str(exc))

    @admin.action(description="Refresh now", permissions=["change"])
    def refresh_now(self, request, queryset) -> None:
        for source in queryset:
            if source.kind in RATE_PROVIDERS and not RATE_PROVIDERS.get(source.kind).automatic:
                messages.info(
                    request, f"{source.name}: rates are entered by hand, nothing to fetch."
                )
                continue
            result = rate_services.rates_refresh(source=source)
            if result.ok:
                messages.success(
                    request,
                    f"{source.name}: {result.stored} rates stored"
                    + (
                        f", {result.skipped} skipped (currencies we do not offer)."
                        if result.skipped
                        else "."
                    ),
                )
            else:
                messages.error(request, f"{source.name}: {result.error}")


# --- Rates --------------------------------------------------------------------------


class RateForm(forms.ModelForm):
    """A manual rate: 1 base = rate quote. Saved by ``rate_set_manual``."""

    class Meta:
        model = Rate
        fields = ["base", "quote", "rate"]
        labels = {"base": "1 unit of", "quote": "is worth, in", "rate": "rate"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name in ("base", "quote"):
            if name in self.fields:
                self.fields[name].queryset = Currency.objects.filter(is_active=True)

    def clean_rate(self):
        rate = self.cleaned_data["rate"]
        if rate is not None and rate <= 0:
            raise ValidationError("The rate must be a positive number.")
        return rate

    def clean(self):
        data = super().clean()
        base = data.get("base") or getattr(self.instance, "base", None)
        quote = data.get("quote") or getattr(self.instance, "quote", None)
        if base is not None and quote is not None and base == quote:
            raise ValidationError("A rate needs two different currencies.")
        return data


@admin.register(Rate)
class RateAdmin(admin.ModelAdmin):
    form = RateForm
    list_display = ["pair", "rate_display", "source", "as_of", "age", "fetched_at"]
    list_filter = ["source", "base", "quote"]
    list_select_related = ["source"]
    ordering = ["base__display_order", "quote__display_order", "source__priority"]
    search_fields = ["=base__code", "=quote__code"]
    search_help_text = "A currency code"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return ["base", "quote", "source", "as_of", "fetched_at"]
        return []

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["base", "quote", "rate"]
        return ["source", "base", "quote", "rate", "as_of", "fetched_at"]

    def has_change_permission(self, request, obj=None) -> bool:
        if obj is not None and obj.source.kind != "manual":
            return False  # a fetched rate is replaced by the next refresh
        return super().has_change_permission(request, obj)

    @admin.display(description="pair", ordering="base")
    def pair(self, obj: Rate) -> str:
        return f"{obj.base_id}/{obj.quote_id}"

    @admin.display(description="rate", ordering="rate")
    def rate_display(self, obj: Rate) -> str:
        return f"1 {obj.base_id} = {format(obj.rate.normalize(), 'f')} {obj.quote_id}"

    @admin.display(description="age")
    def age(self, obj: Rate) -> str:
        age = timesince(obj.as_of, timezone.now())
        if (timezone.now() - obj.as_of).total_seconds() > obj.source.max_age_seconds:
            return format_html('<strong class="errornote-inline">{} (too old)</strong>', age)
        return age

    def save_model(self, request, obj, form, change) -> None:
        try:
            row = rate_services.rate_set_manual(
                actor=request.user,
                base=obj.base,
                quote=obj.quote,
                rate=form.cleaned_data["rate"],
            )
        except LedgerError as exc:
            messages.error(request, str(exc))
            raise
        obj.pk, obj.source, obj.rate, obj.as_of, obj.fetched_at = (
            row.pk,
            row.source,
            row.rate,
            row.as_of,
            row.fetched_at,
        )
        obj._state.adding = False


# --- Markups ------------------------------------------------------------------------


@admin.register(Markup)
class MarkupAdmin(admin.ModelAdmin):
    list_display = ["pair", "markup_percent", "fee_percent"]
    list_filter = ["base", "quote"]
    ordering = ["base", "quote"]

    @admin.display(description="pair")
    def pair(self, obj: Markup) -> str:
        return f"{obj.base_id or 'any'} → {obj.quote_id or 'any'}"


# --- Conversions and transfers (read-only) ------------------------------------------


def _journal_link(journal_id: int | None) -> str:
    if journal_id is None:
        return "-"
    url = reverse("admin:payments_journaltransaction_change", args=[journal_id])
    return format_html('<a href="{}">#{}</a>', url, journal_id)


@admin.register(Conversion)
class ConversionAdmin(ReadOnlyAdmin):
    list_display = [
        "public_id",
        "user",
        "sold",
        "fee_display",
        "bought",
        "rate",
        "status",
        "created_at",
        "executed_at",
    ]
    list_filter = [
        "status",
        ("from_wallet__currency", admin.RelatedOnlyFieldListFilter),
        ("to_wallet__currency", admin.RelatedOnlyFieldListFilter),
        "rate_source",
        "created_at",
    ]
    list_select_related = ["user", "from_wallet__currency", "to_wallet__currency"]
    search_fields = ["=public_id", "user__email"]
    search_help_text = "Exact quote id, or the client's e-mail"
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "public_id",
        "user",
        "status",
        "sold",
        "fee_display",
        "bought",
        "mid_rate",
        "markup_percent",
        "rate",
        "rate_source",
        "rate_as_of",
        "created_at",
        "expires_at",
        "executed_at",
        "journal_link",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("user", "from_wallet__currency", "to_wallet__currency", "rate_source")
        )

    @admin.display(description="sold")
    def sold(self, obj: Conversion) -> str:
        return format_amount(obj.sell_amount, obj.from_wallet.currency)

    @admin.display(description="fee")
    def fee_display(self, obj: Conversion) -> str:
        return format_amount(obj.fee, obj.from_wallet.currency)

    @admin.display(description="bought")
    def bought(self, obj: Conversion) -> str:
        return format_amount(obj.buy_amount, obj.to_wallet.currency)

    @admin.display(description="journal")
    def journal_link(self, obj: Conversion) -> str:
        return _journal_link(obj.journal_id)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "recipient", "sent", "received", "reference", "created_at"]
    list_filter = [
        ("from_wallet__currency", admin.RelatedOnlyFieldListFilter),
        ("to_wallet__currency", admin.RelatedOnlyFieldListFilter),
        ("conversion", admin.EmptyFieldListFilter),
        "created_at",
    ]
    list_select_related = [
        "user",
        "from_wallet__currency",
        "to_wallet__currency",
        "to_wallet__owner",
    ]
    search_fields = ["user__email", "to_wallet__owner__email", "reference"]
    search_help_text = "The sender's or the recipient's e-mail, or the note"
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = [
        "user",
        "recipient",
        "sent",
        "received",
        "conversion_link",
        "reference",
        "created_at",
        "journal_link",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related(
                "user", "from_wallet__currency", "to_wallet__currency", "to_wallet__owner"
            )
        )

    @admin.display(description="to")
    def recipient(self, obj: Transfer) -> str:
        if obj.to_wallet.owner_id == obj.user_id:
            return f"own {obj.to_wallet.currency_id} wallet"
        return obj.to_wallet.owner.email

    @admin.display(description="sent")
    def sent(self, obj: Transfer) -> str:
        return format_amount(obj.amount, obj.from_wallet.currency)

    @admin.display(description="received")
    def received(self, obj: Transfer) -> str:
        return format_amount(obj.credited, obj.to_wallet.currency)

    @admin.display(description="conversion")
    def conversion_link(self, obj: Transfer) -> str:
        if obj.conversion_id is None:
            return "-"
        url = reverse("admin:payments_conversion_change", args=[obj.conversion_id])
        return format_html('<a href="{}">quote #{}</a>', url, obj.conversion_id)

    @admin.display(description="journal")
    def journal_link(self, obj: Transfer) -> str:
        return _journal_link(obj.journal_id)
