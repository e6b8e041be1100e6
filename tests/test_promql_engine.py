"""PromQL engine on hand-made series; every expected value is derived by hand in the comments."""

from __future__ import annotations

import math

import pytest

from hpa_experiments.backends.sim.promql_engine import PromQLEngine, PromQLError, TimeSeriesDB

T0 = 1_700_000_000.0  # a whole second, so that 15 s grids are whole milliseconds


def engine_with(*series: tuple[dict[str, str], list[tuple[float, float]]], **db_options) -> PromQLEngine:
    db = TimeSeriesDB(**db_options)
    for labels, samples in series:
        for t, value in samples:
            db.append(labels, T0 + t, value)
    return PromQLEngine(db)


def values(engine: PromQLEngine, query: str, t: float) -> dict[frozenset, float]:
    return {frozenset(s.labels.items()): s.value for s in engine.instant(query, T0 + t)}


def single(engine: PromQLEngine, query: str, t: float) -> float:
    result = engine.instant(query, T0 + t)
    assert len(result) == 1, result
    return result[0].value


def counter(name: str = "c", **labels: str) -> dict[str, str]:
    return {"__name__": name, **labels}


# --- rate / increase / irate ------------------------------------------------------------


def test_rate_of_a_linear_counter_is_its_slope():
    # +30 every 15 s = 2/s; the [1m] window at t=300 holds samples 240..300 (both ends, Prometheus 2.x).
    engine = engine_with((counter(), [(15 * k, 30.0 * k) for k in range(41)]))
    assert single(engine, "rate(c[1m])", 300) == pytest.approx(2.0, rel=1e-12)
    assert single(engine, "increase(c[1m])", 300) == pytest.approx(120.0, rel=1e-12)
    assert single(engine, "irate(c[1m])", 300) == pytest.approx(2.0, rel=1e-12)


def test_rate_extrapolates_to_the_window_edges():
    # Window [0, 60] at t=60; samples at 10, 25, 40, 55 with values 100..190.
    # delta 90 over 45 s; average spacing 15 s, threshold 16.5 s; 10 s to the start and 5 s to
    # the end are both below it, so extrapolate over 60 s: increase = 90 * 60/45 = 120.
    engine = engine_with((counter(), [(10, 100.0), (25, 130.0), (40, 160.0), (55, 190.0)]))
    assert single(engine, "increase(c[1m])", 60) == pytest.approx(120.0, rel=1e-12)
    assert single(engine, "rate(c[1m])", 60) == pytest.approx(2.0, rel=1e-12)


def test_rate_extrapolates_only_half_a_spacing_over_a_gap():
    # Samples at 30, 45, 60 (100, 130, 160) in window [0, 60]: 30 s to the start exceeds the
    # 16.5 s threshold, so only 15/2 s are added: increase = 60 * (30 + 7.5)/30 = 75.
    engine = engine_with((counter(), [(30, 100.0), (45, 130.0), (60, 160.0)]))
    assert single(engine, "increase(c[1m])", 60) == pytest.approx(75.0, rel=1e-12)
    assert single(engine, "rate(c[1m])", 60) == pytest.approx(1.25, rel=1e-12)


def test_rate_does_not_extrapolate_a_counter_below_zero():
    # Samples at 30, 45, 60 (5, 35, 65): the counter would hit zero 2.5 s before its first
    # sample (30 s * 5/60), which is nearer than the window start: increase = 60 * 32.5/30 = 65.
    engine = engine_with((counter(), [(30, 5.0), (45, 35.0), (60, 65.0)]))
    assert single(engine, "increase(c[1m])", 60) == pytest.approx(65.0, rel=1e-12)
    # delta() is for gauges: no zero clamp, 60 * 37.5/30 = 75.
    assert single(engine, "delta(c[1m])", 60) == pytest.approx(75.0, rel=1e-12)


