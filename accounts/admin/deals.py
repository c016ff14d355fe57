"""Deals in the admin: read-only, filtered, exported, and imported from reports.

- **Deals** come only from the platforms (the deal sync) or from report
  files: nobody adds, changes or deletes one here. The list is built for a
  table of millions of rows: its filters take their choices from small
  tables (platforms, instruments) or none at all (side, close time), search
  is by exact ticket, login or e-mail (indexed), no full count is shown and
  the unfiltered page count is PostgreSQL's estimate. A sales manager sees
  only the deals of the clients assigned to them, as for clients and
  trading accounts.
- **Export** (CSV or XLSX) goes through django-import-export with
  :class:`~accounts.resources.DealResource` and needs ``accounts.export_deal``.
  import-export builds the whole file in memory: fine for a filtered list,
  not for every deal of a large broker (that is a report's job).
- **Import deal report** (``accounts.import_deal``): a platform and a CSV or
  XLSX file, checked and saved whole or not at all by
  ``accounts.services.deals.deals_import_file``; the page shows what was
  added, what was already there, and each bad row by its line.
"""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from .. import roles
from ..models import Deal, Instrument, Platform, User
from ..resources import DealResource
from ..selectors import staff_role_names
from ..selectors.trading import money_display
from ..services.deals import ReportRefused, deals_import_file

IMPORT_PERMISSION = "accounts.import_deal"


def _number(value: Decimal, places: int) -> str:
    """A volume or price without the column's trailing zeros, at least
    ``places`` decimals: 0.1000 → 0.10, 2310.15000000 → 2310.15."""
    value = value.normalize()
    if -value.as_tuple().exponent < places:
        value = value.quantize(Decimal(1).scaleb(-places))
    return f"{value:f}"


def deals_visible_to(*, staff: User) -> QuerySet[Deal]:
    """The deals a staff member may see: those of the clients they may see
    (``accounts.selectors.clients_visible_to``'s rule)."""
    qs = Deal.objects.all()
    if staff.is_superuser or staff_role_names(staff) & set(roles.ALL_CLIENTS_ROLES):
        return qs
    return qs.filter(client__profile__manager=staff)


class EstimatedCountPaginator(Paginator):
    """Counts an unfiltered deal list from PostgreSQL's statistics instead of
    ``COUNT(*)`` over millions of rows (the page links are then approximate);
    a filtered list is counted exactly."""

    @cached_property
    def count(self) -> int:
        query = getattr(self.object_list, "query", None)
        if connection.vendor == "postgresql" and query is not None and not query.where:
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [Deal._meta.db_table],
                )
                row = cur.fetchone()
            if row and row[0] > 100_000:
                return row[0]
        return super().count


class SymbolFilter(admin.SimpleListFilter):
    """The instruments' symbols (a small table), not ``SELECT DISTINCT`` over the deals."""

    title = "symbol"
    parameter_name = "symbol"

    def lookups(self, request, model_admin):
        symbols = Instrument.objects.order_by("symbol").values_list("symbol", flat=True)
        return [(s, s) for s in symbols]

    def queryset(self, request, queryset):
        return queryset.filter(symbol=self.value()) if self.value() else queryset


class DealImportForm(forms.Form):
    platform = forms.ModelChoiceField(
        queryset=Platform.objects.order_by("name"),
        help_text="The platform the report comes from: its logins and tickets are this platform's.",
    )
    file = forms.FileField(
        label="Deal report",
        help_text=(
            "CSV (UTF-8) or XLSX. First row: ticket, login, symbol, side, volume, open_time, "
            "close_time, open_price, close_price, profit, commission, swap (commission and swap "
            "may be left out; other columns are ignored). Money in the account's currency."
        ),
    )


