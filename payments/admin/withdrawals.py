"""Withdrawals in the admin: the list (filters, search, CSV/XLSX export) and a
read-only detail page with the decisions Finance takes, each a few lines
calling its service: approve, reject (with a reason), mark paid (with the
payout reference), retry a failed automatic payout.

Nothing here edits a withdrawal: there is no change form, and no status
field anywhere. Support and Compliance read; the buttons need
``payments.approve_withdrawal`` / ``payments.pay_withdrawal`` (Finance), and
their URLs refuse anyone else (403), whatever the page showed.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST
from import_export import fields, resources, widgets
from import_export.admin import ExportMixin
from import_export.formats.base_formats import CSV, XLSX

from backoffice.money import from_minor

from ..models import Withdrawal
from ..selectors import withdrawals as selectors
from ..services import withdrawals as services
from ..services.withdrawals import APPROVE_PERMISSION, PAY_PERMISSION, WithdrawalError
from .ledger import format_amount


class WithdrawalResource(resources.ModelResource):
    """The export: one row per withdrawal, amounts as decimals in major units."""

    client = fields.Field(attribute="user__email", column_name="client")
    currency = fields.Field(attribute="wallet__currency_id", column_name="currency")
    amount = fields.Field(column_name="amount", widget=widgets.DecimalWidget())
    fee = fields.Field(column_name="fee", widget=widgets.DecimalWidget())
    total = fields.Field(column_name="total", widget=widgets.DecimalWidget())
    method = fields.Field(attribute="method__name", column_name="method")
    decided_by = fields.Field(attribute="decided_by__email", column_name="decided_by")

    class Meta:
        model = Withdrawal
        fields = [
            "reference",
            "created_at",
            "client",
            "currency",
            "amount",
            "fee",
            "total",
            "method",
            "status",
            "payout_reference",
            "decided_by",
            "decision_reason",
            "updated_at",
        ]
        export_order = fields

    def _major(self, withdrawal: Withdrawal, minor: int):
        return from_minor(minor, withdrawal.wallet.currency.exponent)

    def dehydrate_amount(self, withdrawal: Withdrawal):
        return self._major(withdrawal, withdrawal.amount)

    def dehydrate_fee(self, withdrawal: Withdrawal):
        return self._major(withdrawal, withdrawal.fee)

    def dehydrate_total(self, withdrawal: Withdrawal):
        return self._major(withdrawal, withdrawal.amount + withdrawal.fee)


@admin.register(Withdrawal)
class WithdrawalAdmin(ExportMixin, admin.ModelAdmin):
    resource_classes = [WithdrawalResource]
    # The base the export button is added to (django-import-export keeps it).
    change_list_template = "admin/payments/withdrawal/change_list.html"
    # XLSX needs openpyxl (django-import-export[xlsx]); without it, CSV only.
    export_formats = [f for f in (CSV, XLSX) if f.is_available()]
    list_display = [
        "reference",
        "client",
        "amount_display",
        "method",
        "status",
        "approvals_display",
        "created_at",
    ]
    list_filter = ["status", "method", "wallet__currency", "created_at"]
    list_select_related = ["user", "wallet__currency", "method", "decided_by"]
    search_fields = ["reference", "user__email", "payout_reference"]
    search_help_text = "Reference, client's e-mail or payout reference"
    ordering = ["-id"]
    show_full_result_count = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "reference",
                    "status",
                    "client_link",
                    "wallet_link",
                    "method",
                    "amount_display",
                    "fee_display",
                    "total_display",
                    "destination_display",
                    "created_at",
                    "updated_at",
                ]
            },
        ),
        (
            "Decision",
            {
                "fields": [
                    "approvals_panel",
                    "decided_by",
                    "decision_reason",
                    "payout_reference",
                    "journals",
                ]
            },
        ),
    ]
    readonly_fields = [
        "reference",
        "status",
        "client_link",
        "wallet_link",
        "method",
        "amount_display",
        "fee_display",
        "total_display",
        "destination_display",
        "created_at",
        "updated_at",
        "approvals_panel",
        "decided_by",
        "decision_reason",
        "payout_reference",
        "journals",
    ]

    # --- Nothing is added, edited or deleted here -------------------------------------

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_export_permission(self, request) -> bool:
        return self.has_view_permission(request)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("user", "wallet__currency", "method__provider", "decided_by")
            .annotate(approvals_count=Count("approvals"))
        )

    # --- Columns and fields ------------------------------------------------------------

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: Withdrawal) -> str:
        return obj.user.email

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Withdrawal) -> str:
        return format_amount(obj.amount, obj.wallet.currency)

    @admin.display(description="fee")
    def fee_display(self, obj: Withdrawal) -> str:
        return format_amount(obj.fee, obj.wallet.currency)

    @admin.display(description="total reserved")
    def total_display(self, obj: Withdrawal) -> str:
        return format_amount(obj.amount + obj.fee, obj.wallet.currency)

    @admin.display(description="approvals")
    def approvals_display(self, obj: Withdrawal) -> str:
        if obj.status != Withdrawal.PENDING:
            return str(obj.approvals_count) if obj.approvals_count else "-"
        return f"{obj.approvals_count} of {selectors.approvals_required(obj)}"

    @admin.display(description="client")
    def client_link(self, obj: Withdrawal) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user.email)

    @admin.display(description="wallet")
    def wallet_link(self, obj: Withdrawal) -> str:
        url = reverse("admin:payments_ledgeraccount_change", args=[obj.wallet_id])
        balance = format_amount(selectors.wallet_balance(obj.wallet), obj.wallet.currency)
        return format_html(
            '<a href="{}">{} wallet</a> · balance now {}', url, obj.wallet.currency_id, balance
        )

    @admin.display(description="paid to")
    def destination_display(self, obj: Withdrawal) -> str:
        if not obj.destination:
            return "-"
        return format_html_join(
            "",
            "<div>{}: <code>{}</code></div>",
            (
                (services.DESTINATION_LABELS.get(key, key), value)
                for key, value in obj.destination.items()
            ),
        )

    @admin.display(description="approvals so far")
    def approvals_panel(self, obj: Withdrawal) -> str:
        approvals = selectors.withdrawal_approvals(obj)
        required = selectors.approvals_required(obj)
        rows = format_html_join(
            "",
            "<div>{} · {}</div>",
            (
                (a.approver.email, timezone.localtime(a.created_at).strftime("%Y-%m-%d %H:%M"))
                for a in approvals
            ),
        )
        needed = "two different approvers" if required == 2 else "one approver"
        return format_html(
            "<div>{} of {} ({} for this amount)</div>{}",
            len(approvals),
            required,
            needed,
            rows,
        )

    @admin.display(description="ledger")
    def journals(self, obj: Withdrawal) -> str:
        links = [
            (label, reverse("admin:payments_journaltransaction_change", args=[pk]), pk)
            for label, pk in [
                ("reserved", obj.reserve_journal_id),
                ("released", obj.release_journal_id),
                ("paid out", obj.settle_journal_id),
            ]
            if pk is not None
        ]
        return format_html_join(" · ", '{} <a href="{}">#{}</a>', links)

    # --- The detail page and its actions ---------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self._decisions(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _decisions(self, request, obj: Withdrawal) -> dict:
        """Which buttons the page shows this member of staff, and why not."""
        user = request.user
        can_approve = user.has_perm(APPROVE_PERMISSION)
        can_pay = user.has_perm(PAY_PERMISSION)
        pending = obj.status == Withdrawal.PENDING
        approved = obj.status == Withdrawal.APPROVED
        approver_ids = {a.approver_id for a in obj.approvals.all()}
        approve_refusal = ""
        if pending and can_approve:
            if user.pk == obj.user_id:
                approve_refusal = "This is your own withdrawal: someone else must approve it."
            elif user.pk in approver_ids:
                approve_refusal = "You approved it already: a second approver must be someone else."
        failure = selectors.withdrawal_payout_failure(obj) if approved else None
        automatic = False
        if approved and can_pay:
            from ..providers import psp_for  # the adapter says whether it pays by itself

            try:
                automatic = psp_for(obj.method.provider).automatic_payouts
            except Exception:  # noqa: BLE001 - an unknown adapter: Finance pays by hand
                automatic = False
        return {
            "withdrawal": obj,
            "show_approve": pending and can_approve and not approve_refusal,
            "approve_refusal": approve_refusal,
            "show_reject": (pending or approved) and can_approve,
            "show_mark_paid": approved and can_pay,
            "show_retry": approved and can_pay and automatic,
            "payout_failure": failure,
            "subtitle": f"{obj.reference} · {obj.user.email}",
        }

    def get_urls(self):
        def route(suffix: str, view, name: str):
            return path(
                f"<path:object_id>/{suffix}/",
                self.admin_site.admin_view(require_POST(view)),
                name=f"payments_withdrawal_{name}",
            )

        return [
            route("approve", self.approve_view, "approve"),
            route("reject", self.reject_view, "reject"),
            route("mark-paid", self.mark_paid_view, "mark_paid"),
            route("retry-payout", self.retry_view, "retry_payout"),
            *super().get_urls(),
        ]

    def _withdrawal(self, request, object_id: str, permission: str) -> Withdrawal:
        if not request.user.has_perm(permission):
            raise PermissionDenied
        withdrawal = self.get_object(request, unquote(object_id))
        if withdrawal is None:
            raise Http404("No such withdrawal.")
        return withdrawal

    def _back(self, withdrawal: Withdrawal) -> HttpResponse:
        return HttpResponseRedirect(
            reverse("admin:payments_withdrawal_change", args=[withdrawal.pk])
        )

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        withdrawal = self._withdrawal(request, object_id, APPROVE_PERMISSION)
        try:
            outcome = services.withdrawal_approve(actor=request.user, withdrawal=withdrawal)
        except WithdrawalError as exc:
            messages.error(request, str(exc))
            return self._back(withdrawal)
        ref = withdrawal.reference
        paid = outcome.withdrawal
        if not outcome.approved:
            messages.success(
                request,
                f"Approval recorded ({outcome.approvals} of {outcome.required}). "
                f"{ref} needs a second approver.",
            )
        elif outcome.payout_error is not None:
            what = (
                "The error is permanent: pay it by hand and mark it paid, or reject it."
                if outcome.payout_error.permanent
                else "You can retry the payout."
            )
            messages.error(
                request, f"{ref} approved, but the payout failed: {outcome.payout_error} {what}"
            )
        elif paid.status == Withdrawal.PAID:
            messages.success(
                request, f"{ref} approved and paid out automatically ({paid.payout_reference})."
            )
        else:
            messages.success(
                request,
                f"{ref} approved. Pay it out, then record the payout reference with “Mark paid”.",
            )
        return self._back(withdrawal)

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        withdrawal = self._withdrawal(request, object_id, APPROVE_PERMISSION)
        try:
            services.withdrawal_reject(
                actor=request.user, withdrawal=withdrawal, reason=request.POST.get("reason", "")
            )
        except WithdrawalError as exc:
            messages.error(request, str(exc))
        else:
            total = format_amount(withdrawal.amount + withdrawal.fee, withdrawal.wallet.currency)
            messages.success(
                request,
                f"{withdrawal.reference} rejected; {total} returned to the client's wallet.",
            )
        return self._back(withdrawal)

    def mark_paid_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        withdrawal = self._withdrawal(request, object_id, PAY_PERMISSION)
        try:
            paid = services.withdrawal_mark_paid(
                actor=request.user,
                withdrawal=withdrawal,
                payout_reference=request.POST.get("payout_reference", ""),
            )
        except WithdrawalError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"{paid.reference} marked paid (payout reference {paid.payout_reference})."
            )
        return self._back(withdrawal)

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        withdrawal = self._withdrawal(request, object_id, PAY_PERMISSION)
        try:
            paid, error = services.withdrawal_payout_retry(
                actor=request.user, withdrawal=withdrawal
            )
        except WithdrawalError as exc:
            messages.error(request, str(exc))
            return self._back(withdrawal)
        if error is not None:
            messages.error(request, f"The payout failed again: {error}")
        elif paid.status == Withdrawal.PAID:
            messages.success(request, f"{paid.reference} paid out ({paid.payout_reference}).")
        else:
            messages.info(request, f"{paid.reference} is to be paid by hand; then mark it paid.")
        return self._back(withdrawal)