def test_counter_reset_adds_the_value_before_the_reset():
    # 10, 20, 5, 15 at 0, 15, 30, 45; window [0, 45]: (15 - 10) + 20 = 25, no extrapolation.
    engine = engine_with((counter(), [(0, 10.0), (15, 20.0), (30, 5.0), (45, 15.0)]))
    assert single(engine, "increase(c[45s])", 45) == pytest.approx(25.0, rel=1e-12)
    assert single(engine, "rate(c[45s])", 45) == pytest.approx(25.0 / 45, rel=1e-12)
    assert single(engine, "resets(c[45s])", 45) == 1.0
    # irate after a reset takes the new value as the increase: 4/15.
    engine = engine_with((counter(), [(0, 10.0), (15, 20.0), (30, 30.0), (45, 4.0)]))
    assert single(engine, "irate(c[1m])", 45) == pytest.approx(4.0 / 15, rel=1e-12)


def test_rate_needs_two_samples_in_the_window():
    engine = engine_with((counter(), [(0, 1.0), (100, 2.0)]))
    assert engine.instant("rate(c[1m])", T0 + 100) == []
    assert single(engine, "count_over_time(c[1m])", 100) == 1.0


def test_over_time_functions():
    engine = engine_with((counter("g"), [(0, 4.0), (15, 1.0), (30, 7.0), (45, 2.0)]))
    assert single(engine, "avg_over_time(g[1m])", 45) == pytest.approx(3.5)
    assert single(engine, "max_over_time(g[1m])", 45) == 7.0
    assert single(engine, "min_over_time(g[1m])", 45) == 1.0
    assert single(engine, "sum_over_time(g[1m])", 45) == 14.0
    assert single(engine, "count_over_time(g[30s])", 45) == 3.0  # 15, 30, 45
    assert single(engine, "last_over_time(g[1m])", 50) == 2.0
    assert engine.instant("last_over_time(g[1m])", T0 + 50)[0].labels == {"__name__": "g"}
    assert engine.instant("max_over_time(g[1m])", T0 + 50)[0].labels == {}


def test_deriv_and_predict_linear_fit_a_line():
    # g = 100 + 0.5/s: slope 0.5; at t=60 the fitted value is 130, 30 s later 145.
    engine = engine_with((counter("g"), [(15 * k, 100 + 7.5 * k) for k in range(5)]))
    assert single(engine, "deriv(g[1m])", 60) == pytest.approx(0.5, rel=1e-12)
    assert single(engine, "predict_linear(g[1m], 30)", 60) == pytest.approx(145.0, rel=1e-12)
    # evaluated 10 s after the last sample, the line is extrapolated from the evaluation time
    assert single(engine, "predict_linear(g[1m], 0)", 70) == pytest.approx(135.0, rel=1e-12)


def test_count_values_counts_equal_values():
    engine = engine_with(
        *[({"__name__": "g", "pod": p}, [(0, v)]) for p, v in zip("abc", (2.0, 2.0, 0.5), strict=True)]
    )
    assert values(engine, 'count_values("v", g)', 1) == {frozenset({("v", "2")}): 2.0, frozenset({("v", "0.5")}): 1.0}


# --- histogram_quantile -------------------------------------------------------------------


def buckets(counts: dict[str, float], **labels: str) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
    return [({"__name__": "h_bucket", "le": le, **labels}, [(0, count)]) for le, count in counts.items()]


def test_histogram_quantile_interpolates_linearly_inside_the_bucket():
    engine = engine_with(*buckets({"0.1": 10, "0.5": 30, "1": 40, "+Inf": 40}, pod="a"))
    # rank 20 lies in (0.1, 0.5] holding 20 observations, 10 of them below the rank: 0.1 + 0.4 * 10/20.
    assert single(engine, "histogram_quantile(0.5, h_bucket)", 1) == pytest.approx(0.3)
    # rank 10 is exactly the first bucket's count: its upper bound, interpolated from 0.
    assert single(engine, "histogram_quantile(0.25, h_bucket)", 1) == pytest.approx(0.1)
    assert single(engine, "histogram_quantile(1, h_bucket)", 1) == pytest.approx(1.0)
    assert single(engine, "histogram_quantile(-0.1, h_bucket)", 1) == -math.inf
    assert single(engine, "histogram_quantile(1.1, h_bucket)", 1) == math.inf
    assert engine.instant("histogram_quantile(0.5, h_bucket)", T0 + 1)[0].labels == {"pod": "a"}


