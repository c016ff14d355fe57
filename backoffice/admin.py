from django.contrib import admin
from django.utils.html import format_html

from .models import Brand, Event, EventDelivery, Notification


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["name", "swatches", "support_email", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "logo", "support_email"]}),
        (
            "Colours",
            {"fields": ["primary_color", "accent_color", "text_color", "background_color"]},
        ),
    ]

    @admin.display(description="colours")
    def swatches(self, obj: Brand) -> str:
        return format_html(
            '<span style="display:inline-block;width:1.2em;height:1.2em;background:{}"></span> '
            '<span style="display:inline-block;width:1.2em;height:1.2em;background:{}"></span>',
            obj.primary_color,
            obj.accent_color,
        )

    def has_add_permission(self, request) -> bool:
        return super().has_add_permission(request) and not Brand.objects.exists()

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class DeliveryInline(admin.TabularInline):
    model = EventDelivery
    extra = 0
    can_delete = False
    readonly_fields = ["subscriber", "delivered_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    """The outbox, read-only: what happened, and who has handled it."""

    list_display = [
        "id",
        "name",
        "client",
        "subject_type",
        "subject_id",
        "created_at",
        "completed_at",
    ]
    list_filter = ["name", ("completed_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "subject_id", "client__email"]
    date_hierarchy = "created_at"
    list_select_related = ["client"]
    inlines = [DeliveryInline]
    readonly_fields = [f.name for f in Event._meta.fields]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["title", "user", "kind", "created_at", "read_at"]
    list_filter = ["kind"]
    search_fields = ["user__email", "title"]
    list_select_related = ["user"]
    readonly_fields = ["user", "kind", "title", "body", "event", "created_at", "read_at"]

    def has_add_permission(self, request) -> bool:
        return False
