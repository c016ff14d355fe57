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