def test_histogram_quantile_in_the_inf_bucket_returns_the_highest_finite_bound():
    engine = engine_with(*buckets({"0.1": 10, "0.5": 30, "1": 40, "+Inf": 50}))
    assert single(engine, "histogram_quantile(0.99, h_bucket)", 1) == 1.0


def test_histogram_quantile_fixes_non_monotonic_buckets():
    # 0.5 is raised to 10: rank 20 lies in (0.5, 1] with 30 observations, 10 below: 0.5 + 0.5 * 10/30.
    engine = engine_with(*buckets({"0.1": 10, "0.5": 8, "1": 40, "+Inf": 40}))
    assert single(engine, "histogram_quantile(0.5, h_bucket)", 1) == pytest.approx(0.5 + 0.5 / 3)


def test_histogram_quantile_without_inf_bucket_or_observations_is_nan():
    engine = engine_with(*buckets({"0.1": 10, "0.5": 30}, pod="a"), *buckets({"0.1": 0, "+Inf": 0}, pod="b"))
    result = values(engine, "histogram_quantile(0.5, h_bucket)", 1)
    assert set(result) == {frozenset({("pod", "a")}), frozenset({("pod", "b")})}
    assert all(math.isnan(v) for v in result.values())


# --- selectors, lookback, offset ----------------------------------------------------------


def test_lookback_takes_the_latest_sample_up_to_five_minutes_old():
    engine = engine_with((counter("g"), [(0, 1.0), (100, 2.0)]))
    assert single(engine, "g", 99.999) == 1.0
    assert single(engine, "g", 100) == 2.0
    assert single(engine, "g", 400) == 2.0  # exactly 300 s old: still there (Prometheus 2.x)
    assert engine.instant("g", T0 + 400.001) == []
    assert engine.instant("g", T0 - 1) == []
    short = PromQLEngine(engine.db, lookback_delta=60)
    assert short.instant("g", T0 + 161) == []


def test_offset_and_at_shift_the_evaluation_time():
    engine = engine_with((counter("g"), [(15 * k, float(k)) for k in range(20)]))
    assert single(engine, "g offset 1m", 150) == 6.0  # the sample at 90 s
    assert single(engine, f"g @ {T0 + 30:.3f}", 150) == 2.0
    assert single(engine, "rate(g[1m] offset 2m)", 240) == pytest.approx(1 / 15)


def test_label_matchers_and_regex_on_the_metric_name():
    engine = engine_with(
        ({"__name__": "vllm:foo", "pod": "a"}, [(0, 1.0)]),
        ({"__name__": "vllm_foo", "pod": "b"}, [(0, 2.0)]),
        ({"__name__": "vllm:foobar", "pod": "c"}, [(0, 3.0)]),
        ({"__name__": "vllm:foo", "pod": "d", "extra": "x"}, [(0, 4.0)]),
    )
    assert sorted(values(engine, '{__name__=~"vllm[:_]foo"}', 1).values()) == [1.0, 2.0, 4.0]
    assert sorted(values(engine, 'vllm:foo{pod!="a"}', 1).values()) == [4.0]
    assert sorted(values(engine, 'vllm:foo{pod=~"a|d"}', 1).values()) == [1.0, 4.0]
    assert sorted(values(engine, 'vllm:foo{pod!~"a"}', 1).values()) == [4.0]
    assert sorted(values(engine, 'vllm:foo{extra=""}', 1).values()) == [1.0]  # absent label = ""
    assert sorted(values(engine, 'vllm:foo{pod=~"d|"}', 1).values()) == [4.0]  # regex is anchored


# --- aggregation --------------------------------------------------------------------------


