"""Money at the edges: ``Decimal`` amounts converted to and from the integer
minor units the ledger stores (cents, satoshi, ...).

Never float. Every conversion names its rounding.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation


class MoneyError(ValueError):
    """An amount that cannot be represented (too precise, not a number, ...)."""


def to_minor(amount: Decimal | str | int, exponent: int, *, rounding: str | None = None) -> int:
    """Decimal major units → integer minor units.

    Without ``rounding``, an amount with more decimals than the currency has is
    refused (a client typing 10.005 USD gets an error, not a silent rounding).
    """
    try:
        value = Decimal(amount) if not isinstance(amount, Decimal) else amount
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise MoneyError(f"Not an amount: {amount!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"Not an amount: {amount!r}")
    quantum = Decimal(1).scaleb(-exponent)
    try:
        if rounding is None:
            if value != value.quantize(quantum, rounding=ROUND_HALF_EVEN):
                raise MoneyError(f"At most {exponent} decimal places are allowed.")
            rounded = value.quantize(quantum)
        else:
            rounded = value.quantize(quantum, rounding=rounding)
    except InvalidOperation as exc:  # more digits than the context holds
        raise MoneyError(f"The amount is too large: {amount!r}") from exc
    return int(rounded.scaleb(exponent))


def from_minor(minor: int, exponent: int) -> Decimal:
    """Integer minor units → Decimal major units, exactly."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise MoneyError(f"Minor units must be an integer, not {type(minor).__name__}")
    return Decimal(minor).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))
