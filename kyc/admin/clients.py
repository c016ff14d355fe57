"""Clients' KYC in the admin: the list by level, risk and country; a client's
page with their items, their level history and a level set by hand (with a
reason, through ``kyc_level_set``; needs ``kyc.change_clientkyc``); the KYC
panel on the client's own admin page; the level history of everyone.

A sales manager sees only their own clients here too.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from accounts.admin import CLIENT_PAGE_PANELS

from .. import selectors, services
from ..admin_forms import SetLevelForm
from ..exceptions import KycError
from ..models import ClientKyc, LevelChange, Submission
from .common import scoped

CHANGE_PERMISSION = "kyc.change_clientkyc"
HISTORY_LIMIT = 50


def _items(user_id: int) -> list[Submission]:
    """The client's current submission per requirement, by level."""
    return list(
        Submission.objects.filter(user_id=user_id, is_current=True)
        .select_related("requirement__level", "reason")
        .order_by("requirement__level__number", "requirement__order", "requirement_id")
    )


def items_table(user_id: int) -> str:
    rows = [
        (
            s.requirement.level.number,
            reverse("admin:kyc_submission_change", args=[s.pk]),
            s.requirement.name,
            selectors.STATUS_LABELS[selectors.effective_status(s)],
            s.submitted_at.strftime("%Y-%m-%d %H:%M"),
            s.reason.text if s.reason else "",
        )
        for s in _items(user_id)
    ]
    if not rows:
        return "Nothing submitted yet."
    return format_html(
        '<table class="audit kyc-items"><thead><tr><th>level</th><th>item</th><th>status</th>'
        "<th>submitted</th><th>reason</th></tr></thead><tbody>{}</tbody></table>",
        format_html_join(
            "",
            '<tr><td>{}</td><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            rows,
        ),
    )


def submissions_link(user_id: int) -> str:
    url = reverse("admin:kyc_submission_changelist") + f"?user__id__exact={user_id}"
    return format_html('<a href="{}">All submissions and reviews of this client</a>', url)


@admin.register(ClientKyc)
class ClientKycAdmin(admin.ModelAdmin):
    change_form_template = "admin/kyc/clientkyc/change_form.html"
    list_display = ["client", "name", "level", "risk", "country", "level_changed_at"]
    list_filter = ["level", "risk", ("country", admin.AllValuesFieldListFilter)]
    list_select_related = ["user", "level"]
    search_fields = ["user__email", "user__last_name"]
    search_help_text = "Client's e-mail or last name"
    ordering = ["-level_changed_at"]
    show_full_result_count = False
    fields = [
        "client_link",
        "level",
        "risk",
        "country",
        "level_changed_at",
        "items",
        "level_history",
        "all_submissions",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:
        return False  # created with the client

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the level moves by decisions, or by "Set the level" with a reason

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user).select_related("user", "level")

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: ClientKyc) -> str:
        return obj.user.email

    @admin.display(description="name", ordering="user__last_name")
    def name(self, obj: ClientKyc) -> str:
        return f"{obj.user.first_name} {obj.user.last_name}".strip()

    @admin.display(description="client")
    def client_link(self, obj: ClientKyc) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.user_id])
        return format_html('<a href="{}">{}</a>', url, obj.user.email)

    @admin.display(description="current items")
    def items(self, obj: ClientKyc) -> str:
        return items_table(obj.user_id)

    @admin.display(description="level history")
    def level_history(self, obj: ClientKyc) -> str:
        changes = LevelChange.objects.filter(user_id=obj.user_id).select_related("actor")
        rows = [
            (
                c.created_at.strftime("%Y-%m-%d %H:%M"),
                c.from_level,
                c.to_level,
                c.reason,
                c.actor.email if c.actor else "automatic",
            )
            for c in changes[:HISTORY_LIMIT]
        ]
        if not rows:
            return "The level has not changed."
        return format_html(
            '<table class="audit kyc-history"><thead><tr><th>when</th><th>from</th><th>to</th>'
            "<th>why</th><th>by</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows
            ),
        )

    @admin.display(description="submissions")
    def all_submissions(self, obj: ClientKyc) -> str:
        return submissions_link(obj.user_id)

    # --- Setting the level by hand ---------------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["can_set_level"] = request.user.has_perm(CHANGE_PERMISSION)
            context["set_level_form"] = SetLevelForm(initial={"level": obj.level_id})
            context["subtitle"] = obj.user.email
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "<path:object_id>/set-level/",
                self.admin_site.admin_view(require_POST(self.set_level_view)),
                name="kyc_clientkyc_set_level",
            ),
            *super().get_urls(),
        ]

    def set_level_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not request.user.has_perm(CHANGE_PERMISSION):
            raise PermissionDenied
        kyc = self.get_object(request, unquote(object_id))
        if kyc is None:
            raise Http404("No such client.")
        back = HttpResponseRedirect(reverse("admin:kyc_clientkyc_change", args=[kyc.pk]))
        form = SetLevelForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return back
        level = form.cleaned_data["level"]
        try:
            services.kyc_level_set(
                actor=request.user, user=kyc.user, level=level, reason=form.cleaned_data["reason"]
            )
        except KycError as exc:
            messages.error(request, str(exc))
            return back
        if level.pk == kyc.level_id:
            messages.info(request, f"{kyc.user.email} is already at level {level}.")
        else:
            messages.success(request, f"{kyc.user.email} is now at level {level}.")
        return back

    def get_object(self, request, object_id, from_field=None):
        try:
            return super().get_object(request, object_id, from_field)
        except (ValueError, OverflowError):
            return None


@admin.register(LevelChange)
class LevelChangeAdmin(admin.ModelAdmin):
    """Every client's level moves: by decisions, expiries and staff."""

    list_display = ["created_at", "client", "from_level", "to_level", "reason", "by"]
    list_filter = ["to_level", "from_level"]
    list_select_related = ["user", "actor"]
    search_fields = ["user__email"]
    ordering = ["-created_at", "-id"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user)

    @admin.display(description="client", ordering="user__email")
    def client(self, obj: LevelChange) -> str:
        return obj.user.email

    @admin.display(description="by")
    def by(self, obj: LevelChange) -> str:
        return obj.actor.email if obj.actor else "automatic"


# --- The KYC panel on the client's admin page -------------------------------------------------


@admin.display(description="verification")
def client_kyc_panel(client) -> str:
    """The client's level, risk and items on their admin page (read-only;
    the KYC page has the level history and the level set by hand)."""
    if client is None or client.pk is None:
        return "-"
    kyc = ClientKyc.objects.select_related("level").filter(user_id=client.pk).first()
    if kyc is None:
        return format_html(
            '<div id="kyc-panel">Verification not started: the client is at the lowest '
            "level until they submit something. {}</div>",
            submissions_link(client.pk),
        )
    return format_html(
        '<div id="kyc-panel"><p>Level <strong>{}</strong> since {} · risk <strong>{}</strong>'
        " · rules of {}</p>{}<p>{} · {}</p></div>",
        kyc.level,
        kyc.level_changed_at.strftime("%Y-%m-%d"),
        kyc.get_risk_display(),
        kyc.country.name if kyc.country else "no country",
        items_table(client.pk),
        format_html(
            '<a href="{}">Level history and setting the level</a>',
            reverse("admin:kyc_clientkyc_change", args=[client.pk]),
        ),
        submissions_link(client.pk),
    )


CLIENT_PAGE_PANELS.append(("KYC verification", client_kyc_panel))
