"""Trading platforms, account types, instruments and trading accounts in the admin.

- **Platforms**: the implementation is chosen from ``accounts.platforms.GATEWAYS``
  (with its label); the settings are JSON, checked for the keys the gateway
  requires; each secret the gateways read is a write-only field, stored
  encrypted by ``platform_secrets_set`` and never shown back (the page says
  only which are set). The deal cursor, last sync and last error are
  read-only; "Sync deals now" calls the same service as the beat task.
- **Account types**: leverage choices edited as a comma list ("30, 50, 100"),
  the default among them. Once accounts were opened with a type, what those
  accounts copied from it (platform, live/demo, currency, digits) is fixed.
- **Instruments**: plain configuration, filtered by group.
- **Trading accounts**: read-only (they are opened through the service, by
  the trader), never deleted; a list with the cached figures, filters,
  search and an export (``accounts.export_tradingaccount``). A sales manager
  sees only the accounts of the clients assigned to them, as for clients.

Configuration changes (platforms, types, instruments) are in the audit log;
the encrypted secrets and the sync bookkeeping are not.
"""

from __future__ import annotations

import logging

from auditlog.registry import auditlog
from django import forms
from django.contrib import admin, messages
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from import_export import fields, resources, widgets
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from backoffice.money import from_minor
from backoffice.secrets import SecretError, decrypt

from ..models import AccountType, Instrument, Platform, TradingAccount
from ..platforms import GATEWAYS
from ..selectors.trading import money_display, trading_accounts_visible_to
from ..services.trading import platform_secrets_set

log = logging.getLogger(__name__)

auditlog.register(
    Platform, exclude_fields=["secrets", "deals_cursor", "deals_synced_at", "last_error"]
)
auditlog.register(AccountType)
auditlog.register(Instrument)


# --- Platforms -------------------------------------------------------------------------


def _gateway(kind: str):
    """The gateway class of ``kind``, or None when it cannot be loaded."""
    try:
        return GATEWAYS.get(kind)
    except (KeyError, ImportError):
        return None


def _kind_choices() -> list[tuple[str, str]]:
    choices = []
    for kind, _ in GATEWAYS.choices():
        gateway = _gateway(kind)
        label = (gateway.label or kind) if gateway else f"{kind} (not installed)"
        choices.append((kind, f"{label} ({kind})" if gateway else label))
    return choices


def _secret_names(kinds: list[str]) -> dict[str, list[str]]:
    """Each secret name the ``kinds`` read, with the kinds that read it."""
    names: dict[str, list[str]] = {}
    for kind in kinds:
        gateway = _gateway(kind)
        for name in getattr(gateway, "secret_names", ()) or ():
            names.setdefault(name, []).append(kind)
    return names


def _stored_secrets(platform: Platform) -> dict[str, str]:
    try:
        return decrypt(platform.secrets) if platform.pk else {}
    except SecretError:
        return {}


