"""The ledger in the admin: read-only, except for the two things Finance does
by hand, each through its service: adjust a wallet, reverse a transaction.

Entries are append-only and never shown as editable; balances change only by
posting. Currencies are configuration, edited by the Administrator.
"""

from __future__ import annotations

from auditlog.registry import auditlog
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Case, F, OuterRef, Subquery, Sum, When
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from import_export import fields, resources, widgets
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from .. import selectors, services
from ..admin_forms import AdjustBalanceForm, ReverseTransactionForm
from ..exceptions import IdempotencyConflict, InsufficientFunds, LedgerError
from ..models import Currency, Entry, JournalTransaction, LedgerAccount

# Entries and journal transactions are immutable and carry their actor; a
# currency is configuration whose changes belong in the audit log.
auditlog.register(Currency)

LATEST_ENTRIES = 50


def format_amount(minor: int | None, currency: Currency) -> str:
    """Minor units as the currency's major units: ``-1,234.50 USD``."""
    if minor is None:
        return ""
    return f"{currency.format_minor(minor):,} {currency.code}"


def _balance_minor() -> Case:
    """A wallet's running balance; a system account's sum of its entries.

    One correlated subquery, evaluated only for system accounts (there are
    few), so a changelist page costs one query whatever its length.
    """
    entries_sum = Subquery(
        Entry.objects.filter(account=OuterRef("pk"))
        .order_by()
        .values("account")
        .annotate(total=Sum("amount"))
        .values("total"),
        output_field=models.BigIntegerField(),
    )
    return Case(
        When(kind=LedgerAccount.SYSTEM, then=Coalesce(entries_sum, 0)),
        default=F("balance"),
        output_field=models.BigIntegerField(),
    )


def _account_label(account: LedgerAccount) -> str:
    if account.is_wallet:
        return f"{account.owner.email} · {account.currency_id} wallet"
    return f"{account.code} ({account.currency_id})"


def _explain(exc: LedgerError) -> str:
    """A refused posting, in words (and major units) for staff."""
    if isinstance(exc, InsufficientFunds):
        currency = Currency.objects.get(pk=exc.wallet.currency_id)
        return (
            f"Insufficient funds in wallet #{exc.wallet.pk}: "
            f"{format_amount(exc.needed, currency)} needed, "
            f"{format_amount(exc.available, currency)} available. Nothing was posted."
        )
    return f"{exc} Nothing was posted."


