"""Payouts and commissions in the admin: read-only lists, and the three
things Finance does by hand, each through its service.

- **Payouts**: list and detail (the conversion, the ledger transaction, the
  statement's first lines and a link to all of them). "Add payout" is
  **Pay a partner**: pick the partner, see what awaits payout, confirm →
  ``payout_create(kind="manual")`` (below the partner's minimum too).
- **Hold / release** a partner's payouts (``hold/<partner id>/``,
  ``release/<partner id>/``) → ``payouts_hold`` / ``payouts_release``.
- **Commissions**: read-only, filtered by kind, paid or not, currency, date,
  partner or payout (the last two from links), searched by partner e-mail.

Every action needs ``ib.pay_partner`` (Finance). A sales manager sees only
the payouts and commissions of partners who are their own clients.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from kyc.admin.common import scoped

from ..display import client_label, explain, money_text
from ..exceptions import IbError
from ..models import Commission, Partner, Payout
from ..selectors.payouts import payout_outlook, versions_for
from ..services.payouts import payout_create, payouts_hold, payouts_release

PAY_PERMISSION = "ib.pay_partner"
PREVIEW_LINES = 50


def _partner_label(partner: Partner) -> str:
    return partner.user.email if partner.user_id else f"partner {partner.pk}"


class PartnerPickForm(forms.Form):
    email = forms.EmailField(label="Partner's e-mail")


class HoldForm(forms.Form):
    reason = forms.CharField(
        max_length=200, help_text="The partner sees this reason on their payouts page."
    )


class _ReadOnly(admin.ModelAdmin):
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PaidFilter(admin.SimpleListFilter):
    title = "paid"
    parameter_name = "paid"

    def lookups(self, request, model_admin):
        return [("yes", "Paid out"), ("no", "Awaiting payout")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(payout__isnull=self.value() == "no")
        return queryset


class _IdFilter(admin.SimpleListFilter):
    """A filter set from a link (``?partner=12``), shown only when set."""

    field = ""

    def lookups(self, request, model_admin):
        value = self.value()
        return [(value, f"#{value}")] if value and value.isdigit() else []

    def queryset(self, request, queryset):
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(**{f"{self.field}_id": int(value)})
        return queryset


class PartnerIdFilter(_IdFilter):
    title = "partner"
    parameter_name = "partner"
    field = "partner"


class PayoutIdFilter(_IdFilter):
    title = "payout"
    parameter_name = "payout"
    field = "payout"


@admin.register(Commission)
class CommissionAdmin(_ReadOnly):
    list_display = [
        "id",
        "kind",
        "partner_email",
        "client_name",
        "amount_display",
        "level",
        "earned_at",
        "payout_link",
    ]
    list_filter = [
        "kind",
        PaidFilter,
        "currency",
        ("earned_at", admin.DateFieldListFilter),
        PartnerIdFilter,
        PayoutIdFilter,
    ]
    search_fields = ["partner__user__email"]
    list_select_related = ["partner__user", "client"]
    ordering = ["-id"]
    # Millions of rows: no COUNT(*) of the whole table on every page.
    show_full_result_count = False
    readonly_fields = ["explanation"]

    def has_add_permission(self, request) -> bool:
        return False

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user, user_path="partner__user")

    @admin.display(description="partner", ordering="partner__user__email")
    def partner_email(self, obj: Commission) -> str:
        return _partner_label(obj.partner)

    @admin.display(description="client")
    def client_name(self, obj: Commission) -> str:
        if not obj.client_id:
            return "—"
        return f"{obj.client.get_full_name() or obj.client.email} (#{obj.client_id})"

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Commission) -> str:
        return money_text(obj.amount, obj.currency_id)

    @admin.display(description="payout")
    def payout_link(self, obj: Commission) -> str:
        if not obj.payout_id:
            return mark_safe('<span class="ib-badge pending">unpaid</span>')
        url = reverse("admin:ib_payout_change", args=[obj.payout_id])
        return format_html('<a href="{}">#{}</a>', url, obj.payout_id)

    @admin.display(description="why")
    def explanation(self, obj: Commission) -> str:
        return explain(obj, obj.plan_version.terms if obj.plan_version_id else None)


@admin.register(Payout)
class PayoutAdmin(_ReadOnly):
    list_display = ["id", "partner_email", "amount_display", "kind", "commissions", "created_at"]
    list_filter = ["kind", "currency", ("created_at", admin.DateFieldListFilter), PartnerIdFilter]
    search_fields = ["partner__user__email"]
    list_select_related = ["partner__user", "currency"]
    ordering = ["-created_at", "-id"]
    fields = [
        "partner_email",
        "amount_display",
        "kind",
        "actor",
        "created_at",
        "covers",
        "conversion",
        "journal_link",
        "statement",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user, user_path="partner__user")

    def has_add_permission(self, request) -> bool:
        return request.user.has_perm(PAY_PERMISSION)

    def add_view(self, request, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:ib_payout_pick"))

    # --- columns and fields ---------------------------------------------------------------

    @admin.display(description="partner", ordering="partner__user__email")
    def partner_email(self, obj: Payout) -> str:
        return _partner_label(obj.partner)

    @admin.display(description="amount", ordering="amount")
    def amount_display(self, obj: Payout) -> str:
        return money_text(obj.amount, obj.currency_id)

    @admin.display(description="covers")
    def covers(self, obj: Payout) -> str:
        if not obj.covers_from:
            return f"{obj.commissions} commissions"
        return (
            f"{obj.commissions} commissions earned "
            f"{obj.covers_from:%Y-%m-%d %H:%M} – {obj.covers_until:%Y-%m-%d %H:%M} UTC"
        )

    @admin.display(description="conversion")
    def conversion(self, obj: Payout) -> str:
        rows = [
            (
                code,
                money_text(entry["amount"], code),
                entry.get("rows", ""),
                entry.get("rate", ""),
                money_text(entry["credited"], obj.currency_id),
            )
            for code, entry in sorted((obj.breakdown or {}).items())
        ]
        return format_html(
            '<table class="ib-table"><thead><tr><th>earned in</th><th>amount</th>'
            "<th>rows</th><th>rate</th><th>paid</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
            ),
        )

    @admin.display(description="ledger transaction")
    def journal_link(self, obj: Payout) -> str:
        url = reverse("admin:payments_journaltransaction_change", args=[obj.journal_id])
        return format_html('<a href="{}">#{}</a>', url, obj.journal_id)

    @admin.display(description="statement")
    def statement(self, obj: Payout) -> str:
        items = list(
            Commission.objects.filter(payout=obj)
            .select_related("client")
            .order_by("earned_at", "id")[:PREVIEW_LINES]
        )
        versions = versions_for(items)
        rows = [
            (
                f"{item.earned_at:%Y-%m-%d %H:%M}",
                item.get_kind_display(),
                client_label(item.client.first_name, item.client.last_name, item.client_id)
                if item.client_id
                else "—",
                money_text(item.amount, item.currency_id),
                explain(item, versions[item.plan_version_id].terms)
                if item.plan_version_id in versions
                else "",
            )
            for item in items
        ]
        all_url = reverse("admin:ib_commission_changelist") + f"?payout={obj.pk}"
        more = (
            f"First {PREVIEW_LINES} of {obj.commissions}. "
            if obj.commissions > PREVIEW_LINES
            else ""
        )
        return format_html(
            '<div class="ib-scroll"><table class="ib-table"><thead><tr><th>earned</th>'
            "<th>kind</th><th>client</th><th>amount</th><th>why</th></tr></thead>"
            "<tbody>{}</tbody></table></div>"
            '<p>{}<a href="{}">All the commissions it covers</a></p>',
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
            ),
            more,
            all_url,
        )

    # --- Pay, hold, release ---------------------------------------------------------------

    def get_urls(self):
        def route(suffix: str, view, name: str, *, post_only: bool = False):
            wrapped = require_POST(view) if post_only else view
            return path(suffix, self.admin_site.admin_view(wrapped), name=f"ib_payout_{name}")

        return [
            route("pay/", self.pick_view, "pick"),
            route("pay/<int:partner_id>/", self.pay_view, "pay"),
            route("hold/<int:partner_id>/", self.hold_view, "hold"),
            route("release/<int:partner_id>/", self.release_view, "release", post_only=True),
            *super().get_urls(),
        ]

    def _partner(self, request: HttpRequest, partner_id: int) -> Partner:
        if not request.user.has_perm(PAY_PERMISSION):
            raise PermissionDenied
        partner = (
            scoped(Partner.objects.all(), request.user)
            .select_related("user", "payout_currency")
            .filter(pk=partner_id)
            .first()
        )
        if partner is None:
            raise Http404("No such partner.")
        return partner

    def _page(self, request, template: str, title: str, **context) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            **context,
        }
        return TemplateResponse(request, f"admin/ib/payout/{template}", context)

    def pick_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(PAY_PERMISSION):
            raise PermissionDenied
        form = PartnerPickForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            partner = (
                scoped(Partner.objects.all(), request.user)
                .filter(user__email__iexact=form.cleaned_data["email"])
                .first()
            )
            if partner is not None:
                return HttpResponseRedirect(reverse("admin:ib_payout_pay", args=[partner.pk]))
            form.add_error("email", "No partner has this e-mail.")
        return self._page(request, "pick.html", "Pay a partner", form=form)

    def pay_view(self, request: HttpRequest, partner_id: int) -> HttpResponse:
        partner = self._partner(request, partner_id)
        if request.method == "POST":
            try:
                payout = payout_create(partner=partner, actor=request.user, kind=Payout.MANUAL)
            except IbError as exc:
                messages.error(request, f"{exc} Nothing was paid.")
            else:
                messages.success(
                    request,
                    f"Paid {money_text(payout.amount, payout.currency_id)} into "
                    f"{_partner_label(partner)}'s wallet (payout #{payout.pk}, "
                    f"{payout.commissions} commissions).",
                )
                return HttpResponseRedirect(reverse("admin:ib_payout_change", args=[payout.pk]))
        outlook = payout_outlook(partner)
        return self._page(
            request,
            "pay.html",
            f"Pay {_partner_label(partner)}",
            partner=partner,
            outlook=outlook,
            balances=[(b, money_text(b.amount, b.currency.code)) for b in outlook.balances],
            estimate=money_text(outlook.estimate, outlook.currency.code)
            if outlook.estimate is not None
            else None,
            minimum=money_text(outlook.minimum, outlook.currency.code),
            below_minimum=outlook.estimate is not None and outlook.estimate < outlook.minimum,
            hold_form=HoldForm(),
        )

    def hold_view(self, request: HttpRequest, partner_id: int) -> HttpResponse:
        partner = self._partner(request, partner_id)
        form = HoldForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                payouts_hold(
                    actor=request.user, partner=partner, reason=form.cleaned_data["reason"]
                )
            except IbError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Payouts to {_partner_label(partner)} are on hold.")
                return HttpResponseRedirect(reverse("admin:ib_payout_pay", args=[partner.pk]))
        return self._page(
            request,
            "hold.html",
            f"Hold payouts to {_partner_label(partner)}",
            partner=partner,
            form=form,
        )

    def release_view(self, request: HttpRequest, partner_id: int) -> HttpResponse:
        partner = self._partner(request, partner_id)
        try:
            payouts_release(
                actor=request.user, partner=partner, reason=request.POST.get("reason", "")
            )
        except IbError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Payouts to {_partner_label(partner)} are released.")
        return HttpResponseRedirect(reverse("admin:ib_payout_pay", args=[partner.pk]))
