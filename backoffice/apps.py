from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class BackofficeConfig(AppConfig):
    """The core shared by every app: events, notifications, branding, health."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        post_migrate.connect(_configure_site, sender=self)


def _configure_site(sender, using="default", **kwargs) -> None:
    """Name the site (used in e-mails) after SITE_URL."""
    from urllib.parse import urlsplit

    from django.conf import settings
    from django.contrib.sites.models import Site

    domain = urlsplit(settings.SITE_URL).netloc or "localhost"
    Site.objects.using(using).update_or_create(
        pk=settings.SITE_ID, defaults={"domain": domain, "name": domain}
    )


class BackofficeAdminConfig(AdminConfig):
    """The Django admin, with a site that requires a verified second factor."""

    default_site = "backoffice.admin_site.BackofficeAdminSite"