class PlatformForm(forms.ModelForm):
    """The platform's configuration, plus a write-only field for each secret
    (blank keeps what is stored) and boxes to remove stored ones. A new
    platform offers the secrets of every implementation; an existing one,
    whose implementation is fixed, only its own."""

    kind = forms.ChoiceField(label="Implementation")
    clear_secrets = forms.MultipleChoiceField(
        label="Remove secrets",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick to delete a stored secret.",
    )

    class Meta:
        model = Platform
        fields = ["identifier", "name", "kind", "enabled", "settings"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if "kind" in self.fields:
            self.fields["kind"].choices = _kind_choices()
        if "settings" in self.fields:
            self.fields["settings"].help_text = self._settings_help()
        kinds = [self.instance.kind] if self.instance.pk else [k for k, _ in GATEWAYS.choices()]
        stored = _stored_secrets(self.instance)
        self.secret_fields: list[str] = []
        for name, used_by in _secret_names(kinds).items():
            field_name = f"secret_{name}"
            state = "set; leave blank to keep it" if name in stored else "not set"
            used = "" if self.instance.pk else f"Used by: {', '.join(used_by)}. "
            self.fields[field_name] = forms.CharField(
                label=name.replace("_", " ").capitalize(),
                required=False,
                strip=True,
                widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
                help_text=f"{used}Currently {state}. Never shown back.",
            )
            self.secret_fields.append(field_name)
        self.fields["clear_secrets"].choices = [(name, name) for name in sorted(stored)]
        if not stored:
            del self.fields["clear_secrets"]

    @staticmethod
    def _settings_help() -> str:
        needs = []
        for kind, _ in GATEWAYS.choices():
            required = getattr(_gateway(kind), "required_settings", ()) or ()
            if required:
                needs.append(f"{kind}: {', '.join(required)}")
        text = "A JSON object."
        if needs:
            text += f" Required keys: {'; '.join(needs)}."
        return (
            text + ' Optional "server_name": the server traders type into the platform'
            "'s terminal (shown with a new account's login)."
        )

    def clean_kind(self) -> str:
        kind = self.cleaned_data["kind"]
        if _gateway(kind) is None:
            raise forms.ValidationError(f"The {kind} implementation is not installed.")
        return kind

    def clean_settings(self):
        value = self.cleaned_data.get("settings")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Settings are a JSON object, e.g. {"url": "https://…"}.')
        return value

    def clean(self):
        cleaned = super().clean()
        kind = cleaned.get("kind", self.instance.kind)
        gateway = _gateway(kind) if kind else None
        if gateway is not None and "settings" in cleaned:
            settings = cleaned.get("settings") or {}
            missing = [
                key
                for key in getattr(gateway, "required_settings", ()) or ()
                if not str(settings.get(key) or "").strip()
            ]
            if missing:
                self.add_error("settings", f"{kind} needs these settings: {', '.join(missing)}.")
        return cleaned

    def secret_values(self) -> dict[str, str]:
        return {
            name.removeprefix("secret_"): self.cleaned_data.get(name, "")
            for name in self.secret_fields
        }


@admin.register(Platform)
class PlatformAdmin(admin.ModelAdmin):
    form = PlatformForm
    list_display = [
        "name",
        "identifier",
        "kind",
        "enabled",
        "secrets_state",
        "deals_synced_at",
        "sync_state",
    ]
    list_filter = ["kind", "enabled"]
    search_fields = ["identifier", "name"]
    readonly_fields = [
        "secrets_state",
        "deals_cursor",
        "deals_synced_at",
        "last_error",
        "created_at",
    ]
    actions = ["sync_deals_now"]

    def get_fieldsets(self, request, obj=None):
        kinds = [obj.kind] if obj is not None else [k for k, _ in GATEWAYS.choices()]
        secrets = [f"secret_{name}" for name in _secret_names(kinds)]
        if obj is not None and obj.secrets:
            secrets.append("clear_secrets")
        return [
            (None, {"fields": ["identifier", "name", "kind", "enabled", "created_at"]}),
            ("Settings", {"fields": ["settings"]}),
            ("Secrets (encrypted, never shown)", {"fields": ["secrets_state", *secrets]}),
            ("Deal sync", {"fields": ["deals_synced_at", "deals_cursor", "last_error"]}),
        ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        # The secret fields are added by the form itself, per instance.
        kwargs["fields"] = None
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            # Accounts and deals belong to the platform as it was configured.
            return [*self.readonly_fields, "identifier", "kind"]
        return self.readonly_fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # accounts and deals refer to it: disable instead

    @admin.display(description="secrets set")
    def secrets_state(self, obj: Platform) -> str:
        if obj is None or not obj.secrets:
            return "none"
        stored = _stored_secrets(obj)
        return ", ".join(sorted(stored)) or "none (cannot be decrypted)"

    @admin.display(description="sync")
    def sync_state(self, obj: Platform) -> str:
        if obj.last_error:
            return format_html('<span title="{}">error</span>', obj.last_error)
        return "ok" if obj.deals_synced_at else "-"

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        values = form.secret_values()
        clear = form.cleaned_data.get("clear_secrets") or []
        if any(values.values()) or clear:
            platform_secrets_set(actor=request.user, platform=obj, values=values, clear=clear)

    @admin.action(description="Sync deals now", permissions=["change"])
    def sync_deals_now(self, request, queryset) -> None:
        try:
            from ..services.deals import deals_sync_platform
        except ImportError:
            self.message_user(request, "The deal sync is not installed.", messages.ERROR)
            return
        for platform in queryset.order_by("pk"):
            if not platform.enabled:
                self.message_user(request, f"{platform}: disabled, not synced.", messages.WARNING)
                continue
            try:
                result = deals_sync_platform(platform=platform)
            except Exception as exc:  # an outside system: say it, never a 500
                log.exception("Deal sync of %s from the admin failed", platform.identifier)
                self.message_user(request, f"{platform}: sync failed: {exc}", messages.ERROR)
                continue
            done = f": {result}" if result not in (None, "") else ""
            self.message_user(request, f"{platform}: deals synced{done}.", messages.SUCCESS)


# --- Account types ---------------------------------------------------------------------


class LeverageChoicesField(forms.CharField):
    """A list of leverages as a comma list: ``"30, 50, 100"`` ↔ ``[30, 50, 100]``."""

    def prepare_value(self, value):
        if isinstance(value, (list, tuple)):
            return ", ".join(str(x) for x in value)
        return value

    def to_python(self, value) -> list[int]:
        text = super().to_python(value)
        if isinstance(text, (list, tuple)):
            parts = [str(x) for x in text]
        else:
            parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        leverages = []
        for part in parts:
            bare = part.removeprefix("1:")
            if not bare.isdigit() or int(bare) <= 0:
                raise forms.ValidationError(
                    f"“{part}” is not a leverage: use whole numbers above zero, e.g. 30, 100, 500."
                )
            leverages.append(int(bare))
        if not leverages:
            raise forms.ValidationError("Give at least one leverage.")
        return sorted(set(leverages))


class AccountTypeForm(forms.ModelForm):
    leverage_choices = LeverageChoicesField(
        label="Leverage choices",
        help_text="The leverages a trader may pick, separated by commas, e.g. 30, 50, 100, 500.",
    )

    class Meta:
        model = AccountType
        fields = [
            "name",
            "platform",
            "is_demo",
            "is_active",
            "display_order",
            "platform_group",
            "currency",
            "currency_digits",
            "leverage_choices",
            "default_leverage",
            "min_first_transfer",
            "demo_balance",
            "description",
        ]

    def clean_currency(self) -> str:
        code = (self.cleaned_data.get("currency") or "").strip().upper()
        if not (code.isalnum() and 3 <= len(code) <= 8):
            raise forms.ValidationError("An ISO-style currency code of 3 to 8 letters, e.g. USD.")
        return code

    def clean(self):
        cleaned = super().clean()
        choices, default = cleaned.get("leverage_choices"), cleaned.get("default_leverage")
        if choices and default is not None and default not in choices:
            self.add_error(
                "default_leverage",
                f"The default must be one of the choices ({', '.join(map(str, choices))}).",
            )
        return cleaned


# Copied into each account when it is opened: fixed once a type is used.
_COPIED_INTO_ACCOUNTS = ["platform", "is_demo", "currency", "currency_digits"]


@admin.register(AccountType)
class AccountTypeAdmin(admin.ModelAdmin):
    form = AccountTypeForm
    list_display = [
        "name",
        "platform",
        "live_or_demo",
        "currency",
        "leverages",
        "default_leverage",
        "min_first_transfer",
        "display_order",
        "is_active",
    ]
    list_filter = ["platform", "is_demo", "currency", "is_active"]
    list_select_related = ["platform"]
    search_fields = ["name", "platform_group"]
    ordering = ["display_order", "name"]
    fieldsets = [
        (None, {"fields": ["name", "platform", "is_demo", "is_active", "display_order"]}),
        (
            "On the platform",
            {"fields": ["platform_group", "currency", "currency_digits"]},
        ),
        ("Leverage", {"fields": ["leverage_choices", "default_leverage"]}),
        ("Money", {"fields": ["min_first_transfer", "demo_balance"]}),
        ("Shown to the trader", {"fields": ["description"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and TradingAccount.objects.filter(account_type=obj).exists():
            return _COPIED_INTO_ACCOUNTS
        return []

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # accounts refer to it: make it inactive instead

    @admin.display(description="kind", ordering="is_demo")
    def live_or_demo(self, obj: AccountType) -> str:
        return "demo" if obj.is_demo else "live"

    @admin.display(description="leverage choices")
    def leverages(self, obj: AccountType) -> str:
        return ", ".join(f"1:{x}" for x in obj.leverage_choices or []) or "-"


# --- Instruments -----------------------------------------------------------------------


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = [
        "symbol",
        "description",
        "group",
        "contract_size",
        "digits",
        "profit_currency",
        "spread_markup",
        "is_active",
    ]
    list_filter = ["group", "is_active", "profit_currency"]
    search_fields = ["symbol", "description"]
    ordering = ["group", "symbol"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deals name it by symbol: make it inactive instead


# --- Trading accounts --------------------------------------------------------------------


class TradingAccountResource(resources.ModelResource):
    """The export: one row per account, figures in major units."""

    client = fields.Field(attribute="user__email", column_name="client")
    platform = fields.Field(attribute="platform__identifier", column_name="platform")
    account_type = fields.Field(attribute="account_type__name", column_name="account_type")
    balance = fields.Field(column_name="balance", widget=widgets.DecimalWidget())
    equity = fields.Field(column_name="equity", widget=widgets.DecimalWidget())
    margin = fields.Field(column_name="margin", widget=widgets.DecimalWidget())
    free_margin = fields.Field(column_name="free_margin", widget=widgets.DecimalWidget())

    class Meta:
        model = TradingAccount
        fields = [
            "login",
            "client",
            "platform",
            "account_type",
            "is_demo",
            "currency",
            "leverage",
            "status",
            "balance",
            "equity",
            "margin",
            "free_margin",
            "margin_level",
            "state_updated_at",
            "created_at",
        ]
        export_order = fields

    def dehydrate_balance(self, account: TradingAccount):
        return from_minor(account.balance, account.currency_digits)

    def dehydrate_equity(self, account: TradingAccount):
        return from_minor(account.equity, account.currency_digits)

    def dehydrate_margin(self, account: TradingAccount):
        return from_minor(account.margin, account.currency_digits)

    def dehydrate_free_margin(self, account: TradingAccount):
        return from_minor(account.free_margin, account.currency_digits)


class AccountCurrencyFilter(admin.SimpleListFilter):
    title = "currency"
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        codes = AccountType.objects.order_by("currency").values_list("currency", flat=True)
        return [(code, code) for code in dict.fromkeys(codes)]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value()) if self.value() else queryset


@admin.register(TradingAccount)
class TradingAccountAdmin(ExportMixin, admin.ModelAdmin):
    """Read-only: accounts are opened by traders through the service, and
    their figures come from the platform."""

    resource_classes = [TradingAccountResource]
    formats = [f for f in (CSV, XLSX) if f.is_available()]
    list_display = [
        "login",
        "client",
        "platform",
        "type_name",
        "live_or_demo",
        "currency",
        "leverage_display",
        "balance_display",
        "equity_display",
        "state_updated_at",
        "status",
    ]
    # No date hierarchy and no distinct-values filter: each would scan the
    # whole table on every page; the choices come from the small tables.
    list_filter = [
        "platform",
        "is_demo",
        "status",
        AccountCurrencyFilter,
        "account_type",
        "created_at",
    ]
    list_select_related = ["user", "platform", "account_type"]
    search_fields = ["=login", "user__email"]
    search_help_text = "Exact login, or the client's e-mail"
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    fields = [
        "login",
        "client_link",
        "platform",
        "account_type",
        "live_or_demo",
        "status",
        "currency",
        "leverage_display",
        "balance_display",
        "equity_display",
        "margin_display",
        "free_margin_display",
        "margin_level",
        "state_updated_at",
        "created_at",
        "deals_link",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return trading_accounts_visible_to(staff=request.user).select_related(
            "user", "platform", "account_type"
        )

    def has_add_permission(self, request) -> bool:
        return False  # opened by the trader, through the service

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    # Exporting needs accounts.export_tradingaccount (IMPORT_EXPORT_EXPORT_PERMISSION_CODE).

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: TradingAccount) -> str:
        return obj.user.email

    @admin.display(description="client")
    def client_link(self, obj: TradingAccount) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user.email)

    @admin.display(description="account type", ordering="account_type__name")
    def type_name(self, obj: TradingAccount) -> str:
        return obj.account_type.name

    @admin.display(description="kind", ordering="is_demo")
    def live_or_demo(self, obj: TradingAccount) -> str:
        return "demo" if obj.is_demo else "live"

    @admin.display(description="leverage", ordering="leverage")
    def leverage_display(self, obj: TradingAccount) -> str:
        return f"1:{obj.leverage}"

    def _money(self, obj: TradingAccount, minor: int) -> str:
        return f"{money_display(minor, obj.currency_digits)} {obj.currency}"

    @admin.display(description="balance", ordering="balance")
    def balance_display(self, obj: TradingAccount) -> str:
        return self._money(obj, obj.balance)

    @admin.display(description="equity", ordering="equity")
    def equity_display(self, obj: TradingAccount) -> str:
        return self._money(obj, obj.equity)

    @admin.display(description="margin")
    def margin_display(self, obj: TradingAccount) -> str:
        return self._money(obj, obj.margin)

    @admin.display(description="free margin")
    def free_margin_display(self, obj: TradingAccount) -> str:
        return self._money(obj, obj.free_margin)

    @admin.display(description="deals")
    def deals_link(self, obj: TradingAccount) -> str:
        try:
            url = reverse("admin:accounts_deal_changelist")
        except NoReverseMatch:
            return "-"
        return format_html(
            '<a href="{}?account__id__exact={}">Deals of this account</a>', url, obj.pk
        )
