"""Partners in the admin.

- **The list**: e-mail, company, status, plan, parent, depth, direct
  clients and sub-partners (a subquery and treebeard's ``numchild``: a
  constant number of queries whatever the page shows), filters and search.
  "Applications to review" in the IB menu opens it on the pending ones.
- **The partner's page**: the decisions (approve on a plan, reject with a
  reason, suspend, reactivate), the plan, a move in the tree; the partner's
  place in it (ancestors, direct sub-partners), the moves, the direct
  clients (paginated, each with "move to another partner"); the details
  and payout settings (payout settings: Finance). Holds of payouts are the
  payouts' admin's.
- **Make a client a partner** (the add page): a client by e-mail, a parent,
  a plan, through ``partner_create``.
- **Move a client** (``move-client/<client id>/``): from the partner's client
  list or the IB panel of the client's own page, through ``client_move``.

Every write is a service call; the buttons' URLs check the permission the
service needs (403 otherwise) and look the partner up among those the member
of staff may see: a sales manager sees only partners who are their own
clients, and another's is a 404 whatever the URL.
"""

from __future__ import annotations

from auditlog.registry import auditlog
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from accounts.admin import CLIENT_PAGE_PANELS
from accounts.selectors import clients_visible_to
from kyc.admin.common import scoped

from .. import selectors
from ..admin_forms import (
    ApproveForm,
    AssignPlanForm,
    MoveClientForm,
    MovePartnerForm,
    PartnerCreateForm,
    PartnerDetailsForm,
    ReasonForm,
)
from ..exceptions import IbError
from ..models import Partner, PartnerMove, Referral
from ..services import (
    client_move,
    partner_approve,
    partner_create,
    partner_move,
    partner_reject,
    partner_suspend,
    plan_assign,
)
from ..services.details import PAYOUT_FIELDS, PROFILE_FIELDS, partner_details_update

auditlog.register(Partner, exclude_fields=["path", "depth", "numchild"])

APPROVE_PERMISSION = "ib.approve_partner"
MOVE_PERMISSION = "ib.move_partner"
CHANGE_PERMISSION = "ib.change_partner"
PAY_PERMISSION = "ib.pay_partner"
CLIENTS_PAGE_SIZE = 25
CHILDREN_LIMIT = 50
MOVES_LIMIT = 20


class _Refused(Exception):
    """A service refused a save the form let through (a race): raised out of
    the admin's transaction so that nothing of the save stays."""


def direct_clients_count() -> Coalesce:
    """The partner's current direct clients, as a column (one subquery per
    row of the page, on the referrals' partner index)."""
    counts = (
        Referral.objects.filter(partner=OuterRef("pk"), until__isnull=True)
        .order_by()
        .values("partner")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def _int_or_none(value) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**63 else None


def _form_errors(request: HttpRequest, form) -> None:
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, error)


def _email(partner: Partner | None) -> str:
    return partner.user.email if partner is not None else "the top of the tree"


class NotFoundMixin:
    """An id the member of staff may not see (or that does not exist) is a
    404, as everywhere else, not the admin's redirect to the index (which
    would tell a sales manager that another's partner exists)."""

    def _get_obj_does_not_exist_redirect(self, request, opts, object_id):
        raise Http404(f"No such {opts.verbose_name}.")


