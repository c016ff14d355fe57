"""How the partner dashboard (and the payout statement) shows IB figures:
masked names, amounts and lots, and :func:`explain`, the one sentence that
says why a commission row has its amount.

A commission row keeps the figures that produced it in columns (see
:class:`ib.models.Commission`): ``lots``, ``rebate`` and ``share`` (the
partner's plan's parts before tiers and caps, minor units of the row's
currency), ``basis`` (rate difference: what the rates below earned; revenue
share: the broker's net result; CPA: the first deposit in the plan's
currency), ``tier_percent`` (fixed shares) and ``capped``. The rule's words
and rates come from the row's plan version (``PlanVersion.terms``, the shape
``ib.services.plans.plan_terms`` writes), so a plan edited later never
changes how an old row reads.

Everything here returns plain text (templates escape it) and never reads a
name, e-mail or figure that is not given to it, except the currencies'
decimal places (one query per process, see :func:`currency_exponent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Protocol

NBSP = "\u00a0"
MINUS = "\u2212"
ARROW = "\u2192"
TIMES = "\u00d7"

_PERIOD_WORDS = {"day": "day", "week": "week", "month": "month"}


class CommissionLike(Protocol):
    kind: str
    level: int
    instrument_group: str
    lots: Decimal
    rebate: int
    share: int
    basis: int
    tier_percent: Decimal | None
    capped: bool
    amount: int
    currency_id: str
    period_start: date | None


# --- Currencies ------------------------------------------------------------------------

_exponents: dict[str, int] = {}


def currency_exponent(code: str) -> int:
    """The currency's decimal places (USD 2, JPY 0, BTC 8). Read once per
    process for every currency (the table is small and a currency's exponent
    never changes: the ledger's amounts depend on it); an unknown code is
    looked up again once, then taken as 2."""
    code = (code or "").upper()
    if code not in _exponents:
        from payments.models import Currency

        _exponents.update(Currency.objects.values_list("code", "exponent"))
        _exponents.setdefault(code, 2)
    return _exponents[code]


# --- Numbers ---------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return result if result.is_finite() else None


def number_text(value: Decimal | int, places: int | None = None) -> str:
    """``1234.5`` → ``1,234.50`` (``places=2``); a real minus sign; without
    ``places`` as many decimals as the value has (trailing zeros dropped)."""
    value = Decimal(value)
    if places is not None:
        value = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_DOWN)
    else:
        value = value.normalize()
        if value.as_tuple().exponent > 0:
            value = value.quantize(Decimal(1))
    text = format(abs(value), ",f")
    return MINUS + text if value < 0 else text


def count_text(n: int) -> str:
    """``10000`` → ``10,000``."""
    return f"{int(n):,}"


def money_text(minor: int, currency: str, *, code: bool = True) -> str:
    """Minor units of ``currency`` as ``1,200.00 USD`` (``code=False``: ``1,200.00``)."""
    places = currency_exponent(currency)
    minor = int(minor)
    sign = MINUS if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**places)
    text = f"{sign}{whole:,}.{fraction:0{places}d}" if places else f"{sign}{whole:,}"
    return f"{text}{NBSP}{currency}" if code and currency else text


def major_text(amount: Decimal | str | None, currency: str, *, code: bool = True) -> str:
    """A plan's amount (a decimal string of major units) as ``10.00 USD``."""
    value = _dec(amount) or Decimal(0)
    places = currency_exponent(currency)
    # A rate may be finer than the currency (0.125 USD per lot): keep its digits.
    exponent = value.normalize().as_tuple().exponent
    places = max(places, -exponent) if isinstance(exponent, int) else places
    text = number_text(value, places)
    return f"{text}{NBSP}{currency}" if code and currency else text


def lots_text(lots: Decimal | int | None) -> str:
    """Lots with at least two decimals: 1 → ``1.00``, 0.015 → ``0.015``."""
    value = Decimal(lots or 0).normalize()
    if -value.as_tuple().exponent < 2:
        value = value.quantize(Decimal("0.01"))
    text = format(abs(value), ",f")
    return MINUS + text if value < 0 else text


def percent_text(value: Decimal | str | None) -> str:
    """``20.000`` → ``20 %``, ``12.5`` → ``12.5 %``."""
    number = _dec(value)
    return f"{number_text(number)}{NBSP}%" if number is not None else ""


# --- People ----------------------------------------------------------------------------


def masked_name(first_name: str, last_name: str, *, fallback: str = "") -> str:
    """What a partner may see of a person's name: the first name and the
    last name's initial, ``Maria K.``; ``fallback`` when neither is known."""
    first = (first_name or "").strip()
    last = (last_name or "").strip()
    initial = f"{last[0].upper()}." if last else ""
    text = " ".join(part for part in (first, initial) if part)
    return text or fallback


def client_label(first_name: str, last_name: str, client_id: int | None) -> str:
    return masked_name(first_name, last_name, fallback=f"Client #{client_id}")


def partner_label(first_name: str, last_name: str, partner_id: int | None) -> str:
    return masked_name(first_name, last_name, fallback=f"Partner #{partner_id}")


# --- Why a commission has its amount ----------------------------------------------------


def explain(commission: CommissionLike, terms: Mapping[str, Any] | None) -> str:
    """One sentence that explains ``commission`` from the ``terms`` of its
    plan version, for example:

    - ``Rebate 10.00 USD/lot × 2.50 lots = 25.00; your tier 2 share 20 % → 5.00 USD``
    - ``Rate difference: your 8.00 − 5.00 below = 3.00/lot × 2.50 lots → 7.50 USD``
    - ``…; capped at 20.00 USD per deal``
    - ``CPA 250.00 USD: first deposit of 500.00 USD ≥ 100.00 USD``
    - ``Revenue share 25 % of net 1,200.00 USD (month from 1 Mar 2025) → 300.00 USD``
    """
    terms = terms or {}
    kind = commission.kind
    if kind == "cpa":
        return _explain_cpa(commission, terms)
    if kind == "revshare":
        return _explain_revshare(commission, terms)
    # The row says which model paid it (fixed shares record the tier's
    # percent); under rate difference the version is the partner's own,
    # whose plan may itself be of either model.
    if commission.tier_percent is None and (
        terms.get("tier_model") == "rate_difference" or int(commission.basis or 0) > 0
    ):
        return _explain_rate_difference(commission, terms)
    return _explain_fixed_shares(commission, terms)


def _rule(commission: CommissionLike, terms: Mapping[str, Any]) -> Mapping[str, Any]:
    rules = terms.get("rules") or {}
    return rules.get(commission.instrument_group or "") or rules.get("") or {}


def _share_words(rule: Mapping[str, Any]) -> str:
    parts = []
    commission_share = _dec(rule.get("commission_share"))
    spread_share = _dec(rule.get("spread_share"))
    if commission_share:
        parts.append(f"{percent_text(commission_share)} of the commission")
    if spread_share:
        parts.append(f"{percent_text(spread_share)} of the spread")
    return " and ".join(parts) or "share of commission and spread"


def _pool_parts(commission: CommissionLike, terms: Mapping[str, Any]) -> list[str]:
    """``Rebate 10.00 USD/lot × 2.50 lots = 25.00`` and the share, as the
    row's columns have them (in the row's currency)."""
    currency = commission.currency_id
    plan_currency = terms.get("currency") or currency
    rule = _rule(commission, terms)
    parts = []
    rebate, share = int(commission.rebate or 0), int(commission.share or 0)
    if rebate:
        rate = major_text(rule.get("rebate_per_lot"), plan_currency)
        converted = "" if plan_currency == currency else f" (in {currency})"
        parts.append(
            f"Rebate {rate}/lot {TIMES} {lots_text(commission.lots)} lots"
            f" = {money_text(rebate, currency, code=False)}{converted}"
        )
    if share:
        parts.append(f"{_share_words(rule)} = {money_text(share, currency, code=False)}")
    if rebate and share:
        parts.append(f"together {money_text(rebate + share, currency, code=False)}")
    return parts


def _cap_words(commission: CommissionLike, terms: Mapping[str, Any], *, per_deal: bool) -> str:
    plan_currency = terms.get("currency") or commission.currency_id
    caps = []
    if per_deal and _dec(terms.get("cap_per_deal")) is not None:
        caps.append(f"{major_text(terms['cap_per_deal'], plan_currency)} per deal")
    if _dec(terms.get("cap_per_period")) is not None:
        period = _PERIOD_WORDS.get(terms.get("cap_period") or "month", "period")
        caps.append(f"{major_text(terms['cap_per_period'], plan_currency)} per {period}")
    if not caps:
        return "capped by the plan's maximum per deal"
    return "capped at " + " and ".join(caps)


def _explain_fixed_shares(commission: CommissionLike, terms: Mapping[str, Any]) -> str:
    currency = commission.currency_id
    parts = _pool_parts(commission, terms) or ["Nothing to share on this deal"]
    percent = commission.tier_percent
    if percent is not None:
        level = commission.level
        who = "your share" if level == 1 else f"your tier {level} share"
        parts.append(
            f"{who} {percent_text(percent)} {ARROW} {money_text(commission.amount, currency)}"
        )
    else:
        parts.append(f"you earn {money_text(commission.amount, currency)}")
    if commission.capped:
        parts.append(_cap_words(commission, terms, per_deal=True))
    return "; ".join(parts)


def _exact_per_lot(minor: int, lots: Decimal, places: int) -> Decimal | None:
    """``minor`` per lot in major units when it divides exactly (to the
    currency's places plus one), else None."""
    if not lots:
        return None
    value = Decimal(minor).scaleb(-places) / lots
    rounded = value.quantize(Decimal(1).scaleb(-(places + 1)), rounding=ROUND_DOWN)
    return rounded if rounded == value else None


def _explain_rate_difference(commission: CommissionLike, terms: Mapping[str, Any]) -> str:
    currency = commission.currency_id
    plan_currency = terms.get("currency") or currency
    places = currency_exponent(currency)
    own = int(commission.rebate or 0) + int(commission.share or 0)
    below = int(commission.basis or 0)
    amount = money_text(commission.amount, currency)
    rule = _rule(commission, terms)
    lots = Decimal(commission.lots or 0)
    simple = not commission.share and plan_currency == currency and lots
    if below <= 0:
        text = "Rate difference: " + (
            "; ".join(_pool_parts(commission, terms)) or "your rate earns nothing on this deal"
        )
        text += f"; nothing below you {ARROW} {amount}"
    else:
        mine_per_lot = _dec(rule.get("rebate_per_lot")) if simple else None
        below_per_lot = _exact_per_lot(below, lots, places) if simple else None
        if mine_per_lot is not None and below_per_lot is not None:
            difference = mine_per_lot - below_per_lot
            text = (
                f"Rate difference: your {major_text(mine_per_lot, currency, code=False)}"
                f" {MINUS} {major_text(below_per_lot, currency, code=False)} below"
                f" = {major_text(difference, currency, code=False)}/lot"
                f" {TIMES} {lots_text(lots)} lots {ARROW} {amount}"
            )
        else:
            text = (
                f"Rate difference: your rate {money_text(own, currency, code=False)}"
                f" {MINUS} {money_text(below, currency, code=False)} earned by the rates below"
                f" {ARROW} {amount}"
            )
    if commission.capped:
        text += "; " + _cap_words(commission, terms, per_deal=False)
    return text


def _explain_cpa(commission: CommissionLike, terms: Mapping[str, Any]) -> str:
    currency = commission.currency_id
    plan_currency = terms.get("currency") or currency
    minimum = _dec(terms.get("cpa_min_deposit")) or Decimal(0)
    head = f"CPA {money_text(commission.amount, currency)}"
    basis = int(commission.basis or 0)
    if basis > 0:
        text = f"{head}: first deposit of {money_text(basis, currency)}"
        if minimum:
            text += f" {chr(0x2265)} {major_text(minimum, plan_currency)}"
    else:
        text = f"{head}: qualifying first deposit"
        if minimum:
            text += f" (minimum {major_text(minimum, plan_currency)})"
    min_lots = _dec(terms.get("cpa_min_lots")) or Decimal(0)
    if min_lots > 0:
        days = terms.get("cpa_within_days")
        text += f", then {lots_text(min_lots)} lots traded within {days} days"
    return text


def _explain_revshare(commission: CommissionLike, terms: Mapping[str, Any]) -> str:
    currency = commission.currency_id
    percent = _dec(terms.get("revshare_percent")) or Decimal(0)
    period = _PERIOD_WORDS.get(terms.get("revshare_period") or "month", "period")
    start = commission.period_start
    when = f" ({period} from {start.day} {start:%b %Y})" if start else ""
    net = int(commission.basis or 0)
    head = f"Revenue share {percent_text(percent)} of net {money_text(net, currency)}{when}"
    carry = bool(terms.get("revshare_carry_negative"))
    if net <= 0:
        tail = "the broker made no net result on your clients: nothing this period"
        if carry and net < 0:
            tail += ", and the loss carries into the next periods"
        return f"{head}; {tail}"
    expected = int((Decimal(net) * percent / 100).to_integral_value(rounding=ROUND_DOWN))
    amount = money_text(commission.amount, currency)
    if carry and commission.amount < expected:
        return (
            f"{head} = {money_text(expected, currency, code=False)}, less losses carried "
            f"from earlier periods {ARROW} {amount}"
        )
    text = f"{head} {ARROW} {amount}"
    if commission.capped:
        text += "; " + _cap_words(commission, terms, per_deal=False)
    return text
