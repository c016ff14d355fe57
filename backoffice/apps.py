from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class BackofficeConfig(AppConfig):
    """The core shared by every app: events, notifications, branding, health."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "backoffice"
    verbose_name = "Back office"


class BackofficeAdminConfig(AdminConfig):
    """The Django admin, with a site that requires a verified second factor."""

    default_site = "backoffice.admin_site.BackofficeAdminSite"
