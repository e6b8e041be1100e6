"""The twin's PromQL engine answers like a real Prometheus 2.x on the same samples.

vLLM-like series (per-pod counters, gauges and TTFT histograms, scraped every 15 s
with jitter, a pod restart that resets its counters, a pod that disappears, a quiet
spell without requests) are pushed by remote-write to a real Prometheus and appended
to the engine's store; a corpus of queries must then give the same label sets and
values (relative 1e-9) at several instants and as range queries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
import requests

from hpa_experiments.backends.sim.promql_engine import PromQLEngine, TimeSeriesDB

pytestmark = pytest.mark.prometheus

TTFT_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]  # fmt: skip
DURATION = 1200  # seconds of history
SCRAPE = 15
RESTART_AT = 600  # pod b restarts: its counters start again from zero
GONE_AT = 720  # pod c stops being scraped
QUIET = (900, 1000)  # no requests at all

Samples = list[tuple[float, float]]
SeriesData = list[tuple[dict[str, str], Samples]]

SEL = '{model_name="m",namespace="ns"}'
CORPUS = [
    # the exact metrics.csv queries of hpa-exp
    f"sum(rate(vllm:time_to_first_token_seconds_sum{SEL}[1m])) / "
    f"sum(rate(vllm:time_to_first_token_seconds_count{SEL}[1m])) * 1000",
    f"histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{SEL}[1m]))) * 1000",
    f"histogram_quantile(0.5, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{SEL}[1m]))) * 1000",
    f"histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{SEL}[1m]))) * 1000",
    f"sum(rate(vllm:request_success_total{SEL}[1m])) * 60",
    f"sum(vllm:num_requests_running{SEL})",
    f"sum(vllm:num_requests_waiting{SEL})",
    f"avg(vllm:kv_cache_usage_perc{SEL})",
    f"max(vllm:kv_cache_usage_perc{SEL})",
    'group by (__name__) ({__name__=~"vllm[:_](time_to_first_token_seconds|inter_token_latency_seconds)_count"})',
    # prometheus-adapter style
    'avg(vllm:num_requests_waiting{namespace="ns",pod=~"a|b"}) by (pod)',
    'sum(vllm:num_requests_running{namespace="ns",pod=~"a|b|c"}) by (pod)',
    'avg(vllm:kv_cache_usage_perc{namespace!="",pod!=""}) by (namespace, pod)',
    # selectors and functions
    'vllm:num_requests_running{namespace="ns"}',
    '{__name__=~"vllm[:_]num_requests_waiting", pod!~"a"}',
    "rate(vllm:request_success_total[1m])",
    'irate(vllm:request_success_total{namespace="ns"}[1m])',
    'increase(vllm:request_success_total{namespace="ns"}[2m])',
    'delta(vllm:num_requests_waiting{namespace="ns"}[2m])',
    'avg_over_time(vllm:num_requests_running{namespace="ns"}[2m])',
    "max_over_time(vllm:kv_cache_usage_perc[5m])",
    'min_over_time(vllm:kv_cache_usage_perc{namespace="ns"}[90s])',
    'sum_over_time(vllm:num_requests_waiting{namespace="ns"}[1m])',
    "count_over_time(vllm:num_requests_waiting[3m])",
    'last_over_time(vllm:num_requests_waiting{namespace="ns"}[10m])',
    'histogram_quantile(0.75, rate(vllm:time_to_first_token_seconds_bucket{namespace="ns"}[2m]))',
    'abs(delta(vllm:num_requests_running{namespace="ns"}[1m]))',
    'clamp_max(vllm:num_requests_waiting{namespace="ns"}, 4) + clamp_min(vllm:num_requests_running, 2)',
    # aggregations
    "sum without (pod) (vllm:num_requests_running)",
    "count by (namespace) (vllm:num_requests_running)",
    "min by (namespace) (vllm:kv_cache_usage_perc) * 100",
    'stddev(vllm:kv_cache_usage_perc{namespace="ns"})',
    'quantile(0.3, vllm:num_requests_waiting{namespace="ns"})',
    'topk(2, vllm:num_requests_waiting{namespace="ns"})',
    # binary operators and matching
    'vllm:num_requests_running{namespace="ns"} > 3',
    'vllm:num_requests_running{namespace="ns"} > bool 3',
    '2 >= vllm:num_requests_waiting{namespace="ns"}',
    'vllm:num_requests_running{namespace="ns"} / vllm:num_requests_waiting{namespace="ns"}',
    "vllm:num_requests_running / on(pod, namespace) vllm:kv_cache_usage_perc",
    "vllm:num_requests_waiting - ignoring(model_name) vllm:num_requests_running",
    "vllm:num_requests_running == bool on(pod) vllm:num_requests_waiting",
    'vllm:num_requests_waiting{namespace="ns"} and vllm:num_requests_running{namespace="ns"} > 2',
    'vllm:num_requests_waiting{namespace="ns"} or vllm:num_requests_running{namespace="other"}',
    "vllm:num_requests_waiting unless on(pod) vllm:num_requests_running > 4",
    "sum by (pod) (rate(vllm:request_success_total[1m])) / on(pod) group_left "
    "sum by (pod, namespace) (vllm:num_requests_running)",
    "vllm:num_requests_waiting / on(namespace) group_left sum by (namespace) (vllm:num_requests_waiting)",
    "sum by (namespace) (vllm:num_requests_running) - on(namespace) group_right vllm:num_requests_waiting",
    "vllm:time_to_first_token_seconds_bucket / on(pod, namespace) group_left vllm:time_to_first_token_seconds_count",
    "vllm:num_requests_running > bool on(namespace) group_left sum by (namespace) (vllm:num_requests_waiting)",
    "vllm:num_requests_running > on(pod) group_left(model_name) vllm:num_requests_waiting",
    'label_replace(vllm:num_requests_running, "zone", "z-$1", "pod", "(.*)") '
    "* on(pod) group_right(zone) vllm:kv_cache_usage_perc",
    f"sum(rate(vllm:request_success_total{SEL}[1m])) / 0",
    "-vllm:num_requests_running % 3 ^ 2",
    'scalar(sum(vllm:num_requests_running{namespace="ns"})) * vllm:kv_cache_usage_perc',
    "vector(1) + 2 * 3",
    'count_values("v", vllm:num_requests_running)',
    'count_values without (pod) ("v", vllm:num_requests_waiting{namespace="ns"})',
    'deriv(vllm:num_requests_waiting{namespace="ns"}[2m])',
    'predict_linear(vllm:request_success_total{namespace="ns"}[5m], 300)',
    "predict_linear(vllm:kv_cache_usage_perc[2m] offset 1m, 60)",
    # label functions, absent, timestamp
    'label_replace(vllm:num_requests_running{namespace="ns"}, "replica", "r-$1${1}$$", "pod", "(.*)")',
    'label_replace(vllm:kv_cache_usage_perc, "namespace", "", "pod", "[ab]")',
    'label_replace(vllm:num_requests_waiting, "x", "$1x-${p}-$", "pod", "(?P<p>.)")',
    'absent(vllm:num_requests_running{namespace="nope", pod="x", pod=~"y"})',
    "absent(vllm:num_requests_running)",
    'absent_over_time(vllm:num_requests_running{pod="c"}[2m])',
    'timestamp(vllm:num_requests_running{namespace="ns"} offset 30s)',
    "timestamp(sum(vllm:num_requests_running))",
    # time shifts and subqueries
    'vllm:num_requests_running{namespace="ns"} offset 2m',
    'rate(vllm:request_success_total{namespace="ns"}[1m] offset 1m)',
    'max_over_time(rate(vllm:request_success_total{namespace="ns"}[1m])[5m:30s])',
]


def generate(t0: float, seed: int = 7) -> SeriesData:
    """Scrapes every 15 s, all times on whole milliseconds; pods a and c on an exact grid, b and d jittered."""
    rng = np.random.default_rng(seed)
    out: SeriesData = []
    pods = [("ns", "a", 0.0, 0.0), ("ns", "b", 4.321, 0.3), ("ns", "c", 9.5, 0.0), ("other", "d", 2.0, 0.3)]
    for namespace, pod, phase, jitter in pods:
        base = {"namespace": namespace, "pod": pod, "model_name": "m"}
        end = GONE_AT if pod == "c" else DURATION
        times = [
            round(t0 + phase + k * SCRAPE + rng.uniform(-jitter, jitter), 3)
            for k in range(int((end - phase) // SCRAPE))
        ]
        rate = rng.uniform(0.5, 3.0)
        buckets = np.zeros(len(TTFT_BUCKETS) + 1)
        total, count, success = 0.0, 0.0, 0.0
        series: dict[str, Samples] = {}
        restarted = False
        for t in times:
            elapsed = t - t0
            if pod == "b" and elapsed >= RESTART_AT and not restarted:
                buckets[:], total, count, success = 0, 0.0, 0.0, 0.0
                restarted = True
            n = 0 if QUIET[0] <= elapsed < QUIET[1] else int(rng.poisson(rate * SCRAPE))
            latencies = rng.lognormal(np.log(0.2), 1.0, n)
            buckets += np.histogram(latencies, bins=[0.0, *TTFT_BUCKETS, np.inf])[0]
            total += float(latencies.sum())
            count += n
            success += max(n - int(rng.integers(0, 3)), 0)
            cumulative = np.cumsum(buckets)
            for le, value in zip([*TTFT_BUCKETS, "+Inf"], cumulative, strict=True):
                series.setdefault(f"bucket:{le}", []).append((t, float(value)))
            series.setdefault("sum", []).append((t, total))
            series.setdefault("count", []).append((t, count))
            series.setdefault("success", []).append((t, success))
            series.setdefault("running", []).append((t, float(rng.integers(0, 8))))
            series.setdefault("waiting", []).append((t, float(rng.integers(0, 6))))
            series.setdefault("kv", []).append((t, float(rng.choice([0.0, rng.uniform(0, 1)]))))
        hist = "vllm:time_to_first_token_seconds"
        names = {"sum": f"{hist}_sum", "count": f"{hist}_count", "success": "vllm:request_success_total",
                 "running": "vllm:num_requests_running", "kv": "vllm:kv_cache_usage_perc",
                 "waiting": "vllm:num_requests_waiting" if pod != "d" else "vllm_num_requests_waiting"}  # fmt: skip
        for key, samples in series.items():
            if key.startswith("bucket:"):
                le = key.split(":", 1)[1]
                labels = {**base, "__name__": f"{hist}_bucket", "le": le if le == "+Inf" else repr(float(le))}
            else:
                labels = {**base, "__name__": names[key]}
            out.append((labels, samples))
    return out


def load_engine(data: SeriesData) -> PromQLEngine:
    db = TimeSeriesDB(retention_seconds=3 * DURATION)
    for labels, samples in data:
        for t, value in samples:
            db.append(labels, t, value)
    return PromQLEngine(db)


def by_labels(pairs: Sequence[tuple[Mapping[str, str], object]]) -> dict[frozenset, object]:
    result: dict[frozenset, object] = {}
    for labels, value in pairs:
        key = frozenset(labels.items())
        assert key not in result, f"duplicate label set {dict(labels)}"
        result[key] = value
    return result


def same_value(ours: float, theirs: float) -> bool:
    if math.isnan(theirs) or math.isnan(ours):
        return math.isnan(theirs) and math.isnan(ours)
    return math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12)


def prometheus_range(server, query: str, start: float, end: float, step: float) -> list[dict]:
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    body = requests.get(server.url + "/api/v1/query_range", params=params, timeout=10).json()
    assert body.get("status") == "success", body
    return body["data"]["result"]


@pytest.fixture(scope="module")
def t0() -> float:
    return float(int(time.time()) - DURATION - 60)


@pytest.fixture
def loaded(prometheus, t0):
    data = generate(t0)
    prometheus.push(data)
    return prometheus, load_engine(data)


# Instants, seconds after t0.  Multiples of 15 s are on pod a's grid: windows and the lookback
# then start exactly on a sample (Prometheus 2.x includes it).  Pod c's last sample is at
# 699.5 s, so 999.5 s is exactly at the end of its 5 min lookback and 999.501 s just past it.
OFFSETS = [75.0, 300.0, 599.9, 615.25, 900.0, 905.0, 965.0, 999.5, 999.501, 1010.0, 1190.0]


@pytest.mark.slow
def test_instant_queries_match_prometheus(loaded, t0):
    server, engine = loaded
    instants = [round(t0 + offset, 3) for offset in OFFSETS]
    mismatches = []
    for at in instants:  # all queries at one instant, like a monitor tick (they share subexpressions)
        for query in CORPUS:
            theirs = by_labels([(r["metric"], float(r["value"][1])) for r in server.query(query, at)])
            ours = by_labels([(s.labels, s.value) for s in engine.instant(query, at)])
            if ours.keys() != theirs.keys() or not all(same_value(ours[k], theirs[k]) for k in theirs):
                mismatches.append((query, at - t0, sorted(theirs.items(), key=str), sorted(ours.items(), key=str)))
    assert not mismatches, "\n\n".join(str(m) for m in mismatches[:5])


@pytest.mark.parametrize(
    ("query", "start", "end", "step"),
    [
        (CORPUS[0], 60.0, 1190.0, 15.0),
        (CORPUS[1], 60.0, 1190.0, 37.5),
        (CORPUS[4], 0.0, 1200.0, 5.0),
        ('avg(vllm:num_requests_waiting{namespace="ns",pod=~"a|b|c"}) by (pod)', 500.0, 1199.0, 20.0),
        ('rate(vllm:request_success_total{namespace="ns"}[1m])', 100.0, 1100.0, 30.0),
        ("vllm:num_requests_running > 5", 700.0, 1100.0, 10.0),
        ("scalar(max(vllm:kv_cache_usage_perc))", 0.0, 300.0, 60.0),
        ('sum(vllm:num_requests_running{namespace="ns"} @ start()) - time() / 1e6', 400.0, 800.0, 45.0),
        ('max_over_time(rate(vllm:request_success_total{namespace="ns"}[1m])[5m:20s])', 300.0, 1200.0, 25.0),
    ],
)
def test_range_queries_match_prometheus(loaded, t0, query, start, end, step):
    server, engine = loaded
    start, end = t0 + start, t0 + end
    theirs = by_labels(
        [
            (r["metric"], [(float(t), float(v)) for t, v in r["values"]])
            for r in prometheus_range(server, query, start, end, step)
        ]
    )
    ours = by_labels([(s.labels, s.points) for s in engine.range(query, start, end, step)])
    assert ours.keys() == theirs.keys()
    assert theirs, "the comparison needs a non-empty result"
    for key, their_points in theirs.items():
        our_points = ours[key]
        assert [t for t, _ in our_points] == pytest.approx([t for t, _ in their_points], abs=1e-6)
        assert all(same_value(a, b) for (_, a), (_, b) in zip(our_points, their_points, strict=True)), key


EDGE_CORPUS = [
    "edge",
    "sum(edge)",
    "avg(edge)",
    "max(edge)",
    "min(edge)",
    "count(edge)",
    "stddev(edge)",
    "quantile(0.5, edge)",
    "topk(3, edge)",
    "bottomk(2, edge)",
    "sum by (kind) (edge)",
    "avg by (kind) (edge)",
    "edge / 0",
    "edge % -3",
    "-edge ^ 0.5",
    "edge atan2 2",
    "edge == edge",
    "edge != bool edge",
    "sqrt(edge)",
    "ln(edge)",
    "log2(edge)",
    "exp(edge)",
    "ceil(edge)",
    "floor(edge)",
    "round(edge)",
    "round(edge, 0.3)",
    "clamp(edge, -1, 1)",
    "clamp(edge, 1, -1)",
    "clamp_min(edge, 0)",
    "avg_over_time(edge[1m])",
    "sum_over_time(edge[1m])",
    "max_over_time(edge[1m])",
    "min_over_time(edge[1m])",
    "stddev_over_time(edge[1m])",
    "quantile_over_time(0.3, edge[1m])",
    "changes(edge[1m])",
    "histogram_quantile(0.5, bucket)",
    "histogram_quantile(0.9, bucket)",
    "histogram_quantile(0.999, bucket)",
    "histogram_quantile(0, bucket)",
    "sort_desc(edge)",
    'count_values("v", edge)',
    "deriv(edge[1m])",
    "predict_linear(edge[1m], 30)",
    "stddev by (name) (edge)",  # one sample per group: 0, even for ±Inf and NaN
    "topk by (kind) (2, edge)",
    'edge{name="none"} / ignoring(name) edge',  # empty side: no many-to-many error
]


def edge_series(t0: float) -> SeriesData:
    """Gauges holding NaN, ±Inf, zero, negatives and fractions; odd histograms (duplicate and missing
    bounds, non-monotonic counts, no +Inf bucket, no observations)."""
    cycles = {
        "nan": [math.nan, 1.0, math.nan, 2.0],
        "pinf": [math.inf, 3.0, math.inf, math.inf],
        "ninf": [-math.inf, -math.inf, 0.0, -2.5],
        "zero": [0.0, 0.0, -0.0, 0.0],
        "neg": [-7.25, -1.5, -0.5, -3.0],
        "frac": [2.5, 3.5, -2.5, 0.45],
        "big": [1e300, 1e308, -1e308, 1e-300],  # (Go's Log on amd64 mishandles subnormals)
    }
    out: SeriesData = []
    for name, cycle in cycles.items():
        kind = "special" if name in ("nan", "pinf", "ninf") else "plain"
        samples = [(round(t0 + 15 * k, 3), cycle[k % len(cycle)]) for k in range(40)]
        out.append(({"__name__": "edge", "name": name, "kind": kind}, samples))
    histograms = {
        "ok": {"0.1": 5, "0.5": 9, "1": 12, "+Inf": 20},
        "dup": {"0.1": 2, "0.10": 3, "1": 10, "1.0": 4, "+Inf": 30},
        "dip": {"0.1": 8, "0.5": 6, "1": 9, "+Inf": 9},
        "noinf": {"0.1": 1, "1": 2},
        "empty": {"0.1": 0, "1": 0, "+Inf": 0},
        "bad": {"x": 3, "1": 4, "+Inf": 5},
        "neg": {"-1": 1, "0": 3, "2": 7, "+Inf": 10},
    }
    for histogram, counts in histograms.items():
        for le, count in counts.items():
            labels = {"__name__": "bucket", "h": histogram, "le": le}
            out.append((labels, [(round(t0 + 15 * k, 3), float(count)) for k in range(40)]))
    return out


def test_float_edge_cases_match_prometheus(prometheus, t0):
    data = edge_series(t0)
    prometheus.push(data)
    engine = load_engine(data)
    mismatches = []
    for query in EDGE_CORPUS:
        for at in (t0 + 30, t0 + 45, t0 + 52.5, t0 + 90):
            theirs = by_labels([(r["metric"], float(r["value"][1])) for r in prometheus.query(query, at)])
            ours = by_labels([(s.labels, s.value) for s in engine.instant(query, at)])
            if ours.keys() != theirs.keys() or not all(same_value(ours[k], theirs[k]) for k in theirs):
                mismatches.append((query, at - t0, sorted(theirs.items(), key=str), sorted(ours.items(), key=str)))
    assert not mismatches, "\n\n".join(str(m) for m in mismatches[:6])
