"""`sum by/without` over rate/increase/delta of a selector is summed from the range function's
columns with numpy (aggregation.ColumnSum); it must give what the general path gives, bit for bit:
the same groups in the same order, -0.0 and NaN included, with series appearing and disappearing
between evaluations, counter resets, empty windows and a selector matching nothing."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest

from hpa_experiments.backends.sim.promql_engine import PromQLEngine, PromQLError, TimeSeriesDB, aggregation, evaluator
from hpa_experiments.backends.sim.promql_engine.values import make_labels


def _bits(result: list) -> list[tuple[tuple, bytes]]:
    return [(tuple(sorted(s.labels.items())), struct.pack("<d", s.value)) for s in result]


class _General(PromQLEngine):
    """The engine with the column path off: sum evaluates its argument to a vector and folds it."""

    def compile(self, query: str) -> evaluator.Node:
        plan = super().compile(query)
        for node in _nodes(plan):
            if isinstance(node, evaluator.AggregateNode):
                node._columns = None
        return plan


def _nodes(node: object) -> list[object]:
    found = [node]
    for name in ("node", "expr", "lhs", "rhs", "operand"):
        child = getattr(node, name, None)
        if isinstance(child, evaluator.Node):
            found += _nodes(child)
    for child in getattr(node, "args", []):
        found += _nodes(child)
    return found


QUERIES = [
    "sum by (le) (rate(h_bucket[1m]))",
    "sum(rate(h_bucket[1m]))",
    "sum without (pod) (increase(h_bucket[45s]))",
    "sum by (pod, le) (delta(g[1m]))",
    "sum by (nothing) (rate(h_bucket{pod=~'p[0-3]'}[1m]))",
    "sum(rate(missing_total[1m]))",
    "sum(rate({__name__=~'h_bucket|c_total'}[1m]))",
    "histogram_quantile(0.9, sum by (le) (rate(h_bucket[1m]))) * 1000",
]


def _scrape(rng: random.Random, pods: list[int], counts: dict) -> list:
    samples = []
    for pod in pods:
        for le in ("0.1", "1", "+Inf"):
            key = (pod, le)
            step = rng.choice([0.0, 0.0, 1.0, 2.5, 1e9, 1e-300])
            counts[key] = counts.get(key, 0.0) + step
            if rng.random() < 0.05:
                counts[key] = rng.choice([0.0, -0.0, 1.0])  # a counter reset (to zero, even -0.0)
            samples.append(({"__name__": "h_bucket", "pod": f"p{pod}", "le": le}, counts[key]))
        gauge = rng.choice([0.0, -0.0, 1.5, -2.0, math.nan, math.inf, -math.inf, rng.uniform(-1, 1)])
        samples.append(({"__name__": "g", "pod": f"p{pod}", "le": "x"}, gauge))
        samples.append(({"__name__": "c_total", "pod": f"p{pod}", "le": "1"}, float(rng.randrange(100))))
    return samples


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_column_sum_matches_the_general_path(seed: int) -> None:
    rng = random.Random(seed)
    fast_db, general_db = TimeSeriesDB(retention_seconds=120), TimeSeriesDB(retention_seconds=120)
    fast, general = PromQLEngine(fast_db), _General(general_db)
    counts: dict = {}
    compared = errors = 0
    for step in range(80):
        t = 1000.0 + 15 * step + rng.choice([0.0, 0.001, 7.5])
        pods = [pod for pod in range(8) if rng.random() < 0.85]  # pods come and go
        samples = _scrape(rng, pods, counts)
        fast_db.append_many(t, samples)
        general_db.append_many(t, samples)
        for at in (t, t + 4.9, t + 9.8, t - 20):
            for query in QUERIES:
                try:
                    expected = _bits(general.instant(query, at))
                except PromQLError as exc:
                    with pytest.raises(PromQLError, match=str(exc)):
                        fast.instant(query, at)
                    errors += 1
                    continue
                assert _bits(fast.instant(query, at)) == expected, (step, at, query)
                compared += len(expected)
    assert compared > 1000
    assert errors  # the two-name selector sums series whose label sets clash once the name is dropped
    column_paths = [n for n in _nodes(fast.compile(QUERIES[0])) if isinstance(n, evaluator.AggregateNode)]
    assert column_paths[0]._columns is not None  # the fast engine did take the column path


def test_column_sum_falls_back_for_negative_zero_and_nan() -> None:
    labels = [make_labels({"pod": f"p{i % 3}", "le": str(i % 2)}.items()) for i in range(12)]
    grouping = aggregation.Grouping(False, frozenset({"le"}))
    column_sum = aggregation.ColumnSum(grouping)
    rng = np.random.default_rng(4)
    payload_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0ABC))[0]
    for case in range(300):
        values = rng.normal(0, 10, 12) * rng.choice([1.0, 1e-300, 1e300], 12)
        if case % 3 == 0:
            values[rng.integers(0, 12, 6)] = -0.0
        if case % 5 == 0:
            values[rng.integers(0, 12)] = rng.choice([math.nan, payload_nan, -math.nan, math.inf])
        vector = list(zip(labels, values.tolist(), strict=True))
        expected = aggregation.aggregate("sum", vector, grouping, None)
        got = column_sum(labels, values)
        assert [(k, struct.pack("<d", v)) for k, v in got] == [(k, struct.pack("<d", v)) for k, v in expected]
    all_negative_zero = np.full(12, -0.0)
    assert all(math.copysign(1.0, v) < 0 for _, v in column_sum(labels, all_negative_zero))


def test_column_sum_regroups_when_the_series_change() -> None:
    grouping = aggregation.Grouping(False, frozenset({"pod"}))
    column_sum = aggregation.ColumnSum(grouping)
    first = [make_labels({"pod": p, "le": le}.items()) for p in ("a", "b") for le in ("1", "2")]
    assert column_sum(first, np.array([1.0, 2.0, 3.0, 4.0])) == [((("pod", "a"),), 3.0), ((("pod", "b"),), 7.0)]
    second = [make_labels({"pod": p, "le": "1"}.items()) for p in ("c", "a")]
    assert column_sum(second, np.array([5.0, 6.0])) == [((("pod", "c"),), 5.0), ((("pod", "a"),), 6.0)]
    assert column_sum(list(first), np.array([1.0, 1.0, 1.0, 1.0])) == [((("pod", "a"),), 2.0), ((("pod", "b"),), 2.0)]


def test_column_sum_adds_in_input_order_on_large_groups() -> None:
    """np.bincount adds one weight after the other; a pairwise sum (np.sum) would round differently."""
    rng = np.random.default_rng(7)
    values = rng.normal(0, 1, 30_000) * 10.0 ** rng.integers(-8, 9, 30_000)
    labels = [make_labels({"le": str(i % 3), "pod": f"p{i}"}.items()) for i in range(len(values))]
    grouping = aggregation.Grouping(False, frozenset({"le"}))
    expected = aggregation.aggregate("sum", list(zip(labels, values.tolist(), strict=True)), grouping, None)
    got = aggregation.ColumnSum(grouping)(labels, values)
    assert [(k, v.hex()) for k, v in got] == [(k, v.hex()) for k, v in expected]
    assert float(np.sum(values[0::3])).hex() != expected[0][1].hex()  # the order does matter here
