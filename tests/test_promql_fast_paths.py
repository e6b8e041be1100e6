"""The PromQL engine's shortcuts give exactly what the general path gives.

rate/increase/delta over a plain selector are computed from the stored samples without window
objects, skipping the counter-reset scan for series that never dropped, and extrapolated for all
series at once with numpy; scrapes may append by series handles.  Each is checked bit-for-bit
against the general or scalar code on random data with counter resets, equal values and
same-millisecond replacements; `sum` folds each group as it goes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from hpa_experiments.backends.sim.promql_engine import PromQLEngine, TimeSeriesDB, aggregation, evaluator
from hpa_experiments.backends.sim.promql_engine.functions import RANGE_FUNCTIONS, extrapolate
from hpa_experiments.backends.sim.promql_engine.tsdb import LabelMatcher, MatchType
from hpa_experiments.backends.sim.promql_engine.values import RangeSample, drop_metric_name, make_labels


def _random_db(seed: int) -> TimeSeriesDB:
    rng = random.Random(seed)
    db = TimeSeriesDB(retention_seconds=3600)
    for t in range(0, 600, 15):
        _scrape(db, rng, t)
    return db


def _scrape(db: TimeSeriesDB, rng: random.Random, t: int) -> None:
    """One scrape of six pods' c_total at about t (each pod at its own offset)."""
    for pod in range(6):
        if pod == 5 and t < 300:
            continue  # a series that starts late (fewer samples in some windows)
        labels = {"__name__": "c_total", "pod": f"p{pod}"}
        values = db.select([LabelMatcher("pod", MatchType.EQUAL, f"p{pod}")])
        last = values[0].values[-1] if values else 0.0
        if pod < 3:  # counters: increases, some zero steps; pods 1 and 2 reset now and then
            value = last + rng.choice([0.0, 0.5, 1.0, 7.25, 1e6])
            if pod > 0 and rng.random() < 0.15:
                value = rng.choice([0.0, 3.0])
        else:  # gauges: anything, negative too
            value = rng.uniform(-50, 50)
        db.append(labels, t + rng.uniform(0, 2), value)
        if rng.random() < 0.1:  # the same millisecond again: replaces the sample (may make a drop)
            db.append(
                labels, db.select([LabelMatcher("pod", MatchType.EQUAL, f"p{pod}")])[0].times[-1] / 1000, value - 2
            )


def _general(db: TimeSeriesDB, function: str, range_ms: int, t_ms: int) -> list[tuple[tuple, float]]:
    """The same function evaluated window by window as the general path does it."""
    compute, _ = RANGE_FUNCTIONS[function]
    out = []
    for series in db.select([LabelMatcher("__name__", MatchType.EQUAL, "c_total")]):
        times, values = series.window(t_ms - range_ms, t_ms)
        if times:
            value = compute(RangeSample(series.labels, times, values, t_ms - range_ms, t_ms, t_ms), [])
            if value is not None:
                out.append((drop_metric_name(series.labels), value))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("function", ["rate", "increase", "delta"])
def test_extrapolated_functions_match_the_general_path(seed: int, function: str) -> None:
    db = _random_db(seed)
    engine = PromQLEngine(db)
    assert any(not s.never_dropped for s in db.select([LabelMatcher("__name__", MatchType.EQUAL, "c_total")]))
    compared = 0
    for t in range(30, 640, 7):
        for window in ("20s", "1m", "5m"):
            range_ms = {"20s": 20_000, "1m": 60_000, "5m": 300_000}[window]
            fast = [
                (tuple(sorted(s.labels.items())), s.value) for s in engine.instant(f"{function}(c_total[{window}])", t)
            ]
            general = _general(db, function, range_ms, t * 1000)
            assert [(labels, repr(v)) for labels, v in fast] == [(labels, repr(v)) for labels, v in general]
            compared += len(fast)
    assert compared > 500


