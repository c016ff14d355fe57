"""Writes for trading accounts: opening one on its platform, leverage,
trading password, and the cached state the platform reports.

The platform is called outside our database transaction (a network call
must not hold row locks); what we record afterwards is in one transaction
with its event. Money between wallets and trading accounts moves in
``payments.services.trading``, never here.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from backoffice import policies
from backoffice.events import publish
from backoffice.money import to_minor
from backoffice.secrets import decrypt, encrypt

from ..exceptions import TradingError, TwoFactorError
from ..models import AccountType, Platform, TradingAccount, User
from ..platforms import gateway_for
from ..platforms.base import PlatformError
from . import totp_device_confirmed, two_factor_verify

log = logging.getLogger(__name__)

_SPECIALS = "#@!$%&*"  # characters MT5 accepts in passwords


@dataclass(frozen=True)
class OpenedAccount:
    account: TradingAccount
    password: str  # shown once, never stored by us
    investor_password: str


def trading_password_generate(length: int = 12) -> str:
    """A password every platform accepts (MT5 wants lower, upper, a digit
    and a special character, 8 to 16 long)."""
    pools = [string.ascii_lowercase, string.ascii_uppercase, string.digits, _SPECIALS]
    chars = [secrets.choice(pool) for pool in pools]
    alphabet = string.ascii_letters + string.digits
    chars += [secrets.choice(alphabet) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def platform_refusal(exc: PlatformError) -> TradingError:
    if exc.permanent:
        return TradingError(f"The trading platform refused: {exc}")
    return TradingError("The trading platform cannot be reached just now; please try again.")


def _check_leverage(account_type: AccountType, leverage: int) -> None:
    if leverage not in (account_type.leverage_choices or []):
        choices = ", ".join(f"1:{x}" for x in account_type.leverage_choices or [])
        raise TradingError(
            f"Leverage 1:{leverage} is not offered for this account (choose {choices})."
        )


def trading_account_open(
    *, user: User, account_type: AccountType, leverage: int | None = None
) -> OpenedAccount:
    """Open an account of ``account_type`` for ``user`` on its platform.

    A live account asks the ``open_live_account`` policy first (KYC and
    fraud restrictions). A demo account is then credited with the type's
    virtual money by the platform itself (never through the ledger)."""
    if not account_type.is_active:
        raise TradingError("This account type is not offered any more.")
    platform = account_type.platform
    if not platform.enabled:
        raise TradingError("This trading platform is not available just now.")
    gateway = gateway_for(platform)
    if not gateway.live_operations:
        raise TradingError("Accounts cannot be opened on this platform.")
    leverage = leverage or account_type.default_leverage
    _check_leverage(account_type, leverage)
    if not account_type.is_demo:
        decision = policies.check(user, policies.OPEN_LIVE_ACCOUNT, account_type=account_type)
        if not decision.allowed:
            raise TradingError(
                decision.reason or "You cannot open a live account yet.", decision=decision
            )
    limit = settings.TRADING_ACCOUNTS_PER_CLIENT
    if TradingAccount.objects.filter(user=user, status=TradingAccount.ACTIVE).count() >= limit:
        raise TradingError(f"You can hold at most {limit} trading accounts.")

    password = trading_password_generate()
    investor_password = trading_password_generate()
    try:
        login = gateway.account_create(
            group=account_type.platform_group,
            currency=account_type.currency,
            currency_digits=account_type.currency_digits,
            leverage=leverage,
            name=user.get_full_name(),
            email=user.email,
            password=password,
            investor_password=investor_password,
        )
    except PlatformError as exc:
        raise platform_refusal(exc) from exc

    with transaction.atomic():
        account = TradingAccount.objects.create(
            user=user,
            platform=platform,
            account_type=account_type,
            login=login,
            is_demo=account_type.is_demo,
            currency=account_type.currency,
            currency_digits=account_type.currency_digits,
            leverage=leverage,
        )
        publish(
            "trading_account.opened",
            account,
            {
                "login": login,
                "platform": platform.identifier,
                "type": account_type.name,
                "demo": account_type.is_demo,
                "currency": account_type.currency,
                "leverage": leverage,
            },
            client=user,
            actor=user,
        )

    if account_type.is_demo and account_type.demo_balance > 0:
        try:
            gateway.balance_operation(
                login=login,
                amount=account_type.demo_balance,
                comment="Demo money",
                key=f"demo-open:{platform.pk}:{login}",
            )
        except PlatformError:
            log.warning("Demo money for %s on %s not credited", login, platform.identifier)
    trading_account_refresh(account=account)
    return OpenedAccount(account, password, investor_password)


def trading_account_leverage_change(
    *, user: User, account: TradingAccount, leverage: int
) -> TradingAccount:
    if account.user_id != user.pk:
        raise TradingError("This is not your account.")
    if account.status != TradingAccount.ACTIVE:
        raise TradingError("This account is archived.")
    _check_leverage(account.account_type, leverage)
    if leverage == account.leverage:
        return account
    try:
        gateway_for(account.platform).leverage_change(login=account.login, leverage=leverage)
    except PlatformError as exc:
        raise platform_refusal(exc) from exc
    with transaction.atomic():
        before = account.leverage
        TradingAccount.objects.filter(pk=account.pk).update(leverage=leverage)
        account.leverage = leverage
        publish(
            "trading_account.leverage_changed",
            account,
            {"login": account.login, "from": before, "to": leverage},
            client=account.user,
            actor=user,
        )
    return account


def trading_account_password_reset(
    *, user: User, account: TradingAccount, otp_code: str = ""
) -> str:
    """Set a new trading password and return it (shown once). With
    two-factor authentication on, a valid code is needed."""
    if account.user_id != user.pk:
        raise TradingError("This is not your account.")
    if account.status != TradingAccount.ACTIVE:
        raise TradingError("This account is archived.")
    if totp_device_confirmed(user) is not None:
        try:
            device = two_factor_verify(user=user, token=otp_code or "")
        except TwoFactorError as exc:
            raise TradingError(str(exc)) from exc
        if device is None:
            raise TradingError("Enter a valid code from your authenticator app.")
    password = trading_password_generate()
    try:
        gateway_for(account.platform).password_change(login=account.login, password=password)
    except PlatformError as exc:
        raise platform_refusal(exc) from exc
    with transaction.atomic():
        publish(
            "trading_account.password_reset",
            account,
            {"login": account.login},
            client=account.user,
            actor=user,
        )
    return password


def _minor(amount: Decimal, digits: int) -> int:
    return to_minor(amount, digits, rounding=ROUND_HALF_EVEN)


def trading_account_refresh(*, account: TradingAccount, gateway=None) -> bool:
    """Read the account's balance, equity and margin from its platform and
    cache them with the time; False (cache left as it was) when the
    platform cannot answer. ``gateway``: the platform's, when the caller
    holds one already."""
    try:
        gateway = gateway or gateway_for(account.platform)
        state = gateway.account_state(login=account.login)
    except PlatformError as exc:
        log.info("State of %s not refreshed: %s", account.login, exc)
        return False
    digits = account.currency_digits
    fields = {
        "balance": _minor(state.balance, digits),
        "equity": _minor(state.equity, digits),
        "margin": _minor(state.margin, digits),
        "free_margin": _minor(state.free_margin, digits),
        "margin_level": state.margin_level,
        "state_updated_at": timezone.now(),
    }
    if state.leverage:
        fields["leverage"] = state.leverage
    TradingAccount.objects.filter(pk=account.pk).update(**fields)
    for name, value in fields.items():
        setattr(account, name, value)
    return True


def trading_accounts_refresh(*, older_than: timedelta = timedelta(minutes=1)) -> int:
    """Refresh the cached state of active accounts on enabled platforms whose
    figures are older than ``older_than`` (the beat task). Returns how many."""
    cutoff = timezone.now() - older_than
    accounts = (
        TradingAccount.objects.filter(status=TradingAccount.ACTIVE, platform__enabled=True)
        .exclude(state_updated_at__gte=cutoff)
        .select_related("platform")
        .order_by("state_updated_at")[:500]
    )
    gateways: dict[int, object] = {}
    refreshed = 0
    for account in accounts:
        platform: Platform = account.platform
        if platform.pk not in gateways:
            gateways[platform.pk] = gateway_for(platform)
        if not gateways[platform.pk].live_operations:
            continue
        refreshed += trading_account_refresh(account=account, gateway=gateways[platform.pk])
    return refreshed


@transaction.atomic
def platform_secrets_set(
    *, actor: User, platform: Platform, values: dict[str, str], clear: list[str] = ()
) -> Platform:
    """Store a platform's secrets, encrypted (the admin's write-only fields):
    blank values keep what is stored, ``clear`` names secrets to remove. The
    event says which names changed, never a value."""
    locked = Platform.objects.select_for_update().get(pk=platform.pk)
    current = decrypt(locked.secrets)
    for name in clear:
        current.pop(name, None)
    current.update({name: value for name, value in values.items() if value})
    locked.secrets = encrypt(current)
    locked.save(update_fields=["secrets"])
    publish(
        "platform.secrets_changed",
        locked,
        {
            "platform": locked.identifier,
            "set": sorted(name for name, value in values.items() if value),
            "cleared": sorted(clear),
        },
        actor=actor,
    )
    platform.secrets = locked.secrets
    return locked