def test_aggregations_group_and_drop_the_metric_name():
    engine = engine_with(
        ({"__name__": "w", "ns": "x", "pod": "a"}, [(0, 1.0)]),
        ({"__name__": "w", "ns": "x", "pod": "b"}, [(0, 3.0)]),
        ({"__name__": "w", "ns": "y", "pod": "c"}, [(0, 8.0)]),
    )
    assert values(engine, "sum(w)", 1) == {frozenset(): 12.0}
    assert values(engine, "avg by (ns) (w)", 1) == {frozenset({("ns", "x")}): 2.0, frozenset({("ns", "y")}): 8.0}
    assert values(engine, "max without (pod) (w)", 1) == {
        frozenset({("ns", "x")}): 3.0,
        frozenset({("ns", "y")}): 8.0,
    }
    assert values(engine, "count(w) by (pod)", 1)[frozenset({("pod", "a")})] == 1.0
    assert values(engine, "min(w)", 1) == {frozenset(): 1.0}
    assert values(engine, "sum(nothing)", 1) == {}


# --- binary operators -----------------------------------------------------------------------


def test_vector_matching_on_ignoring_and_errors():
    engine = engine_with(
        ({"__name__": "num", "pod": "a", "role": "x"}, [(0, 6.0)]),
        ({"__name__": "num", "pod": "b", "role": "x"}, [(0, 8.0)]),
        ({"__name__": "den", "pod": "a", "role": "y"}, [(0, 2.0)]),
        ({"__name__": "den", "pod": "b", "role": "y"}, [(0, 0.0)]),
    )
    # all labels but the name must match: roles differ, so nothing matches
    assert values(engine, "num / den", 1) == {}
    by_pod = values(engine, "num / on(pod) den", 1)
    assert by_pod[frozenset({("pod", "a")})] == 3.0
    assert by_pod[frozenset({("pod", "b")})] == math.inf  # 8/0
    assert values(engine, "num - ignoring(role) den", 1) == {
        frozenset({("pod", "a")}): 4.0,
        frozenset({("pod", "b")}): 8.0,
    }
    with pytest.raises(PromQLError, match="many-to-many"):
        engine.instant("num / on() den", T0 + 1)
    # group_left: many num per one sum(den)
    grouped = values(engine, "num / on() group_left sum(den)", 1)
    assert sorted(grouped.values()) == [3.0, 4.0]


def test_comparisons_filter_or_return_bool():
    engine = engine_with(
        ({"__name__": "g", "pod": "a"}, [(0, 1.0)]),
        ({"__name__": "g", "pod": "b"}, [(0, 5.0)]),
    )
    assert values(engine, "g > 2", 1) == {frozenset({("__name__", "g"), ("pod", "b")}): 5.0}
    assert values(engine, "2 < g", 1) == {frozenset({("__name__", "g"), ("pod", "b")}): 5.0}
    assert values(engine, "g > bool 2", 1) == {frozenset({("pod", "a")}): 0.0, frozenset({("pod", "b")}): 1.0}
    assert single(engine, "1 < bool 2", 1) == 1.0


def test_arithmetic_drops_the_name_and_follows_ieee_division():
    engine = engine_with(({"__name__": "g", "pod": "a"}, [(0, -2.0)]))
    assert values(engine, "g * 2", 1) == {frozenset({("pod", "a")}): -4.0}
    assert single(engine, "g / 0", 1) == -math.inf
    assert math.isnan(single(engine, "(g - g) / 0", 1))
    assert single(engine, "-g", 1) == 2.0
    assert single(engine, "abs(g)", 1) == 2.0
    assert single(engine, "clamp_min(g, 0)", 1) == 0.0
    assert single(engine, "clamp_max(g, -5)", 1) == -5.0
    assert single(engine, "2 ^ 3 % 5", 1) == 3.0
    assert single(engine, "scalar(g) * 3", 1) == -6.0
    assert math.isnan(single(engine, "scalar(nothing)", 1))
    assert single(engine, "vector(7)", 1) == 7.0


def test_functions_producing_the_same_labelset_are_refused():
    engine = engine_with(({"__name__": "x", "pod": "a"}, [(0, 1.0)]), ({"__name__": "y", "pod": "a"}, [(0, 2.0)]))
    with pytest.raises(PromQLError, match="same labelset"):
        engine.instant('abs({__name__=~"x|y"})', T0 + 1)


