from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backoffice.money import MoneyError, from_minor, to_minor


@given(minor=st.integers(min_value=-(2**63), max_value=2**63 - 1), exponent=st.integers(0, 18))
def test_minor_units_round_trip_exactly(minor, exponent):
    assert to_minor(from_minor(minor, exponent), exponent) == minor


def test_conversions():
    assert to_minor("12.34", 2) == 1234
    assert to_minor(Decimal("1500"), 0) == 1500
    assert from_minor(1, 8) == Decimal("0.00000001")
    assert to_minor("0.005", 2, rounding=ROUND_HALF_UP) == 1


@pytest.mark.parametrize("bad", ["10.005", "NaN", "Infinity", "abc", "", None, "1e-9"])
def test_amounts_that_cannot_be_represented_are_refused(bad):
    with pytest.raises(MoneyError):
        to_minor(bad, 2)


def test_minor_units_must_be_integers():
    with pytest.raises(MoneyError):
        from_minor(1.5, 2)
    with pytest.raises(MoneyError):
        from_minor(True, 2)
