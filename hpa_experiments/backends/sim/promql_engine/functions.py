"""PromQL functions with Prometheus 2.x semantics (float samples only).

Range-vector functions take one series' samples inside its window and return a value
or None (no output sample).  Instant-vector functions map a vector to a vector.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import pairwise

import numpy as np

from hpa_experiments.backends.sim.promql_engine.values import (
    METRIC_NAME,
    Labels,
    RangeSample,
    Vector,
    drop_metric_name,
    label_value,
)

NAN = math.nan
INF = math.inf


# --- range-vector functions ---------------------------------------------------------


def extrapolated_rate(window: RangeSample, is_counter: bool, is_rate: bool) -> float | None:
    """rate/increase/delta: Prometheus' extrapolatedRate, including counter resets."""
    times, values = window.times, window.values
    if len(times) < 2:
        return None
    result = values[-1] - values[0]
    if is_counter:
        result = add_resets(result, values, 0, len(values))
    extrapolated = extrapolate(
        np.array([result]),
        np.array([values[0]]),
        np.array([times[0]]),
        np.array([times[-1]]),
        np.array([len(times)]),
        window.start_ms,
        window.end_ms,
        is_counter,
        is_rate,
    )
    return float(extrapolated[0])


def add_resets(result: float, values: list[float], lo: int, hi: int) -> float:
    """`result` (last - first of values[lo:hi]) plus, in order, each value a counter reset drops from."""
    previous = values[lo]
    for index in range(lo + 1, hi):
        current = values[index]
        if current < previous:
            result += previous
        previous = current
    return result


