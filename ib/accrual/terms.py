"""What both accrual engines read: a plan version's terms, periods, rates.

Amounts are ``Decimal`` computed in :data:`EXACT` (a precision no product
of our numbers reaches, so nothing rounds until the one rounding down to
minor units at the end), as PostgreSQL's ``numeric`` multiplies exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_FLOOR, Context, Decimal, localcontext
from typing import Any

log = logging.getLogger("ib.accrual")

#: Products of lots, prices, shares and rates are exact in this context.
EXACT = Context(prec=200, rounding=ROUND_FLOOR)
HUNDRED = Decimal(100)
ZERO = Decimal(0)

FIXED_SHARES = "fixed_shares"
RATE_DIFFERENCE = "rate_difference"
DAY, WEEK, MONTH = "day", "week", "month"


def _decimal(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


@dataclass(frozen=True)
class Rule:
    """What one instrument group earns under a version (plan currency)."""

    rebate_per_lot: Decimal
    commission_share: Decimal
    spread_share: Decimal


@dataclass(frozen=True)
class Terms:
    """A :class:`~ib.models.PlanVersion`'s ``terms`` as accrual reads them."""

    version_id: int
    currency: str
    rate_difference: bool
    tier_shares: tuple[Decimal, ...]
    min_hold_seconds: int
    allow_own_trading: bool
    cap_per_deal: Decimal | None
    cap_per_period: Decimal | None
    cap_period: str
    rules: dict[str, Rule]

    @classmethod
    def from_version(cls, version_id: int, terms: dict[str, Any]) -> Terms:
        rate_difference = terms.get("tier_model") == RATE_DIFFERENCE
        return cls(
            version_id=version_id,
            currency=terms["currency"],
            rate_difference=rate_difference,
            tier_shares=()
            if rate_difference
            else tuple(Decimal(s) for s in terms.get("tier_shares") or ()),
            min_hold_seconds=int(terms.get("min_hold_seconds") or 0),
            allow_own_trading=bool(terms.get("allow_own_trading")),
            cap_per_deal=_decimal(terms.get("cap_per_deal")),
            cap_per_period=_decimal(terms.get("cap_per_period")),
            cap_period=terms.get("cap_period") or MONTH,
            rules={
                group: Rule(
                    rebate_per_lot=_decimal(rule.get("rebate_per_lot")) or ZERO,
                    commission_share=_decimal(rule.get("commission_share")) or ZERO,
                    spread_share=_decimal(rule.get("spread_share")) or ZERO,
                )
                for group, rule in (terms.get("rules") or {}).items()
            },
        )

    def rule_for(self, group: str) -> Rule | None:
        """The group's own rule, else the rule for any group, else none."""
        rule = self.rules.get(group)
        return rule if rule is not None else self.rules.get("")


def versions_terms(version_ids=None) -> dict[int, Terms]:
    """Every plan version's terms (or those of ``version_ids``)."""
    from ..models import PlanVersion

    qs = PlanVersion.objects.all()
    if version_ids is not None:
        qs = qs.filter(pk__in=version_ids)
    return {pk: Terms.from_version(pk, terms) for pk, terms in qs.values_list("pk", "terms")}


# --- Periods (UTC) ----------------------------------------------------------------


def period_start(moment: datetime, kind: str) -> date:
    """The first day of the day / ISO week (Monday) / month holding ``moment`` (UTC)."""
    day = moment.astimezone(UTC).date()
    if kind == DAY:
        return day
    if kind == WEEK:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(moment: datetime, kind: str) -> datetime:
    """The start of the next period (aware, UTC)."""
    start = period_start(moment, kind)
    if kind == DAY:
        end = start + timedelta(days=1)
    elif kind == WEEK:
        end = start + timedelta(days=7)
    else:
        end = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return datetime.combine(end, time(), tzinfo=UTC)


def day_start(day: date) -> datetime:
    """Midnight UTC of ``day``."""
    return datetime.combine(day, time(), tzinfo=UTC)


# --- Rates and currencies ---------------------------------------------------------


class RateBook:
    """Mid rates for one run: ``payments``' :func:`rate_for`, asked once per
    pair and remembered, so every deal of the run converts at the same rate.
    A pair without a usable rate is ``None`` (the run warns when a deal
    waits for one)."""

    def __init__(self) -> None:
        self._rates: dict[tuple[str, str], Decimal | None] = {}

    def get(self, base: str, quote: str) -> Decimal | None:
        if base == quote:
            return Decimal(1)
        key = (base, quote)
        if key not in self._rates:
            from payments.exceptions import LedgerError
            from payments.selectors.rates import rate_for

            try:
                # In the default context: rate_for divides for inverse and
                # cross rates, and must give what it gives everywhere else.
                with localcontext(Context()):
                    self._rates[key] = Decimal(rate_for(base, quote).rate)
            except LedgerError as exc:
                log.info("accrual: no rate from %s to %s (%s)", base, quote, exc)
                self._rates[key] = None
        return self._rates[key]

    @property
    def missing(self) -> set[tuple[str, str]]:
        return {pair for pair, rate in self._rates.items() if rate is None}

    def known(self) -> dict[tuple[str, str], Decimal]:
        return {pair: rate for pair, rate in self._rates.items() if rate is not None}


def currency_exponents() -> dict[str, int]:
    from payments.models import Currency

    return dict(Currency.objects.values_list("code", "exponent"))
