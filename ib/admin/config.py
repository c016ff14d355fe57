"""The IB programme's configuration in the admin: its settings (one row),
marketing materials, and read-only lists of referral links and referrals.

- **Programme settings**: no add or delete; the list opens the one row.
- **Materials**: a banner's picture is checked by decoding it (PNG, JPEG,
  GIF or WebP, at most 2 MB), stored under a name of our own with its
  width and height; a text needs ``{link}``. The page previews both with an
  example link.
- **Referral links** (with their clicks and sign-ups) and **referrals**
  (who introduced whom, since when, until when): read-only, scoped for a
  sales manager to their own clients.
"""

from __future__ import annotations

from auditlog.registry import auditlog
from django.conf import settings as django_settings
from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from kyc.admin.common import scoped

from .. import selectors
from ..admin_forms import MaterialForm
from ..models import Material, Plan, Referral, ReferralLink, Settings
from .partners import NotFoundMixin

auditlog.register(Settings)
auditlog.register(Material)

EXAMPLE_CODE = "EXAMPLE"


def example_link() -> str:
    """What a partner's link looks like, for previews."""
    site = getattr(django_settings, "SITE_URL", "").rstrip("/")
    return f"{site}/r/{EXAMPLE_CODE}/"


class _ReadOnly(NotFoundMixin, admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- Programme settings ------------------------------------------------------------------


@admin.register(Settings)
class SettingsAdmin(admin.ModelAdmin):
    fieldsets = [
        (
            "Attribution",
            {
                "description": "A visit through a partner's link sets a cookie for this "
                "many days; a sign-up in that time goes to the partner. With several "
                "partners' links visited, the first or the last wins.",
                "fields": ["attribution", "cookie_days"],
            },
        ),
        ("Partners' dashboard", {"fields": ["show_client_contacts"]}),
        ("Plans", {"fields": ["default_plan"]}),
    ]

    def has_add_permission(self, request) -> bool:
        return False  # one row, made by the migration

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def changelist_view(self, request, extra_context=None):
        row = selectors.programme_settings()
        return HttpResponseRedirect(reverse("admin:ib_settings_change", args=[row.pk]))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "default_plan":
            kwargs["queryset"] = Plan.objects.filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "default_plan" and field is not None:
            # Plans are edited on their own pages, not from here.
            widget = field.widget
            widget.can_add_related = widget.can_change_related = False
            widget.can_delete_related = False
        return field

    def response_change(self, request, obj):
        # Saved: stay on the one page there is (the list would come back here).
        response = super().response_change(request, obj)
        if "_continue" not in request.POST and "_addanother" not in request.POST:
            return HttpResponseRedirect(reverse("admin:ib_settings_change", args=[obj.pk]))
        return response


# --- Materials -------------------------------------------------------------------------------


@admin.register(Material)
class MaterialAdmin(admin.ModelAdmin):
    form = MaterialForm
    list_display = ["title", "kind", "thumbnail", "size", "language", "display_order", "is_active"]
    list_editable = ["display_order", "is_active"]
    list_filter = ["kind", "language", "is_active"]
    search_fields = ["title", "text"]
    ordering = ["display_order", "-created_at"]
    readonly_fields = ["preview", "size"]
    fieldsets = [
        (None, {"fields": ["kind", "title", "language", ("display_order", "is_active")]}),
        ("Banner", {"fields": ["image", "size"]}),
        ("Text", {"fields": ["text"]}),
        ("Preview", {"fields": ["preview"]}),
    ]

    def save_model(self, request, obj: Material, form: MaterialForm, change: bool) -> None:
        if obj.kind == Material.TEXT:
            obj.width = obj.height = None
        elif form.banner_size is not None:
            obj.width, obj.height = form.banner_size
        super().save_model(request, obj, form, change)

    @admin.display(description="size")
    def size(self, obj: Material) -> str:
        if obj.kind != Material.BANNER or not obj.width:
            return "-"
        return f"{obj.width}×{obj.height}"

    @admin.display(description="picture")
    def thumbnail(self, obj: Material) -> str:
        if not obj.image:
            return "-"
        return format_html(
            '<img src="{}" alt="{}" style="max-height: 40px; max-width: 120px">',
            obj.image.url,
            obj.title,
        )

    @admin.display(description="as partners see it")
    def preview(self, obj: Material) -> str:
        link = example_link()
        if obj.pk is None:
            return "Save to see the preview."
        if obj.kind == Material.BANNER:
            if not obj.image:
                return "No picture yet."
            return format_html(
                '<div id="material-preview"><a href="{}"><img src="{}" alt="{}" '
                'style="max-width: 100%; height: auto"></a><p class="help">Linked to the '
                "partner's own link, e.g. {}</p></div>",
                link,
                obj.image.url,
                obj.title,
                link,
            )
        return format_html(
            '<div id="material-preview"><blockquote style="white-space: pre-wrap; margin: 0">'
            "{}</blockquote></div>",
            obj.text.replace("{link}", link),
        )


# --- Referral links and referrals (read-only) --------------------------------------------------


def _signups() -> Coalesce:
    counts = (
        Referral.objects.filter(link=OuterRef("pk"))
        .order_by()
        .values("link")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


@admin.register(ReferralLink)
class ReferralLinkAdmin(_ReadOnly):
    list_display = ["code", "name", "partner_email", "kind", "clicks", "signups", "is_active"]
    list_filter = ["kind", "is_active"]
    list_select_related = ["partner__user"]
    search_fields = ["=code", "name", "partner__user__email"]
    search_help_text = "Exact code, campaign, or the partner's e-mail"
    ordering = ["-created_at", "-id"]
    show_full_result_count = False
    fields = [
        "code",
        "name",
        "partner_email",
        "kind",
        "landing_page",
        "registration_flow",
        "clicks",
        "signups",
        "is_active",
        "created_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        qs = scoped(super().get_queryset(request), request.user, user_path="partner__user")
        return qs.annotate(signups_total=_signups())

    @admin.display(description="partner", ordering="partner__user__email")
    def partner_email(self, obj: ReferralLink) -> str:
        url = reverse("admin:ib_partner_change", args=[obj.partner_id])
        return format_html('<a href="{}">{}</a>', url, obj.partner.user.email)

    @admin.display(description="sign-ups", ordering="signups_total")
    def signups(self, obj: ReferralLink) -> int:
        return obj.signups_total


@admin.register(Referral)
class ReferralAdmin(_ReadOnly):
    list_display = ["client_email", "partner_email", "source", "link", "since", "until"]
    list_filter = ["source", ("until", admin.EmptyFieldListFilter)]
    list_select_related = ["client", "partner__user", "link"]
    search_fields = ["client__email", "partner__user__email", "=link__code"]
    search_help_text = "The client's or the partner's e-mail, or an exact link code"
    ordering = ["-since", "-id"]
    show_full_result_count = False
    fields = ["client_email", "partner_email", "source", "link", "since", "until"]
    readonly_fields = fields

    def get_queryset(self, request):
        return scoped(super().get_queryset(request), request.user, user_path="client")

    @admin.display(description="client", ordering="client__email")
    def client_email(self, obj: Referral) -> str:
        url = reverse("admin:accounts_client_change", args=[obj.client_id])
        return format_html('<a href="{}">{}</a>', url, obj.client.email)

    @admin.display(description="partner", ordering="partner__user__email")
    def partner_email(self, obj: Referral) -> str:
        url = reverse("admin:ib_partner_change", args=[obj.partner_id])
        return format_html('<a href="{}">{}</a>', url, obj.partner.user.email)
