"""Series scraped together share one timestamp list in the TSDB (never changed in place: appends and
trims replace it), and rate/increase/delta locate a window once per distinct list.  Checked against a
plain model of each series' samples and against the general path (window objects), while pods join,
miss scrapes, leave, get trimmed by the retention, replace a sample at the same millisecond, reset
their counters, and when a selector matches nothing."""

from __future__ import annotations

import random
import struct

import pytest

from hpa_experiments.backends.sim.promql_engine import PromQLEngine, TimeSeriesDB
from hpa_experiments.backends.sim.promql_engine.functions import RANGE_FUNCTIONS
from hpa_experiments.backends.sim.promql_engine.tsdb import LabelMatcher, MatchType
from hpa_experiments.backends.sim.promql_engine.values import RangeSample, drop_metric_name


def _labels(pod: int, le: str) -> dict[str, str]:
    return {"__name__": "h_bucket", "pod": f"p{pod:02d}", "le": le}


def _run(seed: int, check: object) -> None:
    """Scrapes of up to 12 pods x 3 buckets, by handle and by labels, with `check(db, model, t)` after each."""
    rng = random.Random(seed)
    db = TimeSeriesDB(retention_seconds=90)
    model: dict[tuple, tuple[list[int], list[float]]] = {}  # what each series must hold
    counts: dict[tuple, float] = {}
    handles: dict[int, tuple[int, list]] = {}
    for step in range(120):
        t_ms = 1_000_000 + 15_000 * step + rng.choice([0, 0, 1, 500])
        pods = [pod for pod in range(12) if rng.random() < (0.9 if pod < 8 else 0.3)]
        by_handle, samples = [], []
        for pod in pods:
            label_sets = [_labels(pod, le) for le in ("1", "5", "+Inf")]
            values = []
            for labels in label_sets:
                key = tuple(sorted(labels.items()))
                counts[key] = counts.get(key, 0.0) + rng.choice([0.0, 1.0, 3.0])
                if rng.random() < 0.03:
                    counts[key] = 0.0  # counter reset
                values.append(counts[key])
            if pod % 2:  # by handle, as the twin's scrape targets
                cached = handles.get(pod)
                if cached is None or cached[0] != db.removals:
                    cached = handles[pod] = (db.removals, db.series(label_sets))
                by_handle.append((cached[1], values))
            else:
                samples.extend(zip(label_sets, values, strict=True))
            for labels, value in zip(label_sets, values, strict=True):
                times, stored = model.setdefault(tuple(sorted(labels.items())), ([], []))
                times.append(t_ms)
                stored.append(value)
        db.append_many(t_ms / 1000, samples, by_handle)
        if rng.random() < 0.2 and pods:  # the same millisecond again for one series: replaces its sample
            labels = _labels(pods[0], "1")
            key = tuple(sorted(labels.items()))
            db.append(labels, t_ms / 1000, model[key][1][-1] + 0.5)
            model[key][1][-1] += 0.5
        newest = t_ms
        for key, (times, stored) in list(model.items()):  # the retention, as the sweep applies it (lazily)
            keep = [i for i, t in enumerate(times) if t >= newest - 90_000 - 90_000 // 4]
            model[key] = ([times[i] for i in keep], [stored[i] for i in keep])
        check(db, model, t_ms)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shared_timestamp_lists_hold_each_series_samples(seed: int) -> None:
    shared = []

    def check(db: TimeSeriesDB, model: dict, t_ms: int) -> None:
        selected = db.select([LabelMatcher("__name__", MatchType.EQUAL, "h_bucket")])
        for series in selected:
            times, stored = model[series.labels]
            # the sweep trims lazily (every quarter retention): what is stored ends like the model
            assert series.times == times[len(times) - len(series.times) :]
            assert series.values == stored[len(stored) - len(series.values) :]
            assert len(series.times) == len(series.values) > 0
            assert len(series.times) >= sum(t >= t_ms - 90_000 for t in times)  # nothing within the retention lost
        shared.append(len(selected) - len({id(series.times) for series in selected}))

    _run(seed, check)
    assert sum(shared) > 1000  # lists were shared


def _general(db: TimeSeriesDB, function: str, selector: str, range_ms: int, t_ms: int) -> list:
    compute, _ = RANGE_FUNCTIONS[function]
    out = []
    for series in db.select([LabelMatcher("__name__", MatchType.EQUAL, selector)]):
        times, values = series.window(t_ms - range_ms, t_ms)
        if times:
            value = compute(RangeSample(series.labels, times, values, t_ms - range_ms, t_ms, t_ms), [])
            if value is not None:
                out.append((drop_metric_name(series.labels), struct.pack("<d", value)))
    return out


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("function", ["rate", "increase", "delta"])
def test_windows_over_shared_lists_match_the_general_path(seed: int, function: str) -> None:
    engine: list[PromQLEngine] = []
    compared = []

    def check(db: TimeSeriesDB, model: dict, t_ms: int) -> None:
        if not engine:
            engine.append(PromQLEngine(db))
        for at_ms in (t_ms, t_ms + 4_000, t_ms + 14_999, t_ms - 20_000):
            for window, range_ms in (("20s", 20_000), ("1m", 60_000)):
                for name in ("h_bucket", "nothing_bucket"):
                    fast = [
                        (tuple(sorted(s.labels.items())), struct.pack("<d", s.value))
                        for s in engine[0].instant(f"{function}({name}[{window}])", at_ms / 1000)
                    ]
                    assert fast == _general(db, function, name, range_ms, at_ms), (t_ms, at_ms, window, name)
                    compared.append(len(fast))

    _run(seed, check)
    assert sum(compared) > 10_000 and 0 in compared


@pytest.mark.parametrize("how", ["by_handle", "by_labels", "same_millisecond"])
def test_a_first_counter_reset_is_seen_after_none_for_long(how: str) -> None:
    """rate() skips the reset scan while no selected series ever dropped, a check kept until the
    store's `drops` changes: the first drop, however written, must bump it."""
    db = TimeSeriesDB(retention_seconds=600)
    engine = PromQLEngine(db)
    label_sets = [{"__name__": "c_total", "pod": f"p{pod}"} for pod in range(4)]
    handles = db.series(label_sets)
    for step in range(12):
        values = [float(10 * step + pod) for pod in range(4)]
        if step == 9 and how != "same_millisecond":
            values[2] = 1.0  # the first reset
        t = 100.0 + 15 * step
        if how == "by_labels":
            db.append_many(t, list(zip(label_sets, values, strict=True)))
        else:
            db.append_many(t, [], [(handles, values)])
        if step == 9 and how == "same_millisecond":
            db.append(label_sets[2], t, 1.0)  # replaces the sample just written: a drop from the one before
        for window, range_ms in (("1m", 60_000), ("2m", 120_000)):
            got = [
                (tuple(sorted(s.labels.items())), struct.pack("<d", s.value))
                for s in engine.instant(f"rate(c_total[{window}])", t + 1)
            ]
            assert got == _general(db, "rate", "c_total", range_ms, round((t + 1) * 1000)), (step, window)
    assert db.drops == 1
