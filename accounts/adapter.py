"""How django-allauth signs people up and in, for this project."""

from __future__ import annotations

import logging

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest

from backoffice.events import publish

from . import services
from .models import User

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest | None) -> str:
    if request is None:
        return ""
    return request.META.get("REMOTE_ADDR", "")


def _referral_cookie(request: HttpRequest | None) -> str:
    """The attribution cookie a partner's link set (its name is a setting;
    the IB app reads the value from the ``client.registered`` event)."""
    if request is None:
        return ""
    return request.COOKIES.get(getattr(settings, "IB_COOKIE_NAME", "ref"), "")[:64]


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request, user, form, commit=True):
        user = super().save_user(request, user, form, commit=commit)
        if commit:
            # The sign-up form of a registration flow hands over what it
            # gathered (accounts/forms_signup.py); other forms have nothing.
            gathered = getattr(form, "registration_data", None)
            services.client_register(
                user=user,
                ip=client_ip(request),
                referrer=request.META.get("HTTP_REFERER", "") if request else "",
                registration=gathered() if callable(gathered) else None,
                referral=_referral_cookie(request),
            )
        return user

    def confirm_email(self, request, email_address):
        confirmed = super().confirm_email(request, email_address)
        if confirmed:
            services.client_email_confirmed(user=email_address.user, email=email_address.email)
        return confirmed

    def authentication_failed(self, request, **credentials) -> None:
        email = (credentials.get("email") or credentials.get("username") or "").lower()
        user = User.objects.filter(email__iexact=email).first() if email else None
        publish(
            "security.login_failed",
            user,
            {"reason": "password", "ip": client_ip(request), "email": email[:254]},
        )

    def get_login_stages(self) -> list[str]:
        # The second factor comes last, after the e-mail address is confirmed.
        return [*super().get_login_stages(), "accounts.stages.TwoFactorStage"]
