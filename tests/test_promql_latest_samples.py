"""Instant selectors select each series' latest sample once per distinct timestamp list and keep the
result while it holds (series_columns.latest_samples); aggregations without a parameter keep theirs
for the same input.  Both must give, bit for bit, what Series.latest_at and aggregate() give at every
instant: samples ageing out of the lookback, staleness markers, pods joining, missing scrapes and
leaving, evaluations moving forward, back and jumping, and a selector matching nothing."""

from __future__ import annotations

import math
import random
import struct

import pytest

from hpa_experiments.backends.sim.promql_engine import PromQLEngine, TimeSeriesDB, aggregation, evaluator
from hpa_experiments.backends.sim.promql_engine.tsdb import LabelMatcher, MatchType

LOOKBACK_S = 40.0


def _expected(db: TimeSeriesDB, name: str, t_ms: int) -> list:
    name, _, pod = name.partition('{pod="')
    matchers = [LabelMatcher("__name__", MatchType.EQUAL, name)]
    if pod:
        matchers.append(LabelMatcher("pod", MatchType.EQUAL, pod.rstrip('"}')))
    out = []
    for series in db.select(matchers):
        value = series.latest_at(t_ms, round(LOOKBACK_S * 1000))
        if value is not None:
            out.append((series.labels, value))
    return out


def _bits(vector: list) -> list:
    return [
        (tuple(sorted(labels.items())) if isinstance(labels, dict) else labels, struct.pack("<d", v))
        for labels, v in vector
    ]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kept_instant_selections_match_latest_at(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    selections = []
    select = evaluator.latest_samples
    monkeypatch.setattr(evaluator, "latest_samples", lambda *args: selections.append(1) or select(*args))
    rng = random.Random(seed)
    db = TimeSeriesDB(retention_seconds=120)
    engine = PromQLEngine(db, lookback_delta=LOOKBACK_S)
    handles: dict[int, tuple[int, list]] = {}
    compared = empty = calls = 0
    previous: set[int] = set()
    for step in range(150):
        t = 10_000.0 + 15 * step + rng.choice([0.0, 0.0, 0.25])
        if rng.random() < 0.15:
            continue  # no scrape at all: samples age out of the lookback
        pods = {pod for pod in range(10) if rng.random() < (0.9 if pod < 6 else 0.4)}
        by_handle = []
        for pod in sorted(pods):
            label_sets = [{"__name__": name, "pod": f"p{pod}", "job": "j"} for name in ("g", "kv")]
            cached = handles.get(pod)
            if cached is None or cached[0] != db.removals:
                cached = handles[pod] = (db.removals, db.series(label_sets))
            values = [rng.choice([0.0, -0.0, 1.0, 2.5, math.nan, math.inf, rng.uniform(-5, 5)]) for _ in label_sets]
            by_handle.append((cached[1], values))
        db.append_many(t, [], by_handle)
        for gone in sorted(previous - pods):
            if rng.random() < 0.5:  # the target went away: staleness markers hide its series at once
                db.mark_stale({"pod": f"p{gone}"}, t)
        previous = pods
        instants = [t, t + 5, t + 10, t + 14.999, t + 39.9, t + 41, t + 20, t + 41, t - 7, t + 5, t - 7, t + 90]
        for at in instants:
            calls += 1
            t_ms = round(at * 1000)
            for name in ("g", "kv", "nothing", 'g{pod="p7"}', 'kv{pod="p2"}'):
                expected = _expected(db, name, t_ms)
                got = [(tuple(sorted(s.labels.items())), s.value) for s in engine.instant(name, at)]
                assert _bits(got) == _bits(expected), (step, at, name)
                compared += len(expected)
                empty += not expected
                vector = [(labels, value) for labels, value in expected]
                for op in ("sum", "avg", "max", "min", "count"):
                    grouping = aggregation.Grouping(False, frozenset({"job"}))
                    want = aggregation.aggregate(op, vector, grouping, None) if vector else []
                    result = engine.instant(f"{op} by (job) ({name})", at)
                    assert _bits([(tuple(sorted(s.labels.items())), s.value) for s in result]) == _bits(want), (op, at)
            shifted = engine.instant("g offset 20s", at)
            assert _bits([(tuple(sorted(s.labels.items())), s.value) for s in shifted]) == _bits(
                _expected(db, "g", round(at * 1000) - 20_000)
            )
    assert compared > 5000 and empty > 10
    evaluations = (5 * 6 + 1) * calls  # one selector per query
    assert 1000 < len(selections) < 0.6 * evaluations  # kept between scrapes, selected again after