@pytest.mark.parametrize("function", ["rate", "increase", "delta"])
def test_windows_kept_between_evaluations_match_the_general_path(
    function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The located windows are reused while the store is unchanged and no sample lies between the old
    and new bounds: evaluated between scrapes at instants moving forward in small steps, back, and
    jumping, the same plan gives what the general path gives at each instant."""
    rng = random.Random(8)
    db = TimeSeriesDB(retention_seconds=3600)
    engine = PromQLEngine(db)
    located = []
    locate = evaluator._locate_windows
    monkeypatch.setattr(evaluator, "_locate_windows", lambda *args: located.append(1) or locate(*args))
    compared = evaluations = 0
    for t in range(0, 600, 15):
        _scrape(db, rng, t)
        instants = sorted({t * 1000 + rng.randrange(0, 15_000) for _ in range(4)})
        for at_ms in [*instants, t * 1000 - 30_000, t * 1000 + 1]:
            for window, range_ms in (("20s", 20_000), ("1m", 60_000)):
                fast = [
                    (tuple(sorted(s.labels.items())), repr(s.value))
                    for s in engine.instant(f"{function}(c_total[{window}])", at_ms / 1000)
                ]
                general = _general(db, function, range_ms, at_ms)
                assert fast == [(labels, repr(v)) for labels, v in general], (t, at_ms, window)
                compared += len(fast)
                evaluations += 1
    assert compared > 1000
    assert evaluations / 2 < len(located) < evaluations  # windows both kept and located again


def test_appending_by_handle_stores_what_append_many_stores() -> None:
    rng = random.Random(5)
    by_labels, by_handle = TimeSeriesDB(retention_seconds=60), TimeSeriesDB(retention_seconds=60)
    label_sets = [{"__name__": "m", "pod": f"p{i}"} for i in range(4)]
    handles = by_handle.series(label_sets)
    for t in range(0, 300, 15):
        values = [rng.choice([1.0, 2.0, rng.random()]) for _ in label_sets]
        by_labels.append_many(t, list(zip(label_sets, values, strict=True)))
        if by_handle.removals:  # not expected here: every series gets a sample each time
            handles = by_handle.series(label_sets)
        by_handle.append_many(t, [], [(handles, values)])
    for a, b in zip(
        by_labels.select([LabelMatcher("__name__", MatchType.EQUAL, "m")]),
        by_handle.select([LabelMatcher("__name__", MatchType.EQUAL, "m")]),
        strict=True,
    ):
        assert (a.labels, a.times, a.values, a.never_dropped) == (b.labels, b.times, b.values, b.never_dropped)
        assert len(a.times) == 5  # retention applied to both


def _scalar_extrapolate(
    result: float,
    first: float,
    first_ms: int,
    last_ms: int,
    count: int,
    start_ms: int,
    end_ms: int,
    is_counter: bool,
    is_rate: bool,
) -> float:
    """Prometheus' extrapolatedRate (second half) on Python floats, as the engine computed it before."""
    duration_to_start = (first_ms - start_ms) / 1000
    duration_to_end = (end_ms - last_ms) / 1000
    sampled_interval = (last_ms - first_ms) / 1000
    average_between_samples = sampled_interval / (count - 1)
    if is_counter and result > 0 and first >= 0:
        duration_to_zero = sampled_interval * (first / result)
        duration_to_start = min(duration_to_start, duration_to_zero)
    threshold = average_between_samples * 1.1
    extrapolate_to = sampled_interval
    extrapolate_to += duration_to_start if duration_to_start < threshold else average_between_samples / 2
    extrapolate_to += duration_to_end if duration_to_end < threshold else average_between_samples / 2
    factor = extrapolate_to / sampled_interval
    if is_rate:
        factor /= (end_ms - start_ms) / 1000
    return result * factor


@pytest.mark.parametrize(("is_counter", "is_rate"), [(True, True), (True, False), (False, False)])
def test_vectorized_extrapolation_is_bit_for_bit_the_scalar_one(is_counter: bool, is_rate: bool) -> None:
    rng = random.Random(11)
    start_ms, end_ms = 1_767_225_600_000, 1_767_225_660_000
    cases = []
    for _ in range(20_000):
        first_ms = start_ms + rng.choice([0, 1, rng.randrange(0, 30_000), 16_500, 16_501])
        last_ms = first_ms + rng.choice([1, 15_000, 30_000, rng.randrange(1, end_ms - first_ms + 1)])
        last_ms = min(last_ms, end_ms)
        if last_ms <= first_ms:
            continue
        count = rng.randrange(2, 7)
        first = rng.choice([0.0, -0.0, 1.0, rng.uniform(0, 1e6), rng.uniform(-10, 10), 3e300])
        result = rng.choice([0.0, 1.0, 1e-9, rng.uniform(0, 1e4), rng.uniform(-5, 5), first * 1e-3])
        cases.append((result, first, first_ms, last_ms, count))
    columns = list(zip(*cases, strict=True))
    fast = extrapolate(
        np.array(columns[0]), np.array(columns[1]), np.array(columns[2]), np.array(columns[3]), np.array(columns[4]),
        start_ms, end_ms, is_counter, is_rate,
    ).tolist()  # fmt: skip
    slow = [_scalar_extrapolate(*case, start_ms, end_ms, is_counter, is_rate) for case in cases]
    assert [repr(v) for v in fast] == [repr(v) for v in slow]


def test_sum_folds_like_the_general_reduction() -> None:
    """`sum by` folds each group as it goes: the same groups in the same order and the same values,
    bit for bit, as collecting each group's values and reducing them left to right."""
    rng = np.random.default_rng(11)
    vector = [
        (make_labels({"pod": f"p{rng.integers(0, 7)}", "le": str(i), "x": "y"}.items()), float(v))
        for i, v in enumerate(rng.normal(0, 1e6, 3000) * rng.choice([1e-9, 1.0, 1e9], 3000))
    ]
    for grouping in (aggregation.Grouping(False, frozenset({"pod"})), aggregation.Grouping(True, frozenset({"le"}))):
        groups: dict = {}
        for labels, value in vector:
            groups.setdefault(grouping.key(labels), []).append(value)
        expected = [(key, aggregation._reduce("sum", values, None)) for key, values in groups.items()]
        assert aggregation.aggregate("sum", vector, grouping, None) == expected
