"""TTFT and ITL over whole windows (the run, each phase, the cooldown) from vLLM's histograms.

"p90 over the run" means the 90th percentile of all requests in the run.  The metrics.csv
columns cannot give it: each sample is a mean or a quantile over one rate window, and a
percentile of those samples weights a quiet minute like a busy one.  So at the end of the run
the runner asks Prometheus (or the twin's PromQL engine) for each window, evaluated at the
window's end:

    histogram_quantile(q, sum by (le) (increase(<histogram>_bucket{<selector>}[<window>])))
    sum(increase(<histogram>_sum{...}[<window>])) / sum(increase(<histogram>_count{...}[<window>]))

Windows start after `metrics.warm_up_duration_s`.  Results go to `latency-windows.json` in the
run directory (read by analysis into summary.json's `latency_over_window`), with the window
bounds and the exact queries.  A window that reaches further back than the backend keeps
series (`Backend.series_retention_s`, the twin's in-memory store) is not measured, and says so.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpa_experiments import column_queries
from hpa_experiments.backends.base import Backend, QueryError
from hpa_experiments.column_queries import MetricNames
from hpa_experiments.config import ExperimentConfig
from hpa_experiments.rundir import LATENCY_WINDOWS_FILE, atomic_write_json, percentile_label

STANDARD_QUANTILES = (0.5, 0.9, 0.99)
MIN_WINDOW_S = 1.0  # a shorter window (e.g. a phase inside the warm-up) is not measured
METHOD = (
    "histogram_quantile(q, sum by (le) (increase(<histogram>_bucket{selector}[window]))) and "
    "sum(increase(_sum)) / sum(increase(_count)), evaluated at the window end"
)


@dataclass(frozen=True)
class LatencyWindow:
    """From start_s to end_s, in seconds since t0, already clipped to the warm-up."""

    name: str
    kind: str  # run | phase | cooldown
    start_s: float
    end_s: float
    note: str | None = None  # why the window is shorter than its phase (warm-up)


def run_windows(phases_csv: Path, end_s: float, warm_up_s: float) -> list[LatencyWindow]:
    """The run, each job of phases.csv that started (its actual start to its actual end, or to `end_s`
    for a Job still running) and the cooldown after the last job; no window starts before the
    warm-up's end."""
    raw: list[tuple[str, str, float, float]] = [("run", "run", 0.0, end_s)]
    ends: list[float] = []
    if phases_csv.exists():
        with phases_csv.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                start = _number(row.get("actual_start_s"))
                if start is None:
                    continue  # never started
                end = _number(row.get("actual_end_s"))
                end = min(end if end is not None else end_s, end_s)
                raw.append((row["job"], "phase", start, end))
                ends.append(end)
    if ends and max(ends) < end_s:
        raw.append(("cooldown", "cooldown", max(ends), end_s))
    windows = []
    for name, kind, start, end in raw:
        clipped = max(start, warm_up_s)
        note = f"starts after the {warm_up_s:g} s warm-up" if clipped > start else None
        windows.append(LatencyWindow(name, kind, clipped, end, note))
    return windows


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def window_queries(names: MetricNames, selector: str, duration: str, quantiles: Iterable[float]) -> dict[str, str]:
    """key -> PromQL (seconds) for one window: `ttft_p90`, `ttft_mean`, `ttft_count`, the same for itl."""
    queries: dict[str, str] = {}
    for key, hist in (("ttft", names.ttft), ("itl", names.itl)):
        count = f"sum(increase({hist}_count{selector}[{duration}]))"
        for q in quantiles:
            queries[f"{key}_{percentile_label(q)}"] = (
                f"histogram_quantile({q:g}, sum by (le) (increase({hist}_bucket{selector}[{duration}])))"
            )
        queries[f"{key}_mean"] = f"sum(increase({hist}_sum{selector}[{duration}])) / {count}"
        queries[f"{key}_count"] = count
    return queries


def histogram_series(names: MetricNames) -> list[str]:
    """The series the window queries read (a bounded store keeps these for the whole run)."""
    return [f"{hist}{suffix}" for hist in (names.ttft, names.itl) for suffix in ("_bucket", "_sum", "_count")]


def quantiles_to_report(configured: Iterable[float]) -> list[float]:
    """p50/p90/p99 always (the report and compare show them), plus `metrics.percentiles`."""
    return sorted(set(STANDARD_QUANTILES) | {float(q) for q in configured})