class ReadOnlyAdmin(admin.ModelAdmin):
    """Seen, never added, changed or deleted here: money moves by posting."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Currency)
class CurrencyAdmin(admin.ModelAdmin):
    """Edited by the Administrator; Finance reads."""

    list_display = ["code", "name", "symbol", "exponent", "kind", "display_order", "is_active"]
    list_filter = ["kind", "is_active"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # The ledger stores minor units: another exponent would silently
        # rescale every amount already posted in this currency.
        return ["code", "exponent"]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # referenced by the ledger: deactivate instead


@admin.register(LedgerAccount)
class LedgerAccountAdmin(ReadOnlyAdmin):
    """Client wallets and system accounts, with their latest entries."""

    list_display = ["holder", "kind", "currency", "balance_display", "created_at"]
    list_filter = ["kind", "currency"]
    list_select_related = ["owner", "currency"]
    search_fields = ["owner__email", "code"]
    search_help_text = "Owner's e-mail or system account code"
    ordering = ["-id"]
    show_full_result_count = False
    readonly_fields = [
        "kind",
        "owner_link",
        "code",
        "currency_name",
        "balance_display",
        "created_at",
        "latest_entries",
    ]

    def get_fieldsets(self, request, obj=None):
        holder = "owner_link" if obj is None or obj.is_wallet else "code"
        return [
            (None, {"fields": ["kind", holder, "currency_name", "balance_display", "created_at"]}),
            (f"Latest entries (up to {LATEST_ENTRIES})", {"fields": ["latest_entries"]}),
        ]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("owner", "currency")
            .annotate(balance_minor=_balance_minor())
        )

    @admin.display(description="owner / code", ordering="owner__email")
    def holder(self, obj: LedgerAccount) -> str:
        return obj.owner.email if obj.is_wallet else obj.code

    @admin.display(description="owner")
    def owner_link(self, obj: LedgerAccount) -> str:
        if obj.owner_id is None:
            return "-"
        url = reverse("admin:accounts_client_change", args=[obj.owner_id])
        return format_html('<a href="{}">{}</a>', url, obj.owner.email)

    @admin.display(description="currency")
    def currency_name(self, obj: LedgerAccount) -> str:
        return f"{obj.currency.code} · {obj.currency.name}"

    @admin.display(description="balance", ordering="balance_minor")
    def balance_display(self, obj: LedgerAccount) -> str:
        return format_amount(obj.balance_minor, obj.currency)

    @admin.display(description="entries, newest first")
    def latest_entries(self, obj: LedgerAccount) -> str:
        page = selectors.wallet_history(wallet=obj, limit=LATEST_ENTRIES)
        rows = [
            (
                timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                reverse("admin:payments_journaltransaction_change", args=[e.transaction_id]),
                e.transaction_id,
                e.transaction.kind,
                e.transaction.description,
                format_amount(e.amount, obj.currency),
                format_amount(e.balance_after, obj.currency),
            )
            for e in page.entries
        ]
        if not rows:
            return "No entries yet."
        return format_html(
            '<table class="ledger-entries"><thead><tr><th>when</th><th>transaction</th>'
            '<th>kind</th><th>description</th><th class="amount">amount</th>'
            '<th class="amount">balance after</th>'
            "</tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "",
                '<tr><td class="when">{}</td><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td>'
                '<td class="amount">{}</td><td class="amount">{}</td></tr>',
                rows,
            ),
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # The object the change view already loaded: no second query for it.
        context["subtitle"] = _account_label(obj) if obj is not None else None
        context["can_adjust"] = (
            obj is not None and obj.is_wallet and request.user.has_perm("payments.adjust_wallet")
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/adjust/",
                self.admin_site.admin_view(self.adjust_view),
                name="payments_ledgeraccount_adjust",
            ),
            *super().get_urls(),
        ]

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Show the form, then a confirmation, then post through the service."""
        if not request.user.has_perm("payments.adjust_wallet"):
            raise PermissionDenied
        wallet = self.get_object(request, object_id)
        if wallet is None or not wallet.is_wallet:
            raise Http404("No such wallet.")
        if request.method != "POST":
            return self._adjust_page(request, wallet, AdjustBalanceForm.fresh(wallet=wallet))
        confirmed = "confirm" in request.POST
        form = AdjustBalanceForm(request.POST, wallet=wallet, check_funds=not confirmed)
        if not form.is_valid() or not confirmed:
            confirming = form.is_valid() and "edit" not in request.POST
            return self._adjust_page(request, wallet, form, confirming=confirming)
        try:
            journal = services.wallet_adjust(
                actor=request.user,
                wallet=wallet,
                amount=form.cleaned_data["amount"],
                reason=form.cleaned_data["reason"],
                idempotency_key=f"admin-adjust:{form.cleaned_data['idempotency_key']}",
            )
        except IdempotencyConflict:
            form.add_error(
                None,
                "This form was already used for another adjustment. "
                "Open “Adjust balance” again to post a new one. Nothing was posted.",
            )
            return self._adjust_page(request, wallet, form)
        except LedgerError as exc:
            form.add_error(None, _explain(exc))
            return self._adjust_page(request, wallet, form)
        if journal.replayed:
            messages.warning(
                request,
                f"This adjustment was already posted as transaction #{journal.pk}; "
                "it was not posted again.",
            )
        else:
            verb = "Credited" if form.minor_amount > 0 else "Debited"
            amount = format_amount(abs(form.minor_amount), wallet.currency)
            messages.success(request, f"{verb} {amount} (transaction #{journal.pk}).")
        return HttpResponseRedirect(
            reverse("admin:payments_ledgeraccount_change", args=[wallet.pk])
        )

    def _adjust_page(self, request, wallet, form, *, confirming: bool = False):
        summary = None
        if confirming:
            minor = form.minor_amount
            summary = {
                "verb": "Credit" if minor > 0 else "Debit",
                "amount": format_amount(abs(minor), wallet.currency),
                "balance": format_amount(wallet.balance, wallet.currency),
                "balance_after": format_amount(wallet.balance + minor, wallet.currency),
            }
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": wallet,
            "label": _account_label(wallet),
            "title": "Adjust balance",
            "subtitle": _account_label(wallet),
            "balance": format_amount(wallet.balance, wallet.currency),
            "form": form,
            "confirming": confirming,
            "summary": summary,
        }
        return TemplateResponse(request, "admin/payments/ledgeraccount/adjust.html", context)


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ["account_link", "account_kind", "amount_display", "balance_after_display"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("account__owner", "currency")
            .order_by("id")
        )

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="account")
    def account_link(self, entry: Entry) -> str:
        account = entry.account
        url = reverse("admin:payments_ledgeraccount_change", args=[account.pk])
        label = account.owner.email if account.is_wallet else account.code
        return format_html('<a href="{}">{}</a>', url, label)

    @admin.display(description="kind")
    def account_kind(self, entry: Entry) -> str:
        return entry.account.get_kind_display()

    @admin.display(description="amount")
    def amount_display(self, entry: Entry) -> str:
        return format_amount(entry.amount, entry.currency)

    @admin.display(description="balance after")
    def balance_after_display(self, entry: Entry) -> str:
        return format_amount(entry.balance_after, entry.currency)


