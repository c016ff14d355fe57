"""Reads of payouts for the partner's pages and the admin: what awaits
payout, whether a request would be accepted now, the history, a statement."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from django.db.models import Count, QuerySet, Sum
from django.http import Http404

from backoffice.money import from_minor, to_minor
from payments.models import Currency
from payments.selectors.rates import RateUnavailable, rate_for

from ..models import Commission, Partner, Payout, PlanVersion


@dataclass(frozen=True)
class Balance:
    currency: Currency
    amount: int  # minor units
    rows: int


@dataclass
class PayoutOutlook:
    """What a payout would be now, and why it cannot be requested (if so)."""

    balances: list[Balance]
    currency: Currency
    estimate: int | None  # minor units of ``currency``; None: no rate
    minimum: int
    blocker: str = ""
    breakdown: dict[str, dict] = field(default_factory=dict)

    @property
    def can_request(self) -> bool:
        return not self.blocker


def unpaid_balances(
    partner: Partner, *, currencies: dict[str, Currency] | None = None
) -> list[Balance]:
    """Unpaid commissions per currency (the sums, then the currencies not in
    ``currencies``, which is filled in)."""
    sums = list(
        Commission.objects.filter(partner=partner, payout__isnull=True, amount__gt=0)
        .order_by()
        .values("currency_id")
        .annotate(total=Sum("amount"), rows=Count("id"))
    )
    if not sums:
        return []
    currencies = currencies if currencies is not None else {}
    missing = [row["currency_id"] for row in sums if row["currency_id"] not in currencies]
    if missing:
        currencies.update(Currency.objects.in_bulk(missing))
    return sorted(
        (Balance(currencies[row["currency_id"]], int(row["total"]), row["rows"]) for row in sums),
        key=lambda b: (b.currency.display_order, b.currency.code),
    )


def payout_outlook(partner: Partner) -> PayoutOutlook:
    """The balance awaiting payout converted into the payout currency at
    today's rates, and the reason a request would be refused."""
    currency = partner.payout_currency
    balances = unpaid_balances(partner, currencies={currency.code: currency})
    outlook = PayoutOutlook(
        balances=balances,
        currency=currency,
        estimate=0,
        minimum=minimum_minor(partner, currency),
    )
    if balances:
        try:
            conversion = convert_totals(
                {b.currency.code: (b.amount, b.rows) for b in balances},
                currency,
                exponents={b.currency.code: b.currency.exponent for b in balances},
            )
            outlook.estimate, outlook.breakdown = conversion.amount, conversion.breakdown
        except RateUnavailable:
            outlook.estimate = None
    if partner.payouts_held:
        outlook.blocker = "Payouts are on hold: " + (partner.hold_reason or "ask your manager why.")
    elif not balances:
        outlook.blocker = "There is nothing to pay out yet."
    elif outlook.estimate is None:
        outlook.blocker = "An exchange rate is missing right now; please try again later."
    elif outlook.estimate < outlook.minimum:
        outlook.blocker = "Your balance is below your minimum payout."
    elif outlook.estimate <= 0:
        outlook.blocker = "There is nothing to pay out yet."
    return outlook


def minimum_minor(partner: Partner, currency: Currency) -> int:
    """The partner's payout minimum in minor units of the payout currency."""
    return to_minor(partner.payout_minimum or Decimal(0), currency.exponent, rounding=ROUND_UP)


@dataclass
class Conversion:
    """Unpaid commissions of each currency in the payout currency."""

    currency: Currency
    amount: int = 0
    breakdown: dict[str, dict] = field(default_factory=dict)


def convert_totals(
    totals: dict[str, tuple[int, int]], into: Currency, *, exponents: dict[str, int] | None = None
) -> Conversion:
    """``{currency: (minor, rows)}`` converted into ``into`` at the current
    rates, each currency rounded down. Raises ``RateUnavailable``."""
    if exponents is None:
        exponents = dict(Currency.objects.filter(code__in=totals).values_list("code", "exponent"))
    result = Conversion(currency=into)
    for code in sorted(totals):
        minor, rows = totals[code]
        rate = Decimal(1) if code == into.code else rate_for(code, into).rate
        credited = to_minor(
            from_minor(minor, exponents[code]) * rate, into.exponent, rounding=ROUND_DOWN
        )
        result.amount += credited
        result.breakdown[code] = {
            "amount": minor,
            "rows": rows,
            "rate": format(rate.normalize(), "f"),
            "credited": credited,
        }
    return result


def payouts_for_partner(partner: Partner) -> QuerySet[Payout]:
    return (
        Payout.objects.filter(partner=partner)
        .select_related("currency")
        .order_by("-created_at", "-id")
    )


def payout_get_for_partner(*, partner: Partner, payout_id: int) -> Payout:
    """The partner's own payout, or 404 (another partner's id says nothing)."""
    payout = payouts_for_partner(partner).filter(pk=payout_id).first()
    if payout is None:
        raise Http404("No such payout.")
    return payout


def payout_items(payout: Payout) -> QuerySet[Commission]:
    """The commissions the payout covers, oldest first, with what a
    statement line shows (the client's name, the row's currency)."""
    return (
        Commission.objects.filter(payout=payout)
        .select_related("client", "currency")
        .only(
            "id",
            "kind",
            "deal_id",
            "deposit_id",
            "period_start",
            "level",
            "lots",
            "amount",
            "currency",
            "earned_at",
            "plan_version_id",
            "basis",
            "share",
            "rebate",
            "tier_percent",
            "capped",
            "instrument_group",
            "client__first_name",
            "client__last_name",
        )
        .order_by("earned_at", "id")
    )


def versions_for(items: list[Commission]) -> dict[int, PlanVersion]:
    """The plan versions of these rows, in one query (for explanations)."""
    ids = {item.plan_version_id for item in items}
    return PlanVersion.objects.in_bulk(ids) if ids else {}


def rate_used(payout: Payout, currency_code: str) -> Decimal | None:
    entry = (payout.breakdown or {}).get(currency_code)
    return Decimal(entry["rate"]) if entry and "rate" in entry else None
