"""Money in templates: integer minor units shown in the currency's precision.

    {% load payments %}
    {{ wallet.balance|money:wallet.currency }}        $1,234.56   0.50000000 BTC
    {{ entry.amount|signed_money:wallet.currency }}   +$12.50 / −$12.50
    {{ entry.transaction.kind|kind_label }}           Adjustment

Exact (Decimal from the integer, never float) and never in scientific
notation: 1 satoshi is 0.00000001 BTC, not 1E-8.
"""

from __future__ import annotations

from decimal import Decimal

from django import template

from backoffice.money import from_minor

from ..forms import kind_label as _kind_label
from ..models import Currency

register = template.Library()

MINUS = "\u2212"  # a real minus sign: as wide as the plus, read out as "minus"
NBSP = "\u00a0"


def format_amount(minor: int, currency: Currency, *, signed: bool = False) -> str:
    amount: Decimal = from_minor(minor, currency.exponent)
    digits = format(abs(amount), ",f")
    symbol = currency.symbol
    # Crypto amounts read as "0.5 BTC", as on exchanges; their symbols (₿, Ξ,
    # ₮) are also missing from many system fonts and would show as boxes.
    if not symbol or currency.kind == Currency.CRYPTO:
        text = f"{digits}{NBSP}{currency.code}"
    elif symbol.isalpha():  # "CHF": a word needs a space before the number
        text = f"{symbol}{NBSP}{digits}"
    else:
        text = f"{symbol}{digits}"
    if amount < 0:
        return MINUS + text
    if signed and amount > 0:
        return "+" + text
    return text


@register.filter
def money(minor: int | None, currency: Currency) -> str:
    if minor is None:
        return ""
    return format_amount(int(minor), currency)


@register.filter
def signed_money(minor: int | None, currency: Currency) -> str:
    if minor is None:
        return ""
    return format_amount(int(minor), currency, signed=True)


@register.filter
def kind_label(kind: str) -> str:
    return _kind_label(kind)
