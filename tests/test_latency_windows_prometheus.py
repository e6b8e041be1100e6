"""The window latency queries give the same answer on a real Prometheus 2.x and on the twin's engine.

Two pods' TTFT and ITL histograms, scraped every 15 s, are pushed by remote-write to a real
Prometheus and appended to the twin's store: pod a runs the whole time, pod b is added at 300 s
(counters from zero) and removed at 900 s (as a scale-down does).  `measure_windows` is run through
the Kubernetes backend's Prometheus client and through the engine; both must agree (relative 1e-9),
and the p90 must lie in the bucket that holds the true p90 of the observations in the window.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from hpa_experiments.backends.kube.prom import PromClient, PromSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from hpa_experiments.backends.sim.promql_engine import PromQLEngine, TimeSeriesDB
from hpa_experiments.column_queries import MetricNames
from hpa_experiments.latency_windows import LatencyWindow, measure_windows, window_queries
from tests.support.vllm_exporter import ITL_BUCKETS, TTFT_BUCKETS

pytestmark = pytest.mark.prometheus

SCRAPE = 15
DURATION = 1200
SEL = '{model_name="m",namespace="ns"}'
PODS = {"a": (0, DURATION), "b": (300, 900)}  # pod -> (first scrape, last scrape) in seconds
HISTOGRAMS = {"vllm:time_to_first_token_seconds": TTFT_BUCKETS, "vllm:inter_token_latency_seconds": ITL_BUCKETS}


def generate(t0: float) -> tuple[list, dict[str, list[tuple[float, float]]]]:
    """Series to store, and every TTFT/ITL observation with the scrape time that first shows it."""
    rng = np.random.default_rng(11)
    series: list = []
    observed: dict[str, list[tuple[float, float]]] = {name: [] for name in HISTOGRAMS}
    for pod, (first, last) in PODS.items():
        times = [t0 + k for k in range(first, last + 1, SCRAPE)]
        for name, bounds in HISTOGRAMS.items():
            counts, total, count = np.zeros(len(bounds) + 1), 0.0, 0
            samples: dict[str, list[tuple[float, float]]] = {}
            for i, t in enumerate(times):
                # load that rises and falls, so one-minute means differ from the whole window
                n = 0 if i == 0 else int(rng.poisson(5 + 20 * math.sin(math.pi * (t - t0) / DURATION) ** 4))
                scale = 0.15 if name.endswith("first_token_seconds") else 0.03
                values = rng.lognormal(math.log(scale * (1 + 10 * ((t - t0) > 600))), 0.6, n)
                observed[name] += [(t, v) for v in values]
                counts += np.histogram(values, bins=[0.0, *bounds, np.inf])[0]
                total, count = total + float(values.sum()), count + n
                for le, value in zip([*bounds, "+Inf"], np.cumsum(counts), strict=True):
                    samples.setdefault(le if le == "+Inf" else repr(float(le)), []).append((t, float(value)))
                samples.setdefault("_sum", []).append((t, total))
                samples.setdefault("_count", []).append((t, float(count)))
            base = {"model_name": "m", "namespace": "ns", "pod": pod}
            for key, points in samples.items():
                if key.startswith("_"):
                    series.append(({**base, "__name__": name + key}, points))
                else:
                    series.append(({**base, "__name__": name + "_bucket", "le": key}, points))
    return series, observed


class _Queries:
    """measure_windows' view of a backend (name, retention, query) over a query function."""

    def __init__(self, name: str, query):
        self.name, self.series_retention_s, self.query = name, None, query


def _engine_backend(series: list) -> _Queries:
    db = TimeSeriesDB(retention_seconds=3 * DURATION)
    for labels, points in series:
        for t, value in points:
            db.append(labels, t, value)
    engine = PromQLEngine(db)
    return _Queries("simulation", lambda promql, at=None: engine.instant(promql, at))


def _bucket(value: float, bounds: list[float]) -> tuple[float, float]:
    edges = [0.0, *bounds, math.inf]
    upper = next(i for i, b in enumerate(edges) if value <= b)
    return edges[upper - 1], edges[upper]


def test_same_window_answers_on_prometheus_and_the_twin_engine(prometheus):
    t0 = float(round(time.time()) - DURATION - 30)
    series, observed = generate(t0)
    prometheus.push(series)
    client = PromClient(PromSettings(url=prometheus.url), retry=RetryPolicy(max_attempts=1))
    real = _Queries("kubernetes", client.query)
    prometheus.wait_for(f"vllm:time_to_first_token_seconds_count{SEL}")
    windows = [LatencyWindow("run", "run", 0.0, DURATION), LatencyWindow("middle", "phase", 300.0, 900.0)]
    warnings: list[str] = []
    names, quantiles = MetricNames(), [0.5, 0.9, 0.99]
    on_prometheus = measure_windows(real, names, SEL, t0, windows, quantiles, DURATION, warnings.append)
    on_engine = measure_windows(_engine_backend(series), names, SEL, t0, windows, quantiles, DURATION, warnings.append)
    assert warnings == []
    for ours, theirs in zip(on_engine, on_prometheus, strict=True):
        assert (
            ours["queries"]
            == theirs["queries"]
            == window_queries(names, SEL, f"{round((ours['end_s'] - ours['start_s']) * 1000)}ms", quantiles)
        )
        for metric in ("ttft_ms", "itl_ms"):
            for key, value in theirs[metric].items():
                assert value is not None and math.isclose(ours[metric][key], value, rel_tol=1e-9), (metric, key)

    for window, result in zip(windows, on_prometheus, strict=True):
        for name, metric, bounds in (
            ("vllm:time_to_first_token_seconds", "ttft_ms", TTFT_BUCKETS),
            ("vllm:inter_token_latency_seconds", "itl_ms", ITL_BUCKETS),
        ):
            inside = np.array([v for t, v in observed[name] if t0 + window.start_s < t <= t0 + window.end_s])
            low, high = _bucket(float(np.percentile(inside, 90)), bounds)
            assert low * 1000 <= result[metric]["p90"] <= high * 1000, (window.name, metric)
            # increase() extrapolates pod b's series to the window's edges; within 2 % here
            assert result[metric]["observations"] == pytest.approx(len(inside), rel=0.02)
            assert result[metric]["mean"] == pytest.approx(inside.mean() * 1000, rel=0.02)
