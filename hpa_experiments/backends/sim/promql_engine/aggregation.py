"""Aggregation operators (sum, avg, min, max, count, group, stddev, stdvar, quantile,
topk, bottomk, count_values) with `by` / `without` grouping, as Prometheus 2.x computes them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import reduce
from operator import add

import numpy as np

from hpa_experiments.backends.sim.promql_engine.errors import PromQLError
from hpa_experiments.backends.sim.promql_engine.functions import quantile, variance
from hpa_experiments.backends.sim.promql_engine.values import METRIC_NAME, Labels, Vector, make_labels

SUPPORTED = frozenset(
    {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile", "topk", "bottomk", "count_values"}
)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Grouping:
    without: bool
    labels: frozenset[str]
    # label set -> group key; the same series come back at every evaluation
    _memo: dict[Labels, Labels] = field(default_factory=dict, compare=False, repr=False)

    def key(self, labels: Labels) -> Labels:
        key = self._memo.get(labels)
        if key is None:
            if self.without:
                key = tuple(pair for pair in labels if pair[0] != METRIC_NAME and pair[0] not in self.labels)
            else:
                key = tuple(pair for pair in labels if pair[0] in self.labels)
            self._memo[labels] = key
        return key

    def forget(self) -> None:
        """Drop memoized keys (called when series come and go, so dead ones are not kept)."""
        self._memo.clear()


def aggregate(op: str, vector: Vector, grouping: Grouping, param: float | str | None) -> Vector:
    if op == "count_values":
        assert isinstance(param, str)
        return _count_values(vector, grouping, param)
    assert not isinstance(param, str)
    key_of = grouping.key
    if op in ("topk", "bottomk"):
        assert param is not None
        groups: dict[Labels, list[tuple[Labels, float]]] = {}
        for labels, value in vector:
            groups.setdefault(key_of(labels), []).append((labels, value))
        return _select_k(op, groups, param)
    if op == "sum":  # the monitor's most common aggregation, folded as it goes (same order as _reduce)
        sums: dict[Labels, float] = {}
        memo = grouping._memo
        for labels, value in vector:
            key = memo.get(labels)
            if key is None:
                key = key_of(labels)
            total = sums.get(key)
            sums[key] = value if total is None else total + value
        return list(sums.items())
    grouped: dict[Labels, list[float]] = {}
    for labels, value in vector:
        key = key_of(labels)
        members = grouped.get(key)
        if members is None:
            grouped[key] = [value]
        else:
            members.append(value)
    return [(key, _reduce(op, values, param)) for key, values in grouped.items()]


class ColumnSum:
    """`sum by/without` over values given as a column beside a list of label sets that comes back as
    the same list object while its series stay the same (a located range function's windows, see
    evaluator.RangeFunctionNode.columns): each series' group is found once per list, and the groups
    are then summed with numpy.  np.bincount adds the weights in input order onto 0.0, i.e. the same
    IEEE additions as aggregate()'s left-to-right fold, except that the fold starts from the first
    value: the two differ only for -0.0 (0.0 + -0.0 is 0.0), and NaN payloads are left to the fold
    too, so a column holding either is summed by aggregate() itself."""

    def __init__(self, grouping: Grouping):
        self.grouping = grouping
        self._labels: list[Labels] | None = None  # held, so its identity cannot be reused
        self._keys: list[Labels] = []
        self._index = np.zeros(0, dtype=np.intp)

    def __call__(self, labels: list[Labels], values: np.ndarray) -> Vector:
        """What aggregate("sum", list(zip(labels, values)), grouping, None) returns."""
        if labels is not self._labels:
            if labels != self._labels:  # the same series again (a new list after each scrape) keep their groups
                key_of = self.grouping.key
                keys: dict[Labels, int] = {}
                index = [keys.setdefault(key_of(series), len(keys)) for series in labels]
                self._keys = list(keys)
                self._index = np.array(index, dtype=np.intp)
            self._labels = labels
        if np.isnan(values).any() or ((values == 0) & np.signbit(values)).any():
            return aggregate("sum", list(zip(labels, values.tolist(), strict=True)), self.grouping, None)
        sums = np.bincount(self._index, weights=values, minlength=len(self._keys))
        return list(zip(self._keys, sums.tolist(), strict=True))


def _reduce(op: str, values: list[float], param: float | None) -> float:
    if op == "sum":
        return reduce(add, values)  # left to right, as Prometheus adds (builtin sum() may compensate)
    if op == "avg":
        return _mean(values)
    if op == "max":
        result = values[0]
        for value in values[1:]:
            if result < value or math.isnan(result):
                result = value
        return result
    if op == "min":
        result = values[0]
        for value in values[1:]:
            if result > value or math.isnan(result):
                result = value
        return result
    if op == "count":
        return float(len(values))
    if op == "group":
        return 1.0
    if op == "stdvar":
        return variance(values)
    if op == "stddev":
        return math.sqrt(variance(values))
    assert op == "quantile" and param is not None
    return quantile(param, values)


def _mean(values: list[float]) -> float:
    """Incremental mean as Prometheus' avg (avoids overflow, keeps an infinite mean)."""
    mean = values[0]
    for count, value in enumerate(values[1:], start=2):
        if math.isinf(mean) and (
            (math.isinf(value) and (mean > 0) == (value > 0)) or not (math.isinf(value) or math.isnan(value))
        ):
            continue
        mean += value / count - mean / count
    return mean