def extrapolate(
    result: np.ndarray,
    first: np.ndarray,
    first_ms: np.ndarray,
    last_ms: np.ndarray,
    count: np.ndarray,
    start_ms: int,
    end_ms: int,
    is_counter: bool,
    is_rate: bool,
) -> np.ndarray:
    """extrapolatedRate's second half for many windows at once: `result` (last - first, resets
    corrected) of `count` >= 2 samples from first_ms to last_ms, extrapolated to [start_ms, end_ms].

    Element by element the same IEEE operations in the same order as Prometheus' Go code (and as
    plain Python floats would do them), so the values are bit-for-bit those of a scalar loop."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        duration_to_start = (first_ms - start_ms) / 1000
        duration_to_end = (end_ms - last_ms) / 1000
        sampled_interval = (last_ms - first_ms) / 1000
        average_between_samples = sampled_interval / (count - 1)
        if is_counter:
            # Do not extrapolate the counter to below zero.
            duration_to_zero = sampled_interval * (first / result)
            closer = (result > 0) & (first >= 0) & (duration_to_zero < duration_to_start)
            duration_to_start = np.where(closer, duration_to_zero, duration_to_start)
        threshold = average_between_samples * 1.1
        half = average_between_samples / 2
        extrapolate_to = sampled_interval + np.where(duration_to_start < threshold, duration_to_start, half)
        extrapolate_to = extrapolate_to + np.where(duration_to_end < threshold, duration_to_end, half)
        factor = extrapolate_to / sampled_interval
        if is_rate:
            factor = factor / ((end_ms - start_ms) / 1000)
        result = result * factor
    return result


def instant_value(window: RangeSample, is_rate: bool) -> float | None:
    """irate/idelta from the last two samples."""
    times, values = window.times, window.values
    if len(times) < 2:
        return None
    last, previous = values[-1], values[-2]
    result = last if is_rate and last < previous else last - previous
    interval_ms = times[-1] - times[-2]
    if interval_ms == 0:
        return None
    return result / (interval_ms / 1000) if is_rate else result


def kahan_add(increment: float, total: float, compensation: float) -> tuple[float, float]:
    """One step of Kahan-Neumaier summation (Prometheus' kahanSumInc)."""
    new_total = total + increment
    if abs(total) >= abs(increment):
        compensation += (total - new_total) + increment
    else:
        compensation += (increment - new_total) + total
    return new_total, compensation


def sum_over_time(values: list[float]) -> float:
    total, compensation = 0.0, 0.0
    for value in values:
        total, compensation = kahan_add(value, total, compensation)
    return total if math.isinf(total) else total + compensation


def avg_over_time(values: list[float]) -> float:
    mean, compensation = 0.0, 0.0
    for count, value in enumerate(values, start=1):
        if math.isinf(mean) and (
            (math.isinf(value) and (mean > 0) == (value > 0)) or not (math.isinf(value) or math.isnan(value))
        ):
            continue
        mean, compensation = kahan_add(value / count - mean / count, mean, compensation)
    return mean if math.isinf(mean) else mean + compensation


def variance_over_time(values: list[float]) -> float:
    """Population variance by Welford's method with Kahan-compensated sums."""
    mean, mean_c, aux, aux_c = 0.0, 0.0, 0.0, 0.0
    for count, value in enumerate(values, start=1):
        delta = value - (mean + mean_c)
        mean, mean_c = kahan_add(delta / count, mean, mean_c)
        aux, aux_c = kahan_add(delta * (value - (mean + mean_c)), aux, aux_c)
    return (aux + aux_c) / len(values)


def max_over_time(values: list[float]) -> float:
    result = values[0]
    for value in values[1:]:
        if value > result or math.isnan(result):
            result = value
    return result


def min_over_time(values: list[float]) -> float:
    result = values[0]
    for value in values[1:]:
        if value < result or math.isnan(result):
            result = value
    return result


def variance(values: list[float]) -> float:
    """Population variance by Welford's method, started from the first value as Prometheus' stdvar."""
    mean, aux = values[0], 0.0
    for count, value in enumerate(values[1:], start=2):
        delta = value - mean
        mean += delta / count
        aux += delta * (value - mean)
    return aux / len(values)


def quantile(q: float, values: list[float]) -> float:
    """The φ-quantile with linear interpolation between closest ranks (quantile, quantile_over_time)."""
    if not values or math.isnan(q):
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    ordered = sorted(values, key=_nan_first)
    rank = q * (len(ordered) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def _nan_first(value: float) -> tuple[bool, float]:
    return (not math.isnan(value), value)


def _changes(values: list[float]) -> float:
    return float(sum(1 for a, b in pairwise(values) if not (a == b or (math.isnan(a) and math.isnan(b)))))


def _resets(values: list[float]) -> float:
    return float(sum(1 for a, b in pairwise(values) if b < a))


def linear_regression(times: list[int], values: list[float], intercept_ms: int) -> tuple[float, float]:
    """Least-squares slope (per second) and the value at intercept_ms, as Prometheus' linearRegression."""
    if all(value == values[0] for value in values):
        return (NAN, NAN) if math.isinf(values[0]) else (0.0, values[0])
    n = float(len(values))
    sum_x = sum_y = sum_xy = sum_x2 = 0.0
    c_x = c_y = c_xy = c_x2 = 0.0
    for t_ms, value in zip(times, values, strict=True):
        x = (t_ms - intercept_ms) / 1e3
        sum_x, c_x = kahan_add(x, sum_x, c_x)
        sum_y, c_y = kahan_add(value, sum_y, c_y)
        sum_xy, c_xy = kahan_add(x * value, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_add(x * x, sum_x2, c_x2)
    sum_x, sum_y, sum_xy, sum_x2 = sum_x + c_x, sum_y + c_y, sum_xy + c_xy, sum_x2 + c_x2
    slope = go_divide(sum_xy - sum_x * sum_y / n, sum_x2 - sum_x * sum_x / n)
    return slope, sum_y / n - slope * sum_x / n


def _deriv(window: RangeSample) -> float | None:
    if len(window.values) < 2:
        return None
    return linear_regression(window.times, window.values, window.times[0])[0]


def _predict_linear(window: RangeSample, seconds_ahead: float) -> float | None:
    if len(window.values) < 2:
        return None
    slope, intercept = linear_regression(window.times, window.values, window.eval_ms)
    return slope * seconds_ahead + intercept


RangeFunction = Callable[[RangeSample, list[float]], float | None]

# name -> (function of (window, scalar arguments), keeps the metric name)
RANGE_FUNCTIONS: dict[str, tuple[RangeFunction, bool]] = {
    "rate": (lambda w, _: extrapolated_rate(w, True, True), False),
    "increase": (lambda w, _: extrapolated_rate(w, True, False), False),
    "delta": (lambda w, _: extrapolated_rate(w, False, False), False),
    "irate": (lambda w, _: instant_value(w, True), False),
    "idelta": (lambda w, _: instant_value(w, False), False),
    "avg_over_time": (lambda w, _: avg_over_time(w.values), False),
    "sum_over_time": (lambda w, _: sum_over_time(w.values), False),
    "max_over_time": (lambda w, _: max_over_time(w.values), False),
    "min_over_time": (lambda w, _: min_over_time(w.values), False),
    "count_over_time": (lambda w, _: float(len(w.values)), False),
    "last_over_time": (lambda w, _: w.values[-1], True),
    "present_over_time": (lambda w, _: 1.0, False),
    "stdvar_over_time": (lambda w, _: variance_over_time(w.values), False),
    "stddev_over_time": (lambda w, _: _go_sqrt(variance_over_time(w.values)), False),
    "quantile_over_time": (lambda w, args: quantile(args[0], w.values), False),
    "changes": (lambda w, _: _changes(w.values), False),
    "resets": (lambda w, _: _resets(w.values), False),
    "deriv": (lambda w, _: _deriv(w), False),
    "predict_linear": (lambda w, args: _predict_linear(w, args[0]), False),
}


# --- Go float semantics ---------------------------------------------------------------


def go_max(a: float, b: float) -> float:
    if a == INF or b == INF:
        return INF
    if math.isnan(a) or math.isnan(b):
        return NAN
    return a if a > b else b


def go_min(a: float, b: float) -> float:
    if a == -INF or b == -INF:
        return -INF
    if math.isnan(a) or math.isnan(b):
        return NAN
    return a if a < b else b


def _go_sqrt(value: float) -> float:
    return math.sqrt(value) if value >= 0 or math.isnan(value) else NAN


def _go_exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return INF


def _go_log(function: Callable[[float], float], value: float) -> float:
    """Logarithm returning -Inf for 0 and NaN for negatives, as Go does, instead of raising."""
    if value == 0:
        return -INF
    if value < 0:
        return NAN
    return function(value)


def _round(value: float, to_nearest: float) -> float:
    inverse = go_divide(1.0, to_nearest)
    shifted = value * inverse + 0.5
    if not math.isfinite(shifted):  # Go's Floor keeps ±Inf and NaN
        return go_divide(shifted, inverse)
    return go_divide(float(math.floor(shifted)), inverse)


def go_divide(a: float, b: float) -> float:
    """a / b with IEEE results for a zero divisor (±Inf, NaN) instead of an exception."""
    if b == 0:
        return NAN if a == 0 or math.isnan(a) else math.copysign(INF, a) * math.copysign(1.0, b)
    return a / b


# name -> function of (value, scalar arguments); all of these drop the metric name.
ELEMENTWISE_FUNCTIONS: dict[str, Callable[[float, list[float]], float]] = {
    "abs": lambda v, _: abs(v),
    "ceil": lambda v, _: float(math.ceil(v)) if math.isfinite(v) else v,
    "floor": lambda v, _: float(math.floor(v)) if math.isfinite(v) else v,
    "exp": lambda v, _: _go_exp(v),
    "sqrt": lambda v, _: _go_sqrt(v),
    "ln": lambda v, _: _go_log(math.log, v),
    "log2": lambda v, _: _go_log(math.log2, v),
    "log10": lambda v, _: _go_log(math.log10, v),
    "clamp_min": lambda v, args: go_max(v, args[0]),
    "clamp_max": lambda v, args: go_min(v, args[0]),
    "round": lambda v, args: _round(v, args[0] if args else 1.0),
}


def apply_elementwise(name: str, vector: Vector, args: list[float]) -> Vector:
    if name == "clamp":
        low, high = args
        if high < low:
            return []
        return [(drop_metric_name(labels), go_max(low, go_min(high, value))) for labels, value in vector]
    function = ELEMENTWISE_FUNCTIONS[name]
    return [(drop_metric_name(labels), function(value, args)) for labels, value in vector]


# --- histogram_quantile ----------------------------------------------------------------


def histogram_quantile(q: float, vector: Vector) -> Vector:
    """Quantile from classic `le` buckets, per label set without `le` and `__name__`."""
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for labels, value in vector:
        try:
            upper_bound = float(label_value(labels, "le"))
        except ValueError:
            continue  # no or unparsable `le`: Prometheus ignores the sample
        key = tuple(pair for pair in labels if pair[0] not in ("le", METRIC_NAME))
        groups.setdefault(key, []).append((upper_bound, value))
    return [(key, bucket_quantile(q, buckets)) for key, buckets in groups.items()]


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' bucketQuantile: linear interpolation inside the bucket holding the rank."""
    if math.isnan(q):
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    ordered = sorted(buckets, key=lambda bucket: bucket[0])
    if not (math.isinf(ordered[-1][0]) and ordered[-1][0] > 0):
        return NAN
    merged = _coalesce(ordered)
    _ensure_monotonic(merged)
    if len(merged) < 2:
        return NAN
    observations = merged[-1][1]
    if observations == 0:
        return NAN
    rank = q * observations
    index = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if index == len(merged) - 1:
        return merged[-2][0]
    if index == 0 and merged[0][0] <= 0:
        return merged[0][0]
    bucket_start = 0.0
    bucket_end, count = merged[index]
    if index > 0:
        bucket_start = merged[index - 1][0]
        count -= merged[index - 1][1]
        rank -= merged[index - 1][1]
    return bucket_start + (bucket_end - bucket_start) * go_divide(rank, count)


def _coalesce(buckets: list[tuple[float, float]]) -> list[list[float]]:
    """Merge buckets with the same upper bound (e.g. `le="1"` and `le="1.0"`)."""
    merged: list[list[float]] = []
    for upper_bound, count in buckets:
        if merged and merged[-1][0] == upper_bound:
            merged[-1][1] += count
        else:
            merged.append([upper_bound, count])
    return merged


def _ensure_monotonic(buckets: list[list[float]]) -> None:
    """Raise bucket counts that dip below an earlier bucket (precision loss, scrape races)."""
    highest = -INF
    for bucket in buckets:
        if bucket[1] > highest:
            highest = bucket[1]
        elif bucket[1] < highest:
            bucket[1] = highest