@admin.register(Partner)
class PartnerAdmin(NotFoundMixin, admin.ModelAdmin):
    change_form_template = "admin/ib/partner/change_form.html"
    change_list_template = "admin/ib/partner/change_list.html"
    form = PartnerDetailsForm
    # The counts before the wide columns: at 1280 pixels with the menu open
    # the table scrolls from "plan" on.
    list_display = [
        "email",
        "status_badge",
        "clients",
        "sub_partners",
        "depth",
        "plan",
        "parent",
        "payouts_held",
    ]
    list_filter = ["status", "plan", "payouts_held"]
    list_select_related = ["user", "plan", "parent_partner__user"]
    search_fields = ["user__email", "company"]
    search_help_text = "Partner's e-mail or company"
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "client_link",
                    "status_badge",
                    "plan_link",
                    "parent_link",
                    "company",
                    "website",
                    "application_note",
                    ("created_at", "approved_at", "approved_by"),
                ]
            },
        ),
        (
            "Payouts",
            {
                "description": "Commissions are paid into the partner's wallet in the payout "
                "currency, on the schedule, once they reach the minimum. Holding payouts is "
                "on the payouts' page.",
                "fields": [*PAYOUT_FIELDS, "payouts_held", "hold_reason"],
            },
        ),
    ]
    readonly_fields = [
        "client_link",
        "status_badge",
        "plan_link",
        "parent_link",
        "application_note",
        "created_at",
        "approved_at",
        "approved_by",
        "payouts_held",
        "hold_reason",
    ]

    # --- Who sees and does what ------------------------------------------------------------

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user).annotate(
            clients_total=direct_clients_count()
        )

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # commissions and the tree's history name them: suspend instead

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.has_perm(PAY_PERMISSION):
            fields += PAYOUT_FIELDS
        if not request.user.has_perm(CHANGE_PERMISSION):
            fields += PROFILE_FIELDS
        return fields

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "website":
            kwargs["assume_scheme"] = "https"
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "payout_currency" and field is not None:
            # Currencies are the ledger's: picked here, never added or edited.
            widget = field.widget
            widget.can_add_related = widget.can_change_related = widget.can_view_related = False
        return field

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # "All sub-partners" on a partner's page links to the list filtered by parent.
        if lookup == "parent_partner__id__exact":
            return True
        return super().lookup_allowed(lookup, value, request)

    # --- The list's columns ----------------------------------------------------------------

    @admin.display(description="e-mail", ordering="user__email")
    def email(self, obj: Partner) -> str:
        return obj.user.email

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Partner) -> str:
        return format_html('<span class="ib-badge {}">{}</span>', obj.status, obj.status)

    @admin.display(description="parent", ordering="parent_partner__user__email")
    def parent(self, obj: Partner) -> str:
        return obj.parent_partner.user.email if obj.parent_partner_id else "-"

    @admin.display(description="clients", ordering="clients_total")
    def clients(self, obj: Partner) -> int:
        return obj.clients_total

    @admin.display(description="sub-partners", ordering="numchild")
    def sub_partners(self, obj: Partner) -> int:
        return obj.numchild

    # --- The page's read-only fields ------------------------------------------------------------

    @admin.display(description="client")
    def client_link(self, obj: Partner) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user.email)

    @admin.display(description="plan")
    def plan_link(self, obj: Partner) -> str:
        if obj.plan_id is None:
            return "no plan: earns nothing until given one"
        url = reverse("admin:ib_plan_change", args=[obj.plan_id])
        return format_html('<a href="{}">{}</a>', url, obj.plan)

    @admin.display(description="parent")
    def parent_link(self, obj: Partner) -> str:
        if obj.parent_partner_id is None:
            return "none: at the top of the tree"
        url = reverse("admin:ib_partner_change", args=[obj.parent_partner_id])
        return format_html('<a href="{}">{}</a>', url, obj.parent_partner.user.email)

    # --- Saving details and payout settings ----------------------------------------------------

    def save_model(self, request, obj: Partner, form, change: bool) -> None:
        editable = set(PROFILE_FIELDS) | set(PAYOUT_FIELDS)
        data = {name: form.cleaned_data[name] for name in form.changed_data if name in editable}
        if not data:
            return
        try:
            partner_details_update(actor=request.user, partner=obj, data=data)
        except IbError as exc:
            raise _Refused(str(exc)) from exc

    def save_related(self, request, form, formsets, change) -> None:
        """Nothing: a partner has no related rows edited here."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _Refused as exc:
            messages.error(request, f"Nothing was saved: {exc}")
            return HttpResponseRedirect(request.get_full_path())

    # --- The partner's page ---------------------------------------------------------------------

    def get_object(self, request, object_id, from_field=None):
        pk = _int_or_none(object_id)
        if pk is None:
            return None
        return (
            self.get_queryset(request)
            .select_related("user", "plan", "parent_partner__user", "approved_by")
            .filter(pk=pk)
            .first()
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk is not None:
            context.update(self._page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _page_context(self, request: HttpRequest, partner: Partner) -> dict:
        user = request.user
        status = partner.status
        default_plan = selectors.programme_settings().default_plan
        may_approve = user.has_perm(APPROVE_PERMISSION)
        ancestors = sorted(
            Partner.objects.filter(pk__in=selectors.ancestor_ids(partner)).select_related("user"),
            key=lambda p: p.depth,
        )
        children = list(
            Partner.objects.filter(parent_partner=partner)
            .select_related("user", "plan")
            .annotate(clients_total=direct_clients_count())
            .order_by("path")[:CHILDREN_LIMIT]
        )
        moves = list(
            PartnerMove.objects.filter(
                Q(partner=partner) | Q(old_parent=partner) | Q(new_parent=partner)
            ).select_related(
                "client", "partner__user", "old_parent__user", "new_parent__user", "actor"
            )[:MOVES_LIMIT]
        )
        referrals = (
            Referral.objects.filter(partner=partner, until__isnull=True)
            .select_related("client")
            .order_by("-since", "-id")
        )
        page = Paginator(referrals, CLIENTS_PAGE_SIZE).get_page(request.GET.get("clients_page"))
        return {
            "partner": partner,
            "subtitle": partner.user.email,
            "show_save_and_add_another": False,  # adding is its own page
            "can_approve": may_approve and status in (Partner.PENDING, Partner.SUSPENDED),
            "can_reject": may_approve and status == Partner.PENDING,
            "can_suspend": may_approve and status == Partner.ACTIVE,
            # A pending application gets its plan with the approval.
            "can_assign": user.has_perm(CHANGE_PERMISSION)
            and status in (Partner.ACTIVE, Partner.SUSPENDED),
            "can_move": user.has_perm(MOVE_PERMISSION),
            "approve_form": ApproveForm(default_plan=default_plan),
            "assign_form": AssignPlanForm(initial={"plan": partner.plan_id}),
            "default_plan": default_plan,
            "ancestors": ancestors,
            "children": children,
            "children_more": partner.numchild > len(children),
            "children_url": reverse("admin:ib_partner_changelist")
            + f"?parent_partner__id__exact={partner.pk}",
            "moves": moves,
            "clients_page": page,
        }

    # --- URLs -----------------------------------------------------------------------------

    def get_urls(self):
        def post(view, name: str, route: str):
            return path(route, self.admin_site.admin_view(require_POST(view)), name=name)

        return [
            path(
                "applications/",
                self.admin_site.admin_view(self.applications_view),
                name="ib_partner_applications",
            ),
            path(
                "move-client/<int:client_id>/",
                self.admin_site.admin_view(self.move_client_view),
                name="ib_partner_move_client",
            ),
            post(self.approve_view, "ib_partner_approve", "<path:object_id>/approve/"),
            post(self.reject_view, "ib_partner_reject", "<path:object_id>/reject/"),
            post(self.suspend_view, "ib_partner_suspend", "<path:object_id>/suspend/"),
            post(self.assign_plan_view, "ib_partner_assign_plan", "<path:object_id>/plan/"),
            post(self.move_view, "ib_partner_move", "<path:object_id>/move/"),
            *super().get_urls(),
        ]

    def applications_view(self, request: HttpRequest) -> HttpResponse:
        """The applications queue: the list, on the pending ones."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(
            reverse("admin:ib_partner_changelist") + f"?status__exact={Partner.PENDING}"
        )

    def _partner(self, request: HttpRequest, object_id: str) -> Partner:
        partner = self.get_object(request, unquote(object_id))
        if partner is None:
            raise Http404("No such partner.")
        return partner

    @staticmethod
    def _back(partner: Partner) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:ib_partner_change", args=[partner.pk]))

    def _visible_partners(self, request: HttpRequest):
        return scoped(Partner.objects.exclude(status=Partner.REJECTED), request.user)

    # --- Decisions --------------------------------------------------------------------------

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied
        partner = self._partner(request, object_id)
        form = ApproveForm(request.POST)
        if not form.is_valid():
            _form_errors(request, form)
            return self._back(partner)
        was = partner.status
        try:
            partner = partner_approve(
                actor=request.user, partner=partner, plan=form.cleaned_data["plan"]
            )
        except IbError as exc:
            messages.error(request, str(exc))
            return self._back(partner)
        partner = Partner.objects.select_related("plan", "user").get(pk=partner.pk)
        verb = "reactivated" if was == Partner.SUSPENDED else "approved"
        if partner.plan is None:
            messages.warning(
                request,
                f"{partner.user.email} is {verb} but has no plan: they earn nothing until "
                "given one.",
            )
        else:
            messages.success(request, f"{partner.user.email} is {verb}, on {partner.plan}.")
        return self._back(partner)

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied
        partner = self._partner(request, object_id)
        form = ReasonForm(request.POST)
        if not form.is_valid():
            _form_errors(request, form)
            return self._back(partner)
        try:
            partner_reject(actor=request.user, partner=partner, reason=form.cleaned_data["reason"])
        except IbError as exc:
            messages.error(request, str(exc))
            return self._back(partner)
        messages.success(
            request, f"The application of {partner.user.email} is rejected: they read the reason."
        )
        return self._back(partner)

    def suspend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(APPROVE_PERMISSION):
            raise PermissionDenied
        partner = self._partner(request, object_id)
        form = ReasonForm(request.POST)
        if not form.is_valid():
            _form_errors(request, form)
            return self._back(partner)
        if partner.status != Partner.ACTIVE:
            messages.error(request, "Only an active partner can be suspended.")
            return self._back(partner)
        try:
            partner_suspend(actor=request.user, partner=partner, reason=form.cleaned_data["reason"])
        except IbError as exc:
            messages.error(request, str(exc))
            return self._back(partner)
        messages.success(
            request,
            f"{partner.user.email} is suspended: deals closed from now earn them nothing "
            "(the partners above still earn).",
        )
        return self._back(partner)

    def assign_plan_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied
        partner = self._partner(request, object_id)
        form = AssignPlanForm(request.POST)
        if not form.is_valid():
            _form_errors(request, form)
            return self._back(partner)
        plan = form.cleaned_data["plan"]
        if plan.pk == partner.plan_id:
            messages.info(request, f"{partner.user.email} is already on {plan}.")
            return self._back(partner)
        try:
            plan_assign(actor=request.user, partner=partner, plan=plan)
        except IbError as exc:
            messages.error(request, f"The plan was not changed: {exc}")
            return self._back(partner)
        messages.success(request, f"{partner.user.email} is on {plan} for deals closed from now.")
        return self._back(partner)

    def move_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(MOVE_PERMISSION):
            raise PermissionDenied
        partner = self._partner(request, object_id)
        form = MovePartnerForm(request.POST, partners=self._visible_partners(request))
        if not form.is_valid():
            _form_errors(request, form)
            return self._back(partner)
        parent = form.cleaned_data["parent"]
        if (parent.pk if parent else None) == partner.parent_partner_id:
            messages.info(request, f"{partner.user.email} is already there.")
            return self._back(partner)
        try:
            partner_move(
                actor=request.user,
                partner=partner,
                new_parent=parent,
                reason=form.cleaned_data["reason"],
            )
        except IbError as exc:
            messages.error(request, f"Not moved: {exc}")
            return self._back(partner)
        messages.success(
            request,
            f"{partner.user.email} and their sub-partners are now under {_email(parent)}, "
            "for deals closed from now.",
        )
        return self._back(partner)

    # --- Moving a client ----------------------------------------------------------------------

    def move_client_view(self, request: HttpRequest, client_id: int) -> HttpResponse:
        if not request.user.has_perm(MOVE_PERMISSION):
            raise PermissionDenied
        client = clients_visible_to(staff=request.user).filter(pk=client_id).first()
        if client is None:
            raise Http404("No such client.")
        current = selectors.current_referral(client)
        back_partner = self.get_object(request, request.GET.get("from", ""))
        form = MoveClientForm(request.POST or None, partners=self._visible_partners(request))
        if request.method == "POST" and form.is_valid():
            target = form.cleaned_data["target"]
            try:
                client_move(
                    actor=request.user,
                    client=client,
                    partner=target,
                    reason=form.cleaned_data["reason"],
                )
            except IbError as exc:
                form.add_error(None, str(exc))
            else:
                if target is None:
                    messages.success(request, f"{client.email} has no partner from now on.")
                else:
                    messages.success(
                        request,
                        f"{client.email} is {target.user.email}'s client for deals closed "
                        "from now; earlier deals stay with the partner they had.",
                    )
                if back_partner is not None:
                    return self._back(back_partner)
                return HttpResponseRedirect(
                    reverse("admin:accounts_client_change", args=[client.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Move {client.email} to another partner",
            "client": client,
            "current": current,
            "form": form,
            "back_partner": back_partner,
        }
        return TemplateResponse(request, "admin/ib/partner/move_client.html", context)

    # --- Making a client a partner ---------------------------------------------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        default_plan = selectors.programme_settings().default_plan
        form = PartnerCreateForm(
            request.POST or None,
            partners=self._visible_partners(request),
            clients=clients_visible_to(staff=request.user).filter(is_active=True),
            default_plan=default_plan,
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                partner = partner_create(
                    actor=request.user,
                    user=data["client"],
                    parent=data["parent"],
                    plan=data["plan"],
                    company=data["company"],
                    website=data["website"],
                )
            except IbError as exc:
                form.add_error(None, str(exc))
            else:
                partner = Partner.objects.select_related("plan").get(pk=partner.pk)
                plan = f"on {partner.plan}" if partner.plan else "with no plan yet"
                messages.success(request, f"{partner} is now an active partner, {plan}.")
                return self._back(partner)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Make a client a partner",
            "form": form,
            "default_plan": default_plan,
        }
        return TemplateResponse(request, "admin/ib/partner/add.html", context)


admin.site.add_link(
    "ib", "Applications to review", "admin:ib_partner_applications", "ib.view_partner"
)


# --- The IB panel on the client's admin page --------------------------------------------------


@admin.display(description="introducing broker")
def client_ib_panel(client) -> str:
    """Who introduced the client (since when, how) and whether the client is
    a partner themselves; the link to move them to another partner."""
    if client is None or client.pk is None:
        return "-"
    referral = (
        Referral.objects.filter(client_id=client.pk, until__isnull=True)
        .select_related("partner__user")
        .first()
    )
    own = Partner.objects.filter(user_id=client.pk).only("pk", "status").first()
    move_url = reverse("admin:ib_partner_move_client", args=[client.pk])
    if referral is None:
        introduced = "No partner introduced this client."
    else:
        introduced = format_html(
            'Client of <a href="{}">{}</a> since {} ({}).',
            reverse("admin:ib_partner_change", args=[referral.partner_id]),
            referral.partner.user.email,
            referral.since.strftime("%Y-%m-%d"),
            referral.get_source_display(),
        )
    partner_line = ""
    if own is not None:
        partner_line = format_html(
            ' This client is a partner (<a href="{}">{}</a>).',
            reverse("admin:ib_partner_change", args=[own.pk]),
            own.get_status_display(),
        )
    return format_html(
        '<div id="ib-panel"><p>{}{}</p><p><a href="{}">Move to another partner</a></p></div>',
        introduced,
        partner_line,
        move_url,
    )


CLIENT_PAGE_PANELS.append(("Introducing broker", client_ib_panel))
