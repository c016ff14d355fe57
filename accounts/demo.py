"""Demo data for the embedded default: staff per role, a few traders.

Idempotent: running it again changes nothing that is already there.
"""

from __future__ import annotations

import hashlib
from base64 import b32encode
from dataclasses import dataclass
from datetime import date

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from backoffice.models import Brand

from . import roles
from .models import ClientProfile, User

DEMO_DOMAIN = "demo.test"


@dataclass
class DemoLogin:
    email: str
    role: str
    totp_secret: str = ""


def demo_totp_key(email: str) -> str:
    """A fixed authenticator key per demo user (hex), so logins stay valid."""
    return hashlib.sha1(f"demo-totp:{email}".encode(), usedforsecurity=False).hexdigest()


def base32_secret(hex_key: str) -> str:
    return b32encode(bytes.fromhex(hex_key)).decode().rstrip("=")


TRADERS = [
    {
        "email": f"alice@{DEMO_DOMAIN}",
        "first_name": "Alice",
        "last_name": "Martin",
        "country": "GB",
        "city": "London",
        "postal_code": "EC1A 1BB",
        "phone": "+442079460958",
        "address_line1": "1 Demo Street",
        "date_of_birth": date(1988, 4, 12),
        "manager": "sales",
    },
    {
        "email": f"bruno@{DEMO_DOMAIN}",
        "first_name": "Bruno",
        "last_name": "Rossi",
        "country": "IT",
        "city": "Milano",
        "postal_code": "20121",
        "phone": "+390212345678",
        "address_line1": "Via Demo 2",
        "date_of_birth": date(1979, 11, 3),
        "manager": "sales",
    },
    {
        "email": f"chen@{DEMO_DOMAIN}",
        "first_name": "Chen",
        "last_name": "Wei",
        "country": "SG",
        "city": "Singapore",
        "postal_code": "049315",
        "phone": "+6561234567",
        "address_line1": "3 Demo Road",
        "date_of_birth": date(1992, 7, 21),
        "manager": None,
    },
]


def seed_and_describe() -> list[str]:
    """The accounts seeder for ``manage.py seed_demo``: logins to print."""
    logins = seed_demo()
    width = max(len(login.email) for login in logins)
    lines = ["Demo logins", f"  password for all: {settings.DEMO_PASSWORD}"]
    for login in logins:
        line = f"  {login.email:<{width}}  {login.role}"
        if login.totp_secret:
            line += f"  (authenticator key {login.totp_secret})"
        lines.append(line)
    lines += [
        "",
        "  Staff sign in at /admin/ with the password, then a code from an authenticator",
        "  app holding the key shown, or print the current code with:",
        "    .venv/bin/python manage.py demo_otp administrator@demo.test",
    ]
    return lines


@transaction.atomic
def seed_demo() -> list[DemoLogin]:
    Brand.objects.get_or_create(pk=1, defaults={"name": "Demo Broker"})
    logins: list[DemoLogin] = []
    staff: dict[str, User] = {}
    for role in roles.ROLES:
        email = f"{role.lower()}@{DEMO_DOMAIN}"
        user, created = User.objects.get_or_create(
            email=email, defaults={"is_staff": True, "first_name": role, "last_name": "Demo"}
        )
        if created:
            user.set_password(settings.DEMO_PASSWORD)
            user.save(update_fields=["password"])
        user.groups.add(Group.objects.get(name=role))
        _verified_email(user)
        key = demo_totp_key(email)
        TOTPDevice.objects.get_or_create(
            user=user, name="Demo authenticator", defaults={"key": key, "confirmed": True}
        )
        staff[role.lower()] = user
        logins.append(DemoLogin(email, f"staff: {role}", base32_secret(key)))

    for data in TRADERS:
        data = dict(data)
        email = data.pop("email")
        manager = data.pop("manager")
        user, created = User.objects.get_or_create(
            email=email,
            defaults={"first_name": data.pop("first_name"), "last_name": data.pop("last_name")},
        )
        data.pop("first_name", None)
        data.pop("last_name", None)
        if created:
            user.set_password(settings.DEMO_PASSWORD)
            user.save(update_fields=["password"])
        _verified_email(user)
        ClientProfile.objects.get_or_create(
            user=user, defaults={**data, "manager": staff.get(manager) if manager else None}
        )
        logins.append(DemoLogin(email, "trader" + (f" (managed by {manager})" if manager else "")))
    return logins


def _verified_email(user: User) -> None:
    EmailAddress.objects.get_or_create(
        user=user, email=user.email, defaults={"verified": True, "primary": True}
    )
