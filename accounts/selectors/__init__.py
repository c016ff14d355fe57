"""Reads of the accounts app."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from backoffice.selectors import client_activity_recent, notifications_recent

from .. import roles
from ..models import Client, ClientProfile, User


@dataclass
class TwoFactorState:
    enabled: bool
    pending_device: TOTPDevice | None
    backup_codes_left: int


def two_factor_state(*, user: User) -> TwoFactorState:
    devices = list(TOTPDevice.objects.filter(user=user))
    enabled = any(d.confirmed for d in devices)
    pending = next((d for d in devices if not d.confirmed), None)
    codes_left = (
        StaticToken.objects.filter(device__user=user, device__confirmed=True).count()
        if enabled
        else 0
    )
    return TwoFactorState(
        enabled=enabled, pending_device=None if enabled else pending, backup_codes_left=codes_left
    )


def client_country(*, user: User) -> str:
    """The client's country of residence (ISO code), "" when not given: read
    from the database, not from a profile cached on the user, since the KYC
    rules that ask must follow a change at once. (Payments' pages, which have
    the profile loaded already, read it from there:
    ``payments.selectors.deposits.client_country``.)"""
    value = ClientProfile.objects.filter(user=user).values_list("country", flat=True).first()
    return value or ""


def profile_for_user(*, user: User) -> ClientProfile:
    """The user's profile (an empty one, unsaved, if they have none yet)."""
    try:
        return user.profile
    except ClientProfile.DoesNotExist:
        return ClientProfile(user=user)


@dataclass
class Dashboard:
    profile: ClientProfile
    two_factor_enabled: bool
    notifications: list
    activity: list


def dashboard_for_user(*, user: User) -> Dashboard:
    profile = profile_for_user(user=user)
    return Dashboard(
        profile=profile,
        two_factor_enabled=TOTPDevice.objects.filter(user=user, confirmed=True).exists(),
        notifications=notifications_recent(user=user, limit=5),
        activity=client_activity_recent(client=user, limit=8),
    )


def staff_role_names(user: User) -> set[str]:
    cached = getattr(user, "_role_names", None)
    if cached is None:
        cached = set(user.groups.values_list("name", flat=True))
        user._role_names = cached
    return cached


def clients_visible_to(*, staff: User) -> QuerySet[Client]:
    """The clients a staff member may see: all of them, except for a sales
    manager with no other role, who sees only the clients assigned to them."""
    qs = Client.objects.all()
    if staff.is_superuser or staff_role_names(staff) & set(roles.ALL_CLIENTS_ROLES):
        return qs
    return qs.filter(profile__manager=staff)
