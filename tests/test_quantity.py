"""Kubernetes quantity parsing: exact values, milli-units, clear errors."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpa_experiments.quantity import parse_quantity, parse_quantity_decimal, to_milli


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Decimal("0.5")),
        ("60250m", Decimal("60.25")),
        ("20", Decimal(20)),
        ("1.5", Decimal("1.5")),
        ("2k", Decimal(2000)),
        ("1Mi", Decimal(1048576)),
        ("100Ki", Decimal(102400)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("25e-3", Decimal("0.025")),
        ("1.5Gi", Decimal(1610612736)),
        ("3M", Decimal(3000000)),
        ("1E", Decimal(10) ** 18),
        ("250u", Decimal("0.00025")),
        ("7n", Decimal("7e-9")),
        ("-2", Decimal(-2)),
        ("+0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        (20, Decimal(20)),
        (0.05, Decimal("0.05")),
    ],
)
def test_parse_quantity_is_exact(text: str | int | float, expected: Decimal) -> None:
    assert parse_quantity_decimal(text) == expected
    assert parse_quantity(text) == float(expected)


@pytest.mark.parametrize(
    ("value", "milli"),
    [
        ("500m", 500),
        ("60250m", 60250),
        ("20", 20000),
        (0.1, 100),  # 0.1 * 1000 in floats is 100.00000000000001; the decimal route is exact
        (0.29, 290),
        ("1.0001", 1001),  # MilliValue rounds up
        ("1u", 1),
        ("-1.5", -1500),
        (Decimal("2.5"), 2500),
        (4, 4000),
    ],
)
def test_to_milli_rounds_up_like_milli_value(value: str | int | float | Decimal, milli: int) -> None:
    assert to_milli(value) == milli


@pytest.mark.parametrize("bad", ["", "abc", "5 m", "5mm", "1K", "1e", "1ki", "m", "1.2.3", " 1", "1e3k", "--1"])
def test_invalid_strings_raise_value_error_naming_the_input(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid quantity") as info:
        parse_quantity(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [True, float("nan"), float("inf"), None, [1]])
def test_invalid_values_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_milli_suffix_round_trips_to_the_same_integer(milli: int) -> None:
    assert to_milli(f"{milli}m") == milli
    assert parse_quantity_decimal(f"{milli}m") * 1000 == milli


@given(st.decimals(min_value=-(10**9), max_value=10**9, places=3, allow_nan=False, allow_infinity=False))
def test_three_decimal_places_give_exact_milli(value: Decimal) -> None:
    assert to_milli(str(value)) == int(value * 1000)