def measure_windows(
    backend: Backend,
    names: MetricNames,
    selector: str,
    t0: float,
    windows: list[LatencyWindow],
    quantiles: Iterable[float],
    now_s: float,
    warn: Callable[[str], None],
) -> list[dict[str, Any]]:
    """One result per window: values in ms (None with a reason when there is none), bounds, queries.
    After a failed query the later windows are not tried: each query could wait out its retries."""
    quantiles = list(quantiles)
    retention = backend.series_retention_s
    results = []
    failed: str | None = None
    for window in windows:
        length_ms = round((window.end_s - window.start_s) * 1000)
        entry: dict[str, Any] = {
            "name": window.name,
            "kind": window.kind,
            "start_s": round(window.start_s, 3),
            "end_s": round(window.end_s, 3),
            "note": window.note,
        }
        if failed is not None:
            entry["not_measured"] = f"an earlier query failed ({failed})"
            results.append(entry)
            continue
        if length_ms < MIN_WINDOW_S * 1000:
            entry["not_measured"] = (
                "the window lies within the warm-up"
                if window.note
                else f"the window is shorter than {MIN_WINDOW_S:g} s"
            )
            results.append(entry)
            continue
        if retention is not None and now_s - window.start_s > retention:
            entry["not_measured"] = (
                f"{backend.name} keeps series for {retention:g} s; the window starts "
                f"{now_s - window.start_s:.0f} s before the end of the run"
            )
            results.append(entry)
            continue
        queries = window_queries(names, selector, f"{length_ms}ms", quantiles)
        entry["evaluated_at"] = round(t0 + window.end_s, 3)
        entry["queries"] = queries
        try:
            values, problems = _evaluate(backend, queries, t0 + window.end_s)
        except QueryError as exc:
            failed = str(exc)
            entry["not_measured"] = f"query failed ({exc})"
            warn(f"latency over window {window.name}: a query failed ({exc}); it and later windows are not measured")
            results.append(entry)
            continue
        for problem in problems:
            warn(f"latency over window {window.name}: {problem}")
        entry["problems"] = problems
        for key in ("ttft", "itl"):
            entry[f"{key}_ms"] = _latency_block(key, values, quantiles)
        results.append(entry)
    return results


def _evaluate(backend: Backend, queries: dict[str, str], at: float) -> tuple[dict[str, float | None], list[str]]:
    """Values by key (None: no series or NaN) and the problems worth a warning; QueryError propagates."""
    values: dict[str, float | None] = {}
    problems: list[str] = []
    for key, text in queries.items():
        samples = backend.query(text, at)
        values[key] = samples[0].value if samples and math.isfinite(samples[0].value) else None
        if not samples and key.endswith("_count"):
            problems.append(f"{key}: no series matched {text}")
    return values, problems


def _latency_block(key: str, values: dict[str, float | None], quantiles: list[float]) -> dict[str, Any]:
    """Milliseconds; `observations` is the increase of `_count` (requests for TTFT, token gaps for ITL)."""
    count = values.get(f"{key}_count")
    block: dict[str, Any] = {"observations": count}
    for name in ["mean", *(percentile_label(q) for q in quantiles)]:
        seconds = values.get(f"{key}_{name}")
        block[name] = None if seconds is None or count == 0 else seconds * 1000
    return block


def window_selector(config: ExperimentConfig) -> str:
    """The label matchers of the standard metrics.csv queries, so both measure the same series."""
    return column_queries.selector(config.model_name, config.namespace, config.metrics.selector)


def write_latency_windows(
    backend: Backend,
    run_dir: Path,
    config: ExperimentConfig,
    names: MetricNames,
    t0: float,
    now_s: float,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """Measure every window of the run and write latency-windows.json; returns its content."""
    warm_up_s = config.metrics.warm_up_duration_s
    quantiles = quantiles_to_report(config.metrics.percentiles)
    label_selector = window_selector(config)
    windows = run_windows(run_dir / "phases.csv", now_s, warm_up_s)
    content = {
        "method": METHOD,
        "metric_names": {"ttft": names.ttft, "itl": names.itl},
        "selector": label_selector,
        "warm_up_s": warm_up_s,
        "quantiles": quantiles,
        "windows": measure_windows(backend, names, label_selector, t0, windows, quantiles, now_s, warn),
    }
    atomic_write_json(run_dir / LATENCY_WINDOWS_FILE, content)
    return content
