"""Demo data for the embedded default: staff per role, a few traders, and
the traders' trading accounts with a simulated trading history.

Idempotent: running it again changes nothing that is already there.
"""

from __future__ import annotations

import hashlib
from base64 import b32encode
from dataclasses import dataclass
from datetime import date, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from backoffice.models import Brand

from . import roles
from .exceptions import TradingError
from .models import (
    AccountType,
    ClientProfile,
    Deal,
    DemoPlatformAccount,
    DemoPlatformDeal,
    Platform,
    TradingAccount,
    User,
)
from .platforms import simulator
from .services.trading import trading_account_open, trading_account_refresh

DEMO_DOMAIN = "demo.test"
JOINED_AGO = timedelta(days=160)


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
            defaults={
                "first_name": data.pop("first_name"),
                "last_name": data.pop("last_name"),
                # They joined before the five months of history the other
                # seeders give them (payments.demo.DAYS).
                "date_joined": timezone.now() - JOINED_AGO,
            },
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


# --- Trading accounts and their history ---------------------------------------------------
#
# The demo traders' accounts on the built-in demo platform, opened through the
# service as a trader would. A demo account gets its virtual money from the
# platform on opening; a live account starts empty, because money reaches it
# only through the ledger (a wallet-to-account transfer, ``payments``). The
# market simulator then trades every seeded account that holds money and has
# no deals yet: :func:`seed_trading_history`, which the payments seeder calls
# again once it has funded the live accounts through transfers.

TRADING_ACCOUNTS = [
    # (trader, account type on the demo platform)
    (f"alice@{DEMO_DOMAIN}", "Standard USD"),
    (f"alice@{DEMO_DOMAIN}", "Demo USD"),
    (f"bruno@{DEMO_DOMAIN}", "Standard EUR"),
    (f"chen@{DEMO_DOMAIN}", "Demo USD"),
]
DEMO_PLATFORM = "demo"
HISTORY_DEALS = 300  # per account
HISTORY_DAYS = 90
HISTORY_SEED = "accounts-demo-v1"


def seed_trading() -> list[str]:
    """Open the demo traders' trading accounts (where missing), give those
    that hold money a simulated history, and describe them."""
    platform = Platform.objects.filter(identifier=DEMO_PLATFORM, kind="demo").first()
    if platform is None:
        return ["", "Demo trading accounts: there is no demo platform (migrations not run?)."]
    problems = seed_trading_accounts(platform)
    seed_trading_history()
    return _describe_trading(platform, problems)


def seed_trading_accounts(platform: Platform) -> list[str]:
    """Open each of :data:`TRADING_ACCOUNTS` that the trader does not hold
    yet. Returns what could not be opened, and why."""
    problems = []
    users = {u.email: u for u in User.objects.filter(email__in={e for e, _ in TRADING_ACCOUNTS})}
    for email, type_name in TRADING_ACCOUNTS:
        user = users.get(email)
        account_type = AccountType.objects.filter(platform=platform, name=type_name).first()
        if user is None or account_type is None:
            problems.append(f"{email} {type_name}: no such {'trader' if not user else 'type'}")
            continue
        if TradingAccount.objects.filter(user=user, account_type=account_type).exists():
            continue
        try:
            trading_account_open(user=user, account_type=account_type)
        except TradingError as exc:
            problems.append(f"{email} {type_name}: {exc}")
    return problems


def seed_trading_history(*, emails: list[str] | None = None) -> int:
    """Trade the demo traders' accounts on the demo platform that hold money
    and have no deals yet (all demo traders, or those of ``emails``): a few
    hundred deals each over the last :data:`HISTORY_DAYS` days, pulled into
    the trading history, balances refreshed. Returns the deals written;
    running it again writes none."""
    platform = Platform.objects.filter(identifier=DEMO_PLATFORM, kind="demo").first()
    if platform is None:
        return 0
    accounts = TradingAccount.objects.filter(
        platform=platform, user__email__in=emails or [email for email, _ in TRADING_ACCOUNTS]
    )
    logins = list(accounts.values_list("login", flat=True))
    traded = set(
        DemoPlatformDeal.objects.filter(platform=platform, login__in=logins)
        .values_list("login", flat=True)
        .distinct()
    )
    untraded = [login for login in logins if login not in traded]
    funded = list(
        DemoPlatformAccount.objects.filter(
            platform=platform, login__in=untraded, balance__gt=0
        ).values_list("login", flat=True)
    )
    if not funded:
        return 0
    written = simulator.simulate(
        platform=platform,
        accounts=funded,
        deals_per_account=HISTORY_DEALS,
        days=HISTORY_DAYS,
        seed=HISTORY_SEED,
    )
    simulator.deals_sync(platform)
    for account in accounts.filter(login__in=funded).select_related("platform"):
        trading_account_refresh(account=account)
    return written


def _describe_trading(platform: Platform, problems: list[str]) -> list[str]:
    accounts = list(
        TradingAccount.objects.filter(
            platform=platform, user__email__in=[email for email, _ in TRADING_ACCOUNTS]
        )
        .select_related("user", "account_type")
        .order_by("user__email", "is_demo", "login")
    )
    deals = dict(
        Deal.objects.filter(account__in=accounts)
        .values("account")
        .annotate(n=Count("id"))
        .values_list("account", "n")
    )
    lines = ["", f"Demo trading accounts on {platform.name}:"]
    width = max((len(a.user.email) for a in accounts), default=0)
    for account in accounts:
        kind = "demo" if account.is_demo else "live"
        balance = f"{account.major(account.balance):,} {account.currency}"
        line = (
            f"  {account.user.email:<{width}}  {account.login}  {account.account_type.name:<12}  "
            f"{kind}  balance {balance}, {deals.get(account.pk, 0)} deals"
        )
        if not account.is_demo and account.balance == 0:
            line += " (live: funded by a transfer from a wallet below; its history follows)"
        lines.append(line)
    lines += [f"  Not opened: {problem}" for problem in problems]
    lines += [
        "  Signed in as the trader: accounts at /room/accounts/, history and analytics at "
        "/room/history/. Staff: /admin/accounts/deal/.",
        "  More deals: .venv/bin/python manage.py simulate_market --deals 100 --days 7",
    ]
    return lines
