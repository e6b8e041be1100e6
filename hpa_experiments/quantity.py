"""Exact parsing of Kubernetes resource quantities ("500m", "20", "1.5", "2k", "1Mi", "1e3").

Grammar (k8s.io/apimachinery/pkg/api/resource, `ParseQuantity`):

    <quantity> ::= <signedNumber><suffix>
    <suffix>   ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI> ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>

Values are computed with `decimal` so that "60250m" is exactly 60.25 and the milli-unit
integers the HPA controller works with come out exact (no 0.1 * 1000 = 100.00000000000001).
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_CEILING, Decimal, localcontext

QuantityInput = str | int | float | Decimal

_BINARY_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_DECIMAL_SUFFIXES: dict[str, Decimal] = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY_RE = re.compile(
    r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?:(?P<exponent>[eE][+-]?[0-9]+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)"
)
_PRECISION = 60  # digits; ample for anything Kubernetes accepts (int64 milli-values)


def parse_quantity_decimal(text: QuantityInput) -> Decimal:
    """Parse a Kubernetes quantity (or a plain YAML number) to an exact Decimal.

    Raises ValueError naming the offending input when it is not a valid quantity.
    """
    if isinstance(text, bool):
        raise ValueError(f"invalid quantity {text!r}: expected a number or a string like '500m'")
    if isinstance(text, Decimal):
        if not text.is_finite():
            raise ValueError(f"invalid quantity {text!r}: must be finite")
        return text
    if isinstance(text, int):
        return Decimal(text)
    if isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"invalid quantity {text!r}: must be finite")
        return Decimal(repr(text))  # the shortest decimal that round-trips, e.g. 0.1 -> Decimal("0.1")
    if not isinstance(text, str):
        raise ValueError(f"invalid quantity {text!r}: expected a number or a string like '500m'")
    match = _QUANTITY_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid quantity {text!r}: expected a number with an optional suffix "
            "(n, u, m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei) or exponent (e.g. '500m', '2k', '1e3')"
        )
    with localcontext() as context:
        context.prec = _PRECISION
        number = Decimal(match["number"])
        if match["exponent"] is not None:
            return number * Decimal(10) ** int(match["exponent"][1:])
        suffix = match["suffix"] or ""
        multiplier = _BINARY_SUFFIXES.get(suffix) or _DECIMAL_SUFFIXES[suffix]
        return number * multiplier


def parse_quantity(text: QuantityInput) -> float:
    """Parse a Kubernetes quantity ("500m", "20", "1.5", "2k", "1Mi", "1e3") to a float."""
    return float(parse_quantity_decimal(text))


def to_milli(value: QuantityInput) -> int:
    """Milli-units of a quantity, rounded up like `resource.Quantity.MilliValue()` (ceil(q * 1000)).

    Accepts a float (taken at its shortest round-tripping decimal, so 0.1 -> 100, not 101), an int,
    a Decimal or a quantity string. This is how the HPA controller reads metric targets.
    """
    with localcontext() as context:
        context.prec = _PRECISION
        return int((parse_quantity_decimal(value) * 1000).to_integral_value(rounding=ROUND_CEILING))
