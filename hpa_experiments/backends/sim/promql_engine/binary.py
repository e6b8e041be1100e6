"""Binary operators: arithmetic, comparison (filtering or `bool`) and set operators,
between scalars and vectors, with Prometheus 2.x vector matching rules."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

from hpa_experiments.backends.sim.promql_engine.errors import PromQLError
from hpa_experiments.backends.sim.promql_engine.functions import go_divide
from hpa_experiments.backends.sim.promql_engine.values import (
    METRIC_NAME,
    Labels,
    Vector,
    drop_metric_name,
    ensure_unique_labelsets,
    format_labels,
)


def _modulo(a: float, b: float) -> float:
    try:
        return math.fmod(a, b)
    except ValueError:  # fmod(x, 0) and fmod(±Inf, y) are NaN in Go
        return math.nan


def _is_odd_integer(value: float) -> bool:
    return math.isfinite(value) and value == math.floor(value) and math.fmod(value, 2) != 0


def _power(a: float, b: float) -> float:
    """math.pow with Go's results where Python raises (overflow, zero to a negative power)."""
    try:
        return math.pow(a, b)
    except OverflowError:
        return -math.inf if a < 0 and _is_odd_integer(b) else math.inf
    except (ValueError, ZeroDivisionError):
        if a == 0:
            return math.copysign(math.inf, a) if _is_odd_integer(b) else math.inf
        return math.nan


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": go_divide,
    "%": _modulo,
    "^": _power,
    "atan2": math.atan2,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}
SET_OPERATORS = frozenset({"and", "or", "unless"})
# Operators whose result loses the metric name (Prometheus' shouldDropMetricName).
_DROPS_NAME = frozenset({"+", "-", "*", "/", "%", "^"})


@dataclass(frozen=True)
class Matching:
    """How two vectors are matched: on(...) / ignoring(...), and group_left/right."""

    on: bool = False
    labels: frozenset[str] = frozenset()
    cardinality: str = "one-to-one"  # "one-to-one" | "many-to-one" | "one-to-many" | "many-to-many"
    include: tuple[str, ...] = field(default=())  # group_x labels copied from the "one" side

    def signature(self, labels: Labels) -> Labels:
        if self.on:
            return tuple(pair for pair in labels if pair[0] in self.labels)
        return tuple(pair for pair in labels if pair[0] != METRIC_NAME and pair[0] not in self.labels)


def scalar_binop(op: str, lhs: float, rhs: float) -> float:
    if op in COMPARISON:
        return 1.0 if COMPARISON[op](lhs, rhs) else 0.0
    return ARITHMETIC[op](lhs, rhs)


def vector_scalar_binop(op: str, vector: Vector, scalar: float, scalar_on_left: bool, return_bool: bool) -> Vector:
    out: Vector = []
    if op in COMPARISON:
        compare = COMPARISON[op]
        for labels, value in vector:
            keep = compare(scalar, value) if scalar_on_left else compare(value, scalar)
            if return_bool:
                out.append((drop_metric_name(labels), 1.0 if keep else 0.0))
            elif keep:
                out.append((labels, value))
    else:
        apply = ARITHMETIC[op]
        drop = op in _DROPS_NAME
        for labels, value in vector:
            result = apply(scalar, value) if scalar_on_left else apply(value, scalar)
            out.append((drop_metric_name(labels) if drop else labels, result))
    return ensure_unique_labelsets(out)


def set_binop(op: str, lhs: Vector, rhs: Vector, matching: Matching) -> Vector:
    signature = matching.signature
    if op == "and":
        right = {signature(labels) for labels, _ in rhs}
        return [sample for sample in lhs if signature(sample[0]) in right]
    if op == "unless":
        right = {signature(labels) for labels, _ in rhs}
        return [sample for sample in lhs if signature(sample[0]) not in right]
    left = {signature(labels) for labels, _ in lhs}
    return lhs + [sample for sample in rhs if signature(sample[0]) not in left]


def vector_binop(op: str, lhs: Vector, rhs: Vector, matching: Matching, return_bool: bool) -> Vector:
    """Arithmetic or comparison between two vectors (Prometheus' VectorBinop)."""
    if not lhs or not rhs:
        return []  # nothing can match; Prometheus returns before checking for duplicates
    signature = matching.signature
    swapped = matching.cardinality == "one-to-many"
    if swapped:
        lhs, rhs = rhs, lhs
    right: dict[Labels, tuple[Labels, float]] = {}
    for labels, value in rhs:
        sig = signature(labels)
        if sig in right:
            side = "left" if swapped else "right"
            raise PromQLError(
                f"found duplicate series for the match group {format_labels(sig)} on the {side} hand-side "
                f"of the operation: [{format_labels(labels)}, {format_labels(right[sig][0])}]; "
                "many-to-many matching not allowed: matching labels must be unique on one side"
            )
        right[sig] = (labels, value)

    is_comparison = op in COMPARISON
    function: Callable[[float, float], float | bool] = COMPARISON[op] if is_comparison else ARITHMETIC[op]
    matched: dict[Labels, set[Labels] | None] = {}
    out: Vector = []
    for labels, value in lhs:
        sig = signature(labels)
        match = right.get(sig)
        if match is None:
            continue
        left_value, right_value = (match[1], value) if swapped else (value, match[1])
        result = function(left_value, right_value)
        if is_comparison:
            if return_bool:
                result = 1.0 if result else 0.0
            elif not result:
                continue
            else:
                result = left_value
        metric = _result_labels(labels, match[0], op, matching)
        if return_bool:
            metric = drop_metric_name(metric)
        if matching.cardinality == "one-to-one":
            if sig in matched:
                raise PromQLError(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                )
            matched[sig] = None
        else:
            inserted = matched.setdefault(sig, set())
            assert inserted is not None
            if metric in inserted:
                raise PromQLError("multiple matches for labels: grouping labels must ensure unique label set")
            inserted.add(metric)
        out.append((metric, float(result)))
    return ensure_unique_labelsets(out)


def _result_labels(lhs: Labels, rhs: Labels, op: str, matching: Matching) -> Labels:
    result = dict(lhs)
    if op in _DROPS_NAME:
        result.pop(METRIC_NAME, None)
    if matching.cardinality == "one-to-one":
        if matching.on:
            result = {k: v for k, v in result.items() if k in matching.labels}
        else:
            for name in matching.labels:
                result.pop(name, None)
    if matching.include:
        one_side = dict(rhs)
        for name in matching.include:
            if one_side.get(name):
                result[name] = one_side[name]
            else:
                result.pop(name, None)
    return tuple(sorted(result.items()))
