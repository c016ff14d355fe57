"""Writes of the accounts app: registration, profiles, two-factor authentication."""

from __future__ import annotations

import re
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.authtoken.models import Token

from backoffice.events import publish

from ..exceptions import ApiAuthError, TwoFactorError
from ..models import ClientProfile, User, new_security_stamp
from .registration import RegistrationData, registration_record

PROFILE_USER_FIELDS = ("first_name", "last_name")
PROFILE_FIELDS = (
    "date_of_birth",
    "country",
    "phone",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "language",
)
# What an attribution cookie may carry into the ``client.registered`` event
# (a click token, e.g. ``secrets.token_urlsafe``); anything else is dropped.
REFERRAL_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
TOTP_DEVICE_NAME = "Authenticator app"
BACKUP_DEVICE_NAME = "Backup codes"


@transaction.atomic
def client_lock(user: User) -> None:
    """Lock the client's row until the end of the current transaction, so
    that decisions about the client's recent activity (a limit per day) are
    taken one at a time."""
    User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def client_register(
    *,
    user: User,
    ip: str = "",
    referrer: str = "",
    registration: RegistrationData | None = None,
    referral: str = "",
) -> ClientProfile:
    """Give a newly signed-up user a client profile and announce the sign-up.

    With ``registration`` (what the sign-up form of a registration flow
    gathered), also record the profile fields, answers, flow, campaign and
    consents (:func:`registration_record`, which may refuse with
    ``RegistrationError``). The event names the flow and campaign, never the
    answers: no personal data in events. ``referral`` is the attribution
    cookie the visitor brought (a partner's link click), passed on in the
    event only when it looks like a click token.
    """
    profile, _ = ClientProfile.objects.get_or_create(user=user)
    if registration is not None:
        profile = registration_record(user=user, profile=profile, registration=registration, ip=ip)
    publish(
        "client.registered",
        user,
        {
            "ip": ip,
            "referrer": referrer[:200],
            "flow_id": registration.flow_id if registration else None,
            "campaign": registration.campaign if registration else "",
            "referral": referral if REFERRAL_TOKEN_PATTERN.fullmatch(referral or "") else "",
        },
    )
    return profile


@transaction.atomic
def client_email_confirmed(*, user: User, email: str) -> None:
    publish("client.email_confirmed", user, {"email": email})


@transaction.atomic
def client_profile_update(*, actor: User, user: User, data: dict[str, Any]) -> ClientProfile:
    """Change a client's names and profile; publish which fields changed.

    ``data`` is a form's cleaned data; unknown keys are ignored. The event
    names the fields, not their values, so that personal data stays out of
    the outbox.
    """
    user = User.objects.select_for_update().get(pk=user.pk)
    profile, _ = ClientProfile.objects.select_for_update().get_or_create(user=user)
    changed: list[str] = []
    for field in PROFILE_USER_FIELDS:
        if field in data and getattr(user, field) != data[field]:
            setattr(user, field, data[field])
            changed.append(field)
    for field in PROFILE_FIELDS:
        if field in data and getattr(profile, field) != data[field]:
            setattr(profile, field, data[field])
            changed.append(field)
    user_fields = [f for f in changed if f in PROFILE_USER_FIELDS]
    if user_fields:
        user.save(update_fields=user_fields)
    if len(changed) > len(user_fields):
        profile.save()
    if changed:
        publish("client.profile_changed", user, {"fields": changed}, actor=actor)
    return profile


@transaction.atomic
def client_assign_manager(*, actor: User, client: User, manager: User | None) -> ClientProfile:
    """Assign the client to a staff member (a sales manager), or to nobody."""
    if manager is not None and not manager.is_staff:
        raise ValueError("Only staff can manage clients.")
    profile, _ = ClientProfile.objects.select_for_update().get_or_create(user=client)
    previous = profile.manager_id
    if previous != (manager.pk if manager else None):
        profile.manager = manager
        profile.save(update_fields=["manager", "updated_at"])
        publish(
            "client.manager_assigned",
            client,
            {"manager": manager.email if manager else None, "previous_id": previous},
            actor=actor,
        )
    return profile


@transaction.atomic
def client_set_active(*, actor: User, user: User, active: bool) -> None:
    """Block (or unblock) a client's access; a blocked client cannot sign in."""
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])
        publish("client.activated" if active else "client.deactivated", user, {}, actor=actor)