def _reversal_refusal(journal: JournalTransaction) -> str | None:
    """Why this transaction cannot be reversed, or None."""
    if journal.reverses_id is not None:
        return (
            f"Transaction #{journal.pk} is itself a reversal and cannot be reversed; "
            "post a new transaction instead."
        )
    reversal = JournalTransaction.objects.filter(reverses=journal).only("pk").first()
    if reversal is not None:
        return f"Transaction #{journal.pk} was already reversed by #{reversal.pk}."
    return services.ledger.workflow_reversal_refusal(journal) or None


@admin.register(JournalTransaction)
class JournalTransactionAdmin(ReadOnlyAdmin):
    """Journal transactions with their entries; Finance may reverse one."""

    list_display = ["id", "kind", "description", "actor", "created_at"]
    list_display_links = ["id", "kind"]
    list_filter = ["kind"]
    list_select_related = ["actor"]
    search_fields = ["=idempotency_key", "description"]
    search_help_text = "Exact idempotency key, or words of the description"
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [EntryInline]
    fields = [
        "kind",
        "description",
        "actor",
        "created_at",
        "idempotency_key",
        "metadata",
        "reverses_link",
        "reversed_by_link",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("actor")

    @admin.display(description="reverses")
    def reverses_link(self, journal: JournalTransaction) -> str:
        if journal.reverses_id is None:
            return "-"
        url = reverse("admin:payments_journaltransaction_change", args=[journal.reverses_id])
        return format_html('<a href="{}">#{}</a>', url, journal.reverses_id)

    @admin.display(description="reversed by")
    def reversed_by_link(self, journal: JournalTransaction) -> str:
        reversal = JournalTransaction.objects.filter(reverses=journal).only("pk").first()
        if reversal is None:
            return "-"
        url = reverse("admin:payments_journaltransaction_change", args=[reversal.pk])
        return format_html('<a href="{}">#{}</a>', url, reversal.pk)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_reverse"] = (
            obj is not None
            and request.user.has_perm("payments.reverse_transaction")
            and _reversal_refusal(obj) is None
        )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/reverse/",
                self.admin_site.admin_view(self.reverse_view),
                name="payments_journaltransaction_reverse",
            ),
            *super().get_urls(),
        ]

    def reverse_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Ask for the reason, then post the mirror image through the service."""
        if not request.user.has_perm("payments.reverse_transaction"):
            raise PermissionDenied
        journal = self.get_object(request, object_id)
        if journal is None:
            raise Http404("No such transaction.")
        change_url = reverse("admin:payments_journaltransaction_change", args=[journal.pk])
        refusal = _reversal_refusal(journal)
        if refusal is not None:
            messages.error(request, refusal)
            return HttpResponseRedirect(change_url)
        form = ReverseTransactionForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            try:
                reversal = services.ledger_reverse(
                    journal=journal, actor=request.user, reason=form.cleaned_data["reason"]
                )
            except IdempotencyConflict:  # reversed meanwhile, with another reason
                messages.error(request, f"Transaction #{journal.pk} was already reversed.")
                return HttpResponseRedirect(change_url)
            except LedgerError as exc:
                form.add_error(None, _explain(exc))
            else:
                if reversal.replayed:  # reversed meanwhile
                    messages.error(
                        request,
                        f"Transaction #{journal.pk} was already reversed by #{reversal.pk}.",
                    )
                else:
                    messages.success(
                        request, f"Transaction #{journal.pk} reversed by #{reversal.pk}."
                    )
                return HttpResponseRedirect(change_url)
        entries = journal.entries.select_related("account__owner", "currency").order_by("id")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": journal,
            "title": f"Reverse transaction #{journal.pk}",
            "subtitle": journal.description,
            "form": form,
            "entries": [
                {
                    "account": _account_label_for_entry(e),
                    "amount": format_amount(e.amount, e.currency),
                    "mirror": format_amount(-e.amount, e.currency),
                }
                for e in entries
            ],
        }
        return TemplateResponse(request, "admin/payments/journaltransaction/reverse.html", context)


def _account_label_for_entry(entry: Entry) -> str:
    account = entry.account
    return account.owner.email if account.is_wallet else f"{account.code} (system)"


# --- Entries: the ledger line by line, filtered and exported ------------------------


class EntryResource(resources.ModelResource):
    """The export of ledger entries: one row per entry, amounts in major units."""

    transaction_id = fields.Field(attribute="transaction_id", column_name="transaction")
    date = fields.Field(attribute="created_at", column_name="date")
    kind = fields.Field(attribute="transaction__kind", column_name="type")
    description = fields.Field(attribute="transaction__description", column_name="description")
    account = fields.Field(column_name="account")
    client = fields.Field(attribute="account__owner__email", column_name="client")
    currency = fields.Field(attribute="currency_id", column_name="currency")
    amount = fields.Field(column_name="amount", widget=widgets.DecimalWidget())
    balance_after = fields.Field(column_name="balance_after", widget=widgets.DecimalWidget())

    class Meta:
        model = Entry
        fields = [
            "id",
            "transaction_id",
            "date",
            "kind",
            "description",
            "account",
            "client",
            "currency",
            "amount",
            "balance_after",
        ]
        export_order = fields

    def dehydrate_account(self, entry: Entry) -> str:
        return f"wallet #{entry.account_id}" if entry.account.is_wallet else entry.account.code

    def dehydrate_amount(self, entry: Entry):
        return entry.currency.format_minor(entry.amount)

    def dehydrate_balance_after(self, entry: Entry):
        if entry.balance_after is None:
            return None
        return entry.currency.format_minor(entry.balance_after)


@admin.register(Entry)
class EntryAdmin(ExportMixin, ReadOnlyAdmin):
    """Every ledger line, with filters, and the filtered lines exported as CSV
    or XLSX (django-import-export) for accounting."""

    resource_classes = [EntryResource]
    formats = [CSV, XLSX]
    list_display = [
        "id",
        "transaction_link",
        "kind",
        "account_label",
        "amount_display",
        "created_at",
    ]
    list_filter = ["currency", "account__kind", "transaction__kind"]
    list_select_related = ["transaction", "account__owner", "currency"]
    search_fields = ["=transaction__id", "=account__owner__email"]
    search_help_text = "Transaction number, or a client's exact e-mail"
    date_hierarchy = "created_at"
    show_full_result_count = False
    ordering = ["-id"]

    def get_export_queryset(self, request):
        return (
            super()
            .get_export_queryset(request)
            .select_related("transaction", "account__owner", "currency")
        )

    @admin.display(description="transaction")
    def transaction_link(self, entry: Entry) -> str:
        url = reverse("admin:payments_journaltransaction_change", args=[entry.transaction_id])
        return format_html('<a href="{}">#{}</a>', url, entry.transaction_id)

    @admin.display(description="type")
    def kind(self, entry: Entry) -> str:
        return entry.transaction.kind

    @admin.display(description="account")
    def account_label(self, entry: Entry) -> str:
        account = entry.account
        return account.owner.email if account.is_wallet else account.code

    @admin.display(description="amount")
    def amount_display(self, entry: Entry) -> str:
        return format_amount(entry.amount, entry.currency)
