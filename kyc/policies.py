"""The KYC level's say in "may this client do this now?" (the policy registry,
``backoffice.policies``): registered in ``KycConfig.ready()``, asked by
payments and accounts without importing this app.

Each refusal names the level that would allow the action and links to the
verification page.
"""

from __future__ import annotations

from decimal import Decimal

from backoffice import policies
from backoffice.policies import Decision

from . import selectors
from .models import ClientKyc, Level

UNLOCK_URL = "kyc:verification"


def _fmt(amount: Decimal, currency: str) -> str:
    return f"{amount.quantize(Decimal('0.01')):,} {currency}"


def _state(user) -> tuple[Level, ClientKyc | None]:
    kyc = selectors.kyc_for_user(user)
    return (kyc.level if kyc else selectors.level_lowest()), kyc


def _first_level_allowing(current: Level, test) -> Level | None:
    return next(
        (
            level
            for level in Level.objects.filter(is_active=True, number__gt=current.number).order_by(
                "number"
            )
            if test(level)
        ),
        None,
    )


def _refuse(reason: str, current: Level, needed: Level | None) -> Decision:
    if needed is not None:
        reason = f"{reason} It needs verification level {needed.number} ({needed.name})."
        unlock = f"Verify to level {needed.number}"
    else:
        unlock = "See your verification"
    return Decision(False, reason, unlock, UNLOCK_URL)


def _blocked_country(kyc: ClientKyc | None, user) -> bool:
    country = (
        kyc.country if kyc is not None and kyc.country else selectors.client_country(user=user)
    )
    return selectors.country_blocked(country)


def _limit_check(
    *,
    user,
    level: Level,
    amount,
    currency: str,
    usage_for,
    daily: str,
    monthly: str,
    noun: str,
) -> Decision | None:
    """Refuse when ``amount`` would take today's or this month's total over
    the level's limit (both in the level's limits currency)."""
    day_limit, month_limit = getattr(level, daily), getattr(level, monthly)
    if day_limit is None and month_limit is None:
        return None
    if amount is None or not currency:
        return None
    from payments.selectors.rates import RateUnavailable

    limits_currency = level.limits_currency_id
    rates: dict[str, Decimal] = {}  # one rate query per currency, however often it appears
    try:
        usage = usage_for(user, limits_currency, rates=rates)
        rate = selectors.rate_into(currency, limits_currency, rates)
    except RateUnavailable as exc:  # no rate (or a stale one): refuse, saying why
        return Decision(False, str(exc))
    requested = Decimal(amount) * rate
    for limit, used, period in (
        (day_limit, usage.day, "daily"),
        (month_limit, usage.month, "monthly"),
    ):
        if limit is None or used + requested <= limit:
            continue
        left = max(limit - used, Decimal(0))
        field = daily if period == "daily" else monthly
        needed = _first_level_allowing(
            level,
            lambda lvl, f=field, total=used + requested: (
                getattr(lvl, f) is None or getattr(lvl, f) >= total
            ),
        )
        reason = (
            f"This {noun} would pass your {period} {noun} limit of "
            f"{_fmt(limit, limits_currency)} at level {level.number} ({level.name}): "
            f"{_fmt(left, limits_currency)} is left this {'day' if period == 'daily' else 'month'}."
        )
        return _refuse(reason, level, needed)
    return None


def deposit_policy(user, *, amount=None, currency: str = "", **context) -> Decision | None:
    level, kyc = _state(user)
    if _blocked_country(kyc, user):
        return Decision(False, "We cannot accept deposits from your country of residence.")
    return _limit_check(
        user=user,
        level=level,
        amount=amount,
        currency=currency,
        usage_for=selectors.deposit_usage,
        daily="deposit_daily_limit",
        monthly="deposit_monthly_limit",
        noun="deposit",
    )


def withdraw_policy(user, *, amount=None, currency: str = "", **context) -> Decision | None:
    level, _kyc = _state(user)
    if not level.allows_withdrawals:
        needed = _first_level_allowing(level, lambda lvl: lvl.allows_withdrawals)
        return _refuse("Withdrawals need a verified identity.", level, needed)
    return _limit_check(
        user=user,
        level=level,
        amount=amount,
        currency=currency,
        usage_for=selectors.withdrawal_usage,
        daily="withdrawal_daily_limit",
        monthly="withdrawal_monthly_limit",
        noun="withdrawal",
    )


def transfer_policy(user, **context) -> Decision | None:
    level, kyc = _state(user)
    if not level.allows_transfers:
        needed = _first_level_allowing(level, lambda lvl: lvl.allows_transfers)
        return _refuse("Transfers need a verified identity.", level, needed)
    if context.get("direction") == "in" and _blocked_country(kyc, user):
        return Decision(False, "Trading is not available in your country of residence.")
    return None


def open_live_account_policy(user, **context) -> Decision | None:
    level, kyc = _state(user)
    if _blocked_country(kyc, user):
        return Decision(False, "Live trading is not available in your country of residence.")
    if not level.allows_live_accounts:
        needed = _first_level_allowing(level, lambda lvl: lvl.allows_live_accounts)
        return _refuse("A live trading account needs a verified identity.", level, needed)
    return None


def register_policy(user, *, country: str = "", **context) -> Decision | None:
    if selectors.country_blocked(country):
        return Decision(
            False,
            "We cannot open accounts for residents of this country. "
            "If you live elsewhere, choose your country of residence.",
        )
    return None


def register_all() -> None:
    policies.register(policies.DEPOSIT, "kyc.level_limits", deposit_policy)
    policies.register(policies.WITHDRAW, "kyc.level_limits", withdraw_policy)
    policies.register(policies.TRANSFER, "kyc.level", transfer_policy)
    policies.register(policies.OPEN_LIVE_ACCOUNT, "kyc.level", open_live_account_policy)
    policies.register(policies.REGISTER, "kyc.blocked_countries", register_policy)