def totp_device_confirmed(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


@transaction.atomic
def totp_enrolment_start(*, user: User) -> TOTPDevice:
    """Create (or reuse) the unconfirmed authenticator device to scan."""
    if totp_device_confirmed(user):
        raise TwoFactorError("Two-factor authentication is already on.")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


@transaction.atomic
def totp_enrolment_confirm(*, user: User, token: str) -> list[str]:
    """Confirm the pending authenticator with a code; return new backup codes.

    The codes are returned once, to be shown once; only their use is stored.
    """
    if totp_device_confirmed(user):
        raise TwoFactorError("Two-factor authentication is already on.")
    device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
    if device is None:
        raise TwoFactorError("Start the set-up again: no authenticator is waiting for a code.")
    allowed, info = device.verify_is_allowed()
    if not allowed:
        raise TwoFactorError(_throttle_message(info))
    if not device.verify_token(_clean(token)):
        raise TwoFactorError("That code is not valid. Check the time on your phone and try again.")
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    codes = _backup_codes_replace(user)
    sessions_invalidate_others(user=user)
    publish("security.2fa_enabled", user, {"device": "totp"}, actor=user)
    return codes


@transaction.atomic
def backup_codes_regenerate(*, user: User, token: str) -> list[str]:
    """Replace the backup codes, after a valid code from the authenticator."""
    device = totp_device_confirmed(user)
    if device is None:
        raise TwoFactorError("Two-factor authentication is off.")
    allowed, info = device.verify_is_allowed()
    if not allowed:
        raise TwoFactorError(_throttle_message(info))
    if not device.verify_token(_clean(token)):
        raise TwoFactorError("That code is not valid.")
    return _backup_codes_replace(user)


@transaction.atomic
def two_factor_disable(*, user: User, token: str) -> None:
    """Turn two-factor authentication off; needs a valid code or backup code."""
    if totp_device_confirmed(user) is None:
        raise TwoFactorError("Two-factor authentication is already off.")
    if two_factor_verify(user=user, token=token) is None:
        raise TwoFactorError("That code is not valid.")
    TOTPDevice.objects.filter(user=user).delete()
    StaticDevice.objects.filter(user=user).delete()
    sessions_invalidate_others(user=user)
    publish("security.2fa_disabled", user, {}, actor=user)


def two_factor_verify(*, user: User, token: str) -> Device | None:
    """The device that accepts this code, or None.

    Six digits are checked against the authenticator (a code cannot be used
    twice); anything else against the backup codes (each is used up). Only
    the device the code is for is tried, so that a backup code does not count
    as a failed authenticator attempt. Raises TwoFactorError while the device
    is throttled after wrong codes.
    """
    token = _clean(token)
    if len(token) == 6 and token.isdigit():
        device: Device | None = totp_device_confirmed(user)
    else:
        device = StaticDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        return None
    allowed, info = device.verify_is_allowed()
    if not allowed:
        raise TwoFactorError(_throttle_message(info))
    return device if device.verify_token(token) else None


def _throttle_message(info: dict | None) -> str:
    locked_until = (info or {}).get("locked_until")
    if locked_until:
        seconds = max(1, int((locked_until - timezone.now()).total_seconds()) + 1)
        return f"Too many wrong codes. Wait {seconds} seconds and try again."
    return "Too many wrong codes. Wait a moment and try again."


def sessions_invalidate_others(*, user: User) -> None:
    """Sign the user out everywhere, by rotating the security stamp that every
    session's auth hash covers. The caller keeps its own session with
    ``django.contrib.auth.update_session_auth_hash(request, user)``."""
    user.security_stamp = new_security_stamp()
    User.objects.filter(pk=user.pk).update(security_stamp=user.security_stamp)
    # API tokens are sessions too.
    Token.objects.filter(user=user).delete()


def _backup_codes_replace(user: User) -> list[str]:
    device, _ = StaticDevice.objects.get_or_create(
        user=user, defaults={"name": BACKUP_DEVICE_NAME, "confirmed": True}
    )
    device.token_set.all().delete()
    codes = [_backup_code() for _ in range(settings.BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    return codes


def _backup_code() -> str:
    # 10 characters from an alphabet without look-alikes: ~50 bits.
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(10))


def _clean(token: str) -> str:
    return "".join((token or "").split()).replace("-", "").lower()


def _api_failures_key(email: str) -> str:
    return f"api-login-failures:{email.strip().lower()}"


def api_token_issue(*, request, email: str, password: str, otp_code: str = "") -> Token:
    """A REST API token for a client, after the same checks as the sign-in
    page: password, confirmed e-mail, the 2FA code when 2FA is on, and the
    same lock-out after repeated failures for the address."""
    from allauth.account.models import EmailAddress

    key = _api_failures_key(email)
    if cache.get(key, 0) >= settings.LOGIN_ATTEMPTS_LIMIT:
        raise ApiAuthError("Too many failed sign-in attempts. Try again later.", status=429)
    user = authenticate(request, email=email, password=password)
    if user is None:
        _api_failure(key)
        raise ApiAuthError("The e-mail address or password is not correct.")
    if not EmailAddress.objects.filter(user=user, verified=True).exists():
        raise ApiAuthError("Confirm your e-mail address first.", status=403)
    if totp_device_confirmed(user) is not None:
        if not otp_code:
            raise ApiAuthError("Enter the code from your authenticator app.", code="otp_required")
        try:
            device = two_factor_verify(user=user, token=otp_code)
        except TwoFactorError as exc:
            raise ApiAuthError(str(exc), status=429, code="otp_throttled") from exc
        if device is None:
            _api_failure(key)
            raise ApiAuthError("That code is not valid.", code="otp_invalid")
    cache.delete(key)
    token, _ = Token.objects.get_or_create(user=user)
    publish("security.api_token_issued", user, {}, actor=user)
    return token


def _api_failure(key: str) -> None:
    cache.add(key, 0, timeout=settings.LOGIN_ATTEMPTS_TIMEOUT)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.LOGIN_ATTEMPTS_TIMEOUT)


def api_token_revoke(*, user: User) -> None:
    Token.objects.filter(user=user).delete()