# --- label_replace, absent, timestamp ------------------------------------------------------


def test_label_replace_expands_go_templates():
    engine = engine_with(({"__name__": "up", "pod": "vllm-abc-1"}, [(0, 1.0)]))

    def replaced(template: str, regex: str = "(?P<app>vllm)-(.*)") -> dict[str, str]:
        return engine.instant(f'label_replace(up, "dst", "{template}", "pod", "{regex}")', T0)[0].labels

    assert replaced("$1/${2}")["dst"] == "vllm/abc-1"
    assert replaced("${app}:$$")["dst"] == "vllm:$"
    assert "dst" not in replaced("$1x")  # "$1x" names a group "1x": empty, so no label
    assert "dst" not in replaced("$3")
    assert "dst" not in replaced("$1", regex="nomatch")  # no match: labels unchanged
    assert replaced("$1", regex="vllm")["pod"] == "vllm-abc-1"  # anchored: "vllm" alone does not match


def test_absent_takes_labels_from_equality_matchers():
    engine = engine_with(({"__name__": "up", "job": "a"}, [(0, 1.0)]))
    assert engine.instant('absent(up{job="a"})', T0) == []
    (result,) = engine.instant('absent(up{job="b", zone="x", zone=~"y", env!="z"})', T0)
    assert (result.labels, result.value) == ({"job": "b"}, 1.0)
    assert engine.instant('absent_over_time(up{job="a"}[1m])', T0 + 61)[0].labels == {"job": "a"}
    assert engine.instant('absent_over_time(up{job="a"}[1m])', T0 + 60) == []


def test_timestamp_of_a_selector_is_the_sample_time():
    engine = engine_with(({"__name__": "g", "pod": "a"}, [(0, 5.0), (15, 6.0)]))
    assert values(engine, "timestamp(g)", 20) == {frozenset({("pod", "a")}): T0 + 15}
    assert single(engine, "timestamp(g offset 10s)", 20) == T0
    assert single(engine, "timestamp(sum(g))", 20) == T0 + 20


def test_shared_subexpression_results_never_outlive_new_samples():
    engine = engine_with((counter("g"), [(0, 1.0)]))
    assert single(engine, "sum(g)", 10) == 1.0
    assert single(engine, "sum(g) * 2", 10) == 2.0  # shares sum(g) with the query above
    engine.db.append({"__name__": "g"}, T0 + 10, 5.0)
    assert single(engine, "sum(g)", 10) == 5.0
    assert single(engine, "sum(g)", 5) == 1.0


# --- range queries ----------------------------------------------------------------------------


def test_range_query_is_an_instant_query_at_every_step():
    engine = engine_with(
        ({"__name__": "g", "pod": "a"}, [(15 * k, float(k)) for k in range(30)]),
        ({"__name__": "g", "pod": "b"}, [(0, 100.0)]),  # expires from the lookback after 300 s
    )
    series = {s.labels["pod"]: s.points for s in engine.range("g", T0 + 200, T0 + 400, 50)}
    assert series["a"] == [(T0 + t, engine.instant("g", T0 + t)[0].value) for t in (200, 250, 300, 350, 400)]
    assert series["a"][0] == (T0 + 200, 13.0)
    assert [t - T0 for t, _ in series["b"]] == [200, 250, 300]


def test_range_query_of_a_scalar_expression():
    engine = engine_with(({"__name__": "g"}, [(0, 1.0)]))
    (result,) = engine.range("time() - 1", T0, T0 + 10, 5)
    assert result.labels == {}
    assert result.points == [(T0, T0 - 1), (T0 + 5, T0 + 4), (T0 + 10, T0 + 9)]


# --- storage ------------------------------------------------------------------------------------