def _count_values(vector: Vector, grouping: Grouping, label: str) -> Vector:
    """count_values("label", v): how many samples have each value, the value as a label."""
    if not _LABEL_NAME.fullmatch(label):
        raise PromQLError(f"invalid label name {label!r}")
    if not grouping.without:
        grouping = Grouping(False, grouping.labels | {label})
    counts: dict[Labels, float] = {}
    for labels, value in vector:
        with_value = make_labels({**dict(labels), label: format_go_float(value)}.items())
        key = grouping.key(with_value)
        counts[key] = counts.get(key, 0.0) + 1.0
    return list(counts.items())


def format_go_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64): shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _select_k(op: str, groups: dict[Labels, list[tuple[Labels, float]]], param: float) -> Vector:
    """topk/bottomk with Prometheus' bounded heap, so that ties pick the same series."""
    if math.isnan(param) or param < 1:
        return []
    k = int(min(param, 2**62))
    top = op == "topk"

    def less(a: float, b: float) -> bool:  # heap order: the root is the one to evict first
        return math.isnan(a) or (a < b if top else a > b)

    out: Vector = []
    for members in groups.values():
        heap = [members[0]]
        for sample in members[1:]:
            if len(heap) < k:
                heap.append(sample)
                _sift_up(heap, len(heap) - 1, less)
            elif less(heap[0][1], sample[1]) and not math.isnan(sample[1]):
                heap[0] = sample
                if k > 1 and not _sift_down(heap, 0, less):
                    _sift_up(heap, 0, less)
        # Prometheus then sorts the heap in reverse (an insertion sort for up to 12 elements: stable).
        for i in range(1, len(heap)):
            j = i
            while j > 0 and less(heap[j - 1][1], heap[j][1]):
                heap[j - 1], heap[j] = heap[j], heap[j - 1]
                j -= 1
        out.extend(heap)
    return out


def _sift_up(heap: list[tuple[Labels, float]], j: int, less: Callable[[float, float], bool]) -> None:
    while j > 0:
        parent = (j - 1) // 2
        if not less(heap[j][1], heap[parent][1]):
            break
        heap[parent], heap[j] = heap[j], heap[parent]
        j = parent


def _sift_down(heap: list[tuple[Labels, float]], i0: int, less: Callable[[float, float], bool]) -> bool:
    i, n = i0, len(heap)
    while 2 * i + 1 < n:
        j = 2 * i + 1
        if j + 1 < n and less(heap[j + 1][1], heap[j][1]):
            j += 1
        if not less(heap[j][1], heap[i][1]):
            break
        heap[i], heap[j] = heap[j], heap[i]
        i = j
    return i > i0
