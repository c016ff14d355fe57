"""The admin site: staff only, and only with a verified second factor."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django_otp import user_has_device


class BackofficeAdminSite(admin.AdminSite):
    site_header = "Back office administration"
    site_title = "Back office"
    index_title = "Administration"
    enable_nav_sidebar = True
    # Pages that are not a model's list but belong in an app's menu (the KYC
    # review queue): app label -> [(label, url name, permission)].
    extra_links: dict[str, list[tuple[str, str, str]]] = {}

    def add_link(self, app_label: str, label: str, url_name: str, permission: str) -> None:
        links = [link for link in self.extra_links.get(app_label, []) if link[1] != url_name]
        self.extra_links[app_label] = [*links, (label, url_name, permission)]

    def get_app_list(self, request: HttpRequest, app_label: str | None = None):
        apps = super().get_app_list(request, app_label)
        for app in apps:
            links = [
                {
                    "name": label,
                    "object_name": url_name,
                    "admin_url": reverse(url_name),
                    "add_url": None,
                    "view_only": True,
                    "perms": {"view": True},
                }
                for label, url_name, permission in self.extra_links.get(app["app_label"], [])
                if request.user.has_perm(permission)
            ]
            app["models"] = links + app["models"]
        return apps

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(
            user.is_active and user.is_staff and getattr(user, "is_verified", lambda: False)()
        )

    def login(self, request: HttpRequest, extra_context=None):
        """Send staff through the site's own sign-in (password, then the code).

        A signed-in staff member with no second factor is led to enrol one.
        """
        next_url = request.GET.get("next") or reverse("admin:index")
        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff:
            if not user_has_device(user, confirmed=True):
                messages.warning(
                    request,
                    "Staff must use two-factor authentication. Set it up to open the admin.",
                )
                enrol = reverse(settings.OTP_ENROL_URL_NAME)
                return HttpResponseRedirect(f"{enrol}?{urlencode({'next': next_url})}")
            # Signed in without the code in this session: sign in again fully.
            logout(request)
            messages.info(request, "Sign in again with your authentication code.")
        elif user.is_authenticated:
            messages.error(request, "This account has no access to the administration.")
            return HttpResponseRedirect(reverse("room:dashboard"))
        login_url = reverse(settings.LOGIN_URL)
        return HttpResponseRedirect(f"{login_url}?{urlencode({'next': next_url})}")