def test_retention_drops_old_samples_and_dead_series():
    db = TimeSeriesDB(retention_seconds=60)
    for k in range(100):
        db.append({"__name__": "alive"}, T0 + 10 * k, float(k))
        if k < 10:
            db.append({"__name__": "dead"}, T0 + 10 * k, float(k))
    assert db.series_count == 1  # "dead" was last seen 900 s before the newest sample
    assert db.sample_count <= 60 * 1.25 / 10 + 1  # retention plus at most a quarter between sweeps
    engine = PromQLEngine(db)
    assert engine.instant("dead", T0 + 990) == []
    assert single_value(engine.instant("count_over_time(alive[10m])", T0 + 990)) <= 8


def single_value(samples) -> float:
    assert len(samples) == 1
    return samples[0].value


def test_append_many_and_out_of_order_samples():
    db = TimeSeriesDB()
    db.append_many(T0, [({"__name__": "g", "pod": "a"}, 1.0), ({"__name__": "g", "pod": "b"}, 2)])
    db.append_many(T0 + 15, [({"pod": "a", "__name__": "g"}, 3.0)])  # label order does not matter
    assert db.series_count == 2
    with pytest.raises(ValueError, match="out-of-order"):
        db.append({"__name__": "g", "pod": "a"}, T0 + 10, 0.0)
    with pytest.raises(ValueError, match="__name__"):
        db.append({"pod": "a"}, T0 + 20, 0.0)
    assert single_value(PromQLEngine(db).instant('g{pod="a"}', T0 + 15)) == 3.0


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("rate(x[1m]", "cannot parse"),
        ("day_of_week()", "unsupported PromQL function 'day_of_week'"),
        ('label_replace(x, "1a", "b", "c", "d")', "invalid destination label name"),
        ('count_values("1v", x)', "invalid label name"),
        ("{}", "at least one non-empty matcher"),
        ("x[5m]", "range vector"),
    ],
)
def test_unsupported_or_invalid_queries_raise_query_error(query, message):
    engine = engine_with(({"__name__": "x"}, [(0, 1.0)]))
    with pytest.raises(PromQLError, match=message.replace("(", r"\(").replace("[", r"\[")):
        engine.instant(query, T0)


def test_staleness_markers_end_a_series_at_once() -> None:
    """A pod that goes away is marked stale: instant queries stop seeing it at the marker,
    not 5 minutes later; range functions still use its real samples."""
    db = TimeSeriesDB()
    engine = PromQLEngine(db)
    for t in range(0, 61, 15):
        db.append({"__name__": "vllm:num_requests_running", "pod": "a"}, t, 4.0)
        db.append({"__name__": "vllm:num_requests_running", "pod": "b"}, t, 6.0)
        db.append({"__name__": "vllm:request_success_total", "pod": "b"}, t, 2.0 * t)
    assert db.mark_stale({"pod": "b"}, 75) == 2
    db.append({"__name__": "vllm:num_requests_running", "pod": "a"}, 75, 4.0)
    assert engine.instant("sum(vllm:num_requests_running)", 70)[0].value == 10.0  # before the marker
    assert engine.instant("sum(vllm:num_requests_running)", 75)[0].value == 4.0
    assert engine.instant("sum(vllm:num_requests_running)", 200)[0].value == 4.0  # not back within lookback
    # rate over a window ending after the marker still uses the samples before it
    assert engine.instant("rate(vllm:request_success_total[1m])", 70)[0].value == pytest.approx(2.0)


def test_the_twin_reports_an_engine_error_as_the_backend_interface_query_error() -> None:
    """The engine keeps its own error; SimBackend.query/query_range turn it into the Backend's QueryError."""
    from pathlib import Path

    from hpa_experiments.backends.base import QueryError
    from hpa_experiments.backends.sim.backend import SimBackend
    from hpa_experiments.config import load_config
    from hpa_experiments.plan import build_plan

    config = load_config(Path(__file__).resolve().parents[1] / "experiment-configs" / "baseline-hpa.yaml")
    backend = SimBackend(config, build_plan(config))
    try:
        with pytest.raises(QueryError, match="cannot parse PromQL") as caught:
            backend.query("rate(")
        assert isinstance(caught.value.__cause__, PromQLError)
        with pytest.raises(QueryError, match="cannot parse PromQL"):
            backend.query_range("rate(", 0.0, 30.0, 15.0)
    finally:
        backend.close()
