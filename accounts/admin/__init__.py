from __future__ import annotations

from collections.abc import Callable

from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.contrib.contenttypes.models import ContentType
from django.db.models import Exists, OuterRef, Q
from django.utils.html import format_html, format_html_join
from django_otp.plugins.otp_totp.models import TOTPDevice

from backoffice.models import Brand
from backoffice.selectors import client_timeline

from .. import selectors, services
from ..models import Client, ClientProfile, StaffUser, User

auditlog.register(User, exclude_fields=["password", "last_login"])
auditlog.register(Client, exclude_fields=["password", "last_login"])
auditlog.register(StaffUser, exclude_fields=["password", "last_login"])
auditlog.register(ClientProfile)
auditlog.register(Brand)
auditlog.register(Group, m2m_fields={"permissions"})


# Concrete fields only: auditlog also lists reverse relations on creation.
_AUDITED_FIELDS = {f.name for f in User._meta.concrete_fields} | {
    f.name for f in ClientProfile._meta.concrete_fields
}


class ClientProfileInline(admin.StackedInline):
    model = ClientProfile
    fk_name = "user"
    can_delete = False
    min_num = 1
    max_num = 1
    fields = [
        "date_of_birth",
        "country",
        "phone",
        ("address_line1", "address_line2"),
        ("city", "state", "postal_code"),
        "language",
        "manager",
    ]

    def get_readonly_fields(self, request, obj=None):
        if request.user.has_perm("accounts.assign_manager"):
            return []
        return ["manager"]


# Read-only panels other apps show on the client's page (the KYC app's, for
# one): (title, display function of the client returning HTML), appended from
# their own admin module, since accounts may not import them (apps depend one
# way, ARCHITECTURE.md). No form, so saving the page is unchanged.
CLIENT_PAGE_PANELS: list[tuple[str, Callable[[Client], str]]] = []


