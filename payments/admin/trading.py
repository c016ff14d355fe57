"""Transfers between wallets and trading accounts in the admin: a read-only
list (filters, search) and detail page, and one action, "Check with the
platform now", which takes open transfers one step further through the same
service the worker and the sweeper run (``trading_transfer_process``).

Nothing here edits a transfer: no add, change or delete. Reading needs
``payments.view_tradingtransfer`` (Finance, Compliance, Support); a sales
manager given it sees only the clients assigned to them.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from accounts.roles import ALL_CLIENTS_ROLES
from accounts.selectors import clients_visible_to, staff_role_names
from backoffice.money import from_minor

from ..models import Currency, TradingTransfer
from ..services.trading import trading_transfer_process
from ..services.withdrawals import APPROVE_PERMISSION
from .ledger import format_amount

# Asking the platform moves money (a transfer completes, or fails and is
# reversed), so the action needs a money-moving right, not the right to read.
# No model changes here, so no new permission: we reuse Finance's
# ``payments.approve_withdrawal`` (superusers hold every permission). The
# action is the same step the sweeper takes by itself within a minute; it
# only saves Finance the wait when a client calls.
CHECK_PERMISSION = APPROVE_PERMISSION
# Each check is a call to the platform, made inside this request.
CHECK_LIMIT = 25


def _account_amount(transfer: TradingTransfer) -> str:
    account = transfer.trading_account
    value = from_minor(transfer.account_amount, account.currency_digits)
    return f"{value:,.{account.currency_digits}f} {account.currency}"


@admin.register(TradingTransfer)
class TradingTransferAdmin(admin.ModelAdmin):
    list_display = [
        "reference",
        "client",
        "direction",
        "login",
        "amount_display",
        "account_amount_display",
        "status",
        "attempts",
        "error_short",
        "created_at",
        "completed_at",
    ]
    list_filter = ["status", "direction", "trading_account__platform"]
    list_select_related = ["user", "wallet__currency", "trading_account__platform"]
    search_fields = ["reference", "trading_account__login", "user__email"]
    search_help_text = "Reference, trading account login or client's e-mail"
    ordering = ["-id"]
    show_full_result_count = False
    actions = ["check_with_platform"]
    fields = [
        "reference",
        "status",
        "client_link",
        "direction",
        "account_link",
        "wallet_link",
        "amount_display",
        "account_amount_display",
        "rate",
        "fee_display",
        "attempts",
        "error",
        "platform_ticket",
        "journals",
        "created_at",
        "updated_at",
        "completed_at",
    ]
    readonly_fields = fields

    # --- Nothing is added, edited or deleted here -------------------------------------

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_check_platform_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CHECK_PERMISSION)

    def get_queryset(self, request: HttpRequest) -> QuerySet[TradingTransfer]:
        qs = (
            super()
            .get_queryset(request)
            .select_related("user", "wallet__currency", "trading_account__platform")
        )
        staff = request.user
        if staff.is_superuser or staff_role_names(staff) & set(ALL_CLIENTS_ROLES):
            return qs
        # A sales manager: only the clients assigned to them (as in the clients' admin).
        return qs.filter(user__in=clients_visible_to(staff=staff))

    # --- Columns and fields ------------------------------------------------------------

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: TradingTransfer) -> str:
        return obj.user.email

    @admin.display(description="account", ordering="trading_account__login")
    def login(self, obj: TradingTransfer) -> str:
        return f"{obj.trading_account.login} ({obj.trading_account.platform.identifier})"

    @admin.display(description="wallet amount", ordering="amount")
    def amount_display(self, obj: TradingTransfer) -> str:
        return format_amount(obj.amount, obj.wallet.currency)

    @admin.display(description="account amount", ordering="account_amount")
    def account_amount_display(self, obj: TradingTransfer) -> str:
        return _account_amount(obj)

    @admin.display(description="conversion fee")
    def fee_display(self, obj: TradingTransfer) -> str:
        if obj.rate is None:
            return "-"
        if obj.direction == TradingTransfer.IN:  # the fee is in the currency sold
            return format_amount(obj.fee, obj.wallet.currency)
        currency = Currency.objects.filter(code=obj.trading_account.currency).first()
        return format_amount(obj.fee, currency) if currency else str(obj.fee)

    @admin.display(description="error")
    def error_short(self, obj: TradingTransfer) -> str:
        return Truncator(obj.error).chars(60) if obj.error else ""

    @admin.display(description="client")
    def client_link(self, obj: TradingTransfer) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user.email)

    @admin.display(description="trading account")
    def account_link(self, obj: TradingTransfer) -> str:
        account = obj.trading_account
        try:
            url = reverse("admin:accounts_tradingaccount_change", args=[account.pk])
        except NoReverseMatch:  # the accounts admin does not list trading accounts
            return self.login(obj)
        return format_html('<a href="{}">{}</a>', url, self.login(obj))

    @admin.display(description="wallet")
    def wallet_link(self, obj: TradingTransfer) -> str:
        url = reverse("admin:payments_ledgeraccount_change", args=[obj.wallet_id])
        return format_html('<a href="{}">{} wallet</a>', url, obj.wallet.currency_id)

    @admin.display(description="ledger")
    def journals(self, obj: TradingTransfer) -> str:
        links = [
            (label, reverse("admin:payments_journaltransaction_change", args=[pk]), pk)
            for label, pk in [
                ("posted", obj.journal_id),
                ("reversed", obj.reversal_journal_id),
            ]
            if pk is not None
        ]
        return format_html_join(" · ", '{} <a href="{}">#{}</a>', links) or "-"

    # --- The action ----------------------------------------------------------------------

    @admin.action(description="Check with the platform now", permissions=["check_platform"])
    def check_with_platform(self, request: HttpRequest, queryset: QuerySet[TradingTransfer]):
        chosen = list(queryset.order_by("id").values_list("pk", "reference", "status"))
        open_ones = [
            (pk, ref) for pk, ref, status in chosen if status in TradingTransfer.OPEN_STATUSES
        ]
        settled = len(chosen) - len(open_ones)
        if settled:
            messages.info(request, f"{settled} settled transfer(s) left as they are.")
        if len(open_ones) > CHECK_LIMIT:
            messages.warning(
                request,
                f"Only the first {CHECK_LIMIT} open transfers were checked; select the rest again.",
            )
            open_ones = open_ones[:CHECK_LIMIT]
        for pk, reference in open_ones:
            try:
                done = trading_transfer_process(transfer_id=pk)
            except Exception as exc:  # noqa: BLE001 - report it, go on with the others
                messages.error(request, f"{reference}: the check failed ({exc}).")
                continue
            level, text = self._outcome(done)
            messages.add_message(request, level, f"{reference}: {text}")
            # Who asked, in the admin's history of the transfer.
            logged = TradingTransfer(pk=pk, reference=reference)
            self.log_change(request, logged, f"Checked with the platform: {text}")

    @staticmethod
    def _outcome(done: TradingTransfer | None) -> tuple[int, str]:
        if done is None:
            wait = settings.TRADING_TRANSFER_STALE_AFTER
            return messages.WARNING, (
                "not checked now: a call to the platform may still be under way. "
                f"It is looked up once it is surely over (after {wait} seconds)."
            )
        if done.status == TradingTransfer.COMPLETED:
            return messages.SUCCESS, f"completed (platform ticket {done.platform_ticket})."
        if done.status == TradingTransfer.FAILED:
            undone = " and reversed" if done.direction == TradingTransfer.IN else ""
            return messages.WARNING, f"failed{undone}: {done.error}"
        why = f" ({done.error})" if done.error else ""
        return messages.WARNING, f"still {done.get_status_display()}{why}."