@admin.register(Deal)
class DealAdmin(ExportMixin, admin.ModelAdmin):
    """Read-only deals; export for ``accounts.export_deal``; the report
    import page for ``accounts.import_deal``."""

    resource_classes = [DealResource]
    formats = [f for f in (CSV, XLSX) if f.is_available()]
    # Extends import-export's export list (which extends the admin's) with
    # the "Import deal report" button.
    import_export_change_list_template = "admin/accounts/deal/change_list.html"
    list_display = [
        "ticket",
        "login",
        "client_email",
        "symbol",
        "side",
        "volume_display",
        "closed",
        "profit_display",
    ]
    list_filter = ["platform", "side", "close_time", SymbolFilter]
    list_select_related = ["account", "client"]
    search_fields = ["=ticket", "=account__login", "=client__email"]
    search_help_text = "Exact ticket, login or client's e-mail"
    ordering = ["-id"]
    show_full_result_count = False
    paginator = EstimatedCountPaginator
    list_per_page = 50
    fields = [
        "ticket",
        "platform",
        "account_link",
        "client_link",
        "symbol",
        "side",
        "volume_display",
        "open_time_display",
        "close_time_display",
        "open_price_display",
        "close_price_display",
        "profit_display",
        "commission_display",
        "swap_display",
        "net_display",
        "imported_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return deals_visible_to(staff=request.user).select_related("account", "client", "platform")

    def get_export_queryset(self, request):
        return super().get_export_queryset(request).select_related("account", "client", "platform")

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # The trading account page links to "Deals of this account".
        if lookup in ("account__id__exact", "client__id__exact"):
            return True
        return super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request) -> bool:
        return False  # deals come from the platforms and their reports

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    # Exporting needs accounts.export_deal (IMPORT_EXPORT_EXPORT_PERMISSION_CODE).

    @admin.display(description="login", ordering="account__login")
    def login(self, obj: Deal) -> str:
        return obj.account.login

    @admin.display(description="client", ordering="client__email")
    def client_email(self, obj: Deal) -> str:
        return obj.client.email

    @admin.display(description="volume", ordering="volume")
    def volume_display(self, obj: Deal) -> str:
        return _number(obj.volume, 2)

    @admin.display(description="open price")
    def open_price_display(self, obj: Deal) -> str:
        return _number(obj.open_price, 2)

    @admin.display(description="close price")
    def close_price_display(self, obj: Deal) -> str:
        return _number(obj.close_price, 2)

    @admin.display(description="opened (UTC)", ordering="open_time")
    def open_time_display(self, obj: Deal) -> str:
        return f"{obj.open_time.astimezone(UTC):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="closed (UTC)", ordering="close_time")
    def close_time_display(self, obj: Deal) -> str:
        return f"{obj.close_time.astimezone(UTC):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="closed (UTC)", ordering="close_time")
    def closed(self, obj: Deal) -> str:
        return f"{obj.close_time.astimezone(UTC):%Y-%m-%d %H:%M}"

    def _money(self, obj: Deal, minor: int) -> str:
        return f"{money_display(minor, obj.account.currency_digits)} {obj.account.currency}"

    @admin.display(description="profit", ordering="profit")
    def profit_display(self, obj: Deal) -> str:
        return self._money(obj, obj.profit)

    @admin.display(description="commission")
    def commission_display(self, obj: Deal) -> str:
        return self._money(obj, obj.commission)

    @admin.display(description="swap")
    def swap_display(self, obj: Deal) -> str:
        return self._money(obj, obj.swap)

    @admin.display(description="net result")
    def net_display(self, obj: Deal) -> str:
        return self._money(obj, obj.net)

    @admin.display(description="account")
    def account_link(self, obj: Deal) -> str:
        url = reverse("admin:accounts_tradingaccount_change", args=[obj.account_id])
        return format_html('<a href="{}">{}</a>', url, obj.account)

    @admin.display(description="client")
    def client_link(self, obj: Deal) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.client_id])
        return format_html('<a href="{}">{}</a>', url, obj.client.email)

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_import_deals": request.user.has_perm(IMPORT_PERMISSION),
        }
        return super().changelist_view(request, extra_context)

    # --- Import deal report -------------------------------------------------------

    def get_urls(self):
        return [
            path(
                "import-report/",
                self.admin_site.admin_view(self.import_report_view),
                name="accounts_deal_import_report",
            ),
            *super().get_urls(),
        ]

    def import_report_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(IMPORT_PERMISSION):
            raise PermissionDenied
        report = None
        if request.method == "POST":
            form = DealImportForm(request.POST, request.FILES)
            if form.is_valid():
                upload = form.cleaned_data["file"]
                try:
                    report = deals_import_file(
                        actor=request.user,
                        platform=form.cleaned_data["platform"],
                        file=upload,
                        filename=upload.name,
                    )
                except ReportRefused as exc:
                    form.add_error("file", str(exc))
                else:
                    level = messages.SUCCESS if report.ok else messages.ERROR
                    self.message_user(request, f"{report.summary()} ({upload.name})", level)
        else:
            form = DealImportForm()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Import deal report",
            "form": form,
            "report": report,
            "max_megabytes": settings.DEAL_IMPORT_MAX_BYTES // (1024 * 1024),
        }
        return TemplateResponse(request, "admin/accounts/deal/import_report.html", context)