def _two_factor_annotation():
    return Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True))


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    """Clients (traders). A sales manager sees and edits only their own clients."""

    list_display = [
        "email",
        "full_name",
        "country",
        "manager",
        "two_factor",
        "is_active",
        "date_joined",
    ]
    list_filter = [
        "is_active",
        ("profile__country", admin.AllValuesFieldListFilter),
        ("profile__manager", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["email", "first_name", "last_name", "profile__phone"]
    ordering = ["-date_joined"]
    date_hierarchy = "date_joined"
    show_full_result_count = False
    inlines = [ClientProfileInline]
    fieldsets = [
        (None, {"fields": ["email", ("first_name", "last_name"), "is_active"]}),
        ("Dates", {"fields": [("date_joined", "last_login")]}),
        ("Sign-up: flow, answers and consents", {"fields": ["sign_up"]}),
        ("Audit history (staff changes)", {"fields": ["audit_history"]}),
        ("Activity timeline", {"fields": ["activity_timeline"]}),
    ]
    readonly_fields = [
        "email",
        "date_joined",
        "last_login",
        "sign_up",
        "audit_history",
        "activity_timeline",
    ]

    def get_fieldsets(self, request, obj=None):
        panels = [(title, {"fields": [panel]}) for title, panel in CLIENT_PAGE_PANELS]
        return [*super().get_fieldsets(request, obj), *panels]

    def get_readonly_fields(self, request, obj=None):
        panels = [panel for _title, panel in CLIENT_PAGE_PANELS]
        return [*super().get_readonly_fields(request, obj), *panels]

    def get_queryset(self, request):
        return (
            selectors.clients_visible_to(staff=request.user)
            .select_related("profile", "profile__manager")
            .annotate(has_2fa=_two_factor_annotation())
        )

    def has_add_permission(self, request) -> bool:
        return False  # clients sign up themselves

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deactivate instead: the history must stay

    @admin.display(description="name", ordering="last_name")
    def full_name(self, obj: Client) -> str:
        return f"{obj.first_name} {obj.last_name}".strip()

    @admin.display(description="country", ordering="profile__country")
    def country(self, obj: Client) -> str:
        profile = getattr(obj, "profile", None)
        return profile.country.name if profile and profile.country else ""

    @admin.display(description="manager", ordering="profile__manager__email")
    def manager(self, obj: Client) -> str:
        profile = getattr(obj, "profile", None)
        return str(profile.manager) if profile and profile.manager else ""

    @admin.display(description="2FA", boolean=True, ordering="has_2fa")
    def two_factor(self, obj: Client) -> bool:
        return getattr(obj, "has_2fa", False)

    @admin.display(description="sign-up")
    def sign_up(self, obj: Client) -> str:
        if obj.pk is None:
            return "-"
        return registration.client_registration_html(obj)

    @admin.display(description="changes by staff")
    def audit_history(self, obj: Client) -> str:
        if obj.pk is None:
            return "-"
        user_types = ContentType.objects.get_for_models(
            User, Client, StaffUser, for_concrete_models=False
        ).values()
        profile_type = ContentType.objects.get_for_model(ClientProfile)
        query = Q(content_type__in=user_types, object_pk=str(obj.pk))
        profile = getattr(obj, "profile", None)
        if profile is not None:
            query |= Q(content_type=profile_type, object_pk=str(profile.pk))
        entries = LogEntry.objects.filter(query).select_related("actor").order_by("-timestamp")[:50]
        rows = [
            (
                e.timestamp.strftime("%Y-%m-%d %H:%M"),
                e.actor or "system",
                e.get_action_display(),
                "; ".join(
                    f"{k}: {' → '.join(map(str, v))}"
                    for k, v in e.changes_dict.items()
                    if k in _AUDITED_FIELDS
                ),
            )
            for e in entries
        ]
        if not rows:
            return "No changes yet."
        return format_html(
            '<table class="audit"><thead><tr><th>when</th><th>who</th><th>action</th>'
            "<th>changes</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.display(description="events")
    def activity_timeline(self, obj: Client) -> str:
        if obj.pk is None:
            return "-"
        rows = [
            (
                e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                e.name,
                e.actor or "",
                ", ".join(f"{k}={v}" for k, v in sorted(e.payload.items()) if k != "email")[:200],
            )
            for e in client_timeline(client=obj, limit=50)
        ]
        if not rows:
            return "No activity yet."
        return format_html(
            '<table class="timeline"><thead><tr><th>when</th><th>event</th><th>by</th>'
            "<th>details</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    def save_model(self, request, obj, form, change) -> None:
        """Nothing here: save_related() saves the client and profile together."""

    def save_related(self, request, form, formsets, change) -> None:
        # One write path: the same services as the room, one event per save.
        client = form.instance
        data = {k: form.cleaned_data[k] for k in ("first_name", "last_name")}
        manager_changed, manager = False, None
        for formset in formsets:
            # The admin's change message reads these; the services do the saving.
            formset.new_objects, formset.deleted_objects, formset.changed_objects = [], [], []
            if formset.model is not ClientProfile:
                continue
            for profile_form in formset.forms:
                if profile_form.has_changed():
                    data.update(profile_form.cleaned_data)
                    formset.changed_objects.append(
                        (profile_form.instance, profile_form.changed_data)
                    )
                    if "manager" in profile_form.changed_data:
                        manager_changed, manager = True, profile_form.cleaned_data.get("manager")
        services.client_profile_update(actor=request.user, user=client, data=data)
        if manager_changed:
            services.client_assign_manager(actor=request.user, client=client, manager=manager)
        if "is_active" in form.changed_data:
            services.client_set_active(actor=request.user, user=client, active=client.is_active)


class StaffCreationForm(AdminUserCreationForm):
    class Meta:
        model = StaffUser
        fields = ["email"]


class StaffChangeForm(UserChangeForm):
    class Meta:
        model = StaffUser
        fields = "__all__"


@admin.register(StaffUser)
class StaffUserAdmin(UserAdmin):
    """Staff accounts and their roles. Administrators only."""

    form = StaffChangeForm
    add_form = StaffCreationForm
    list_display = [
        "email",
        "first_name",
        "last_name",
        "roles",
        "two_factor",
        "is_active",
        "last_login",
    ]
    list_filter = ["groups", "is_active", "is_superuser"]
    search_fields = ["email", "first_name", "last_name"]
    ordering = ["email"]
    filter_horizontal = ["groups"]
    fieldsets = [
        (None, {"fields": ["email", "password"]}),
        ("Name", {"fields": [("first_name", "last_name")]}),
        ("Roles", {"fields": ["groups", "is_active", "is_superuser"]}),
        ("Dates", {"fields": [("last_login", "date_joined")]}),
    ]
    add_fieldsets = [
        (None, {"classes": ["wide"], "fields": ["email", "password1", "password2", "groups"]}),
    ]
    readonly_fields = ["last_login", "date_joined"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related("groups")
            .annotate(has_2fa=_two_factor_annotation())
        )

    @admin.display(description="roles")
    def roles(self, obj: StaffUser) -> str:
        return ", ".join(sorted(g.name for g in obj.groups.all()))

    @admin.display(description="2FA", boolean=True, ordering="has_2fa")
    def two_factor(self, obj: StaffUser) -> bool:
        return getattr(obj, "has_2fa", False)

    def save_model(self, request, obj, form, change) -> None:
        obj.is_staff = True
        super().save_model(request, obj, form, change)


# Groups are the staff roles.
admin.site.unregister(Group)


@admin.register(Group)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name"]
    filter_horizontal = ["permissions"]
    search_fields = ["name"]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "permissions":
            kwargs["queryset"] = db_field.related_model.objects.select_related("content_type")
        return super().formfield_for_manytomany(db_field, request, **kwargs)


from . import (  # noqa: E402 - registering the admins of these areas
    registration,  # the registration constructor; also the client page's sign-up panel
    trading,  # noqa: F401
)
from .deals import DealAdmin  # noqa: E402, F401 - registers the deals admin
