"""summary.json's `latency_over_window`: TTFT and ITL over the run and each phase, from vLLM's
histograms (measured by the runner at the end of the run, hpa_experiments/latency_windows.py).

These are the numbers a reader means by "p90 over the run": one percentile of all requests in
the window.  The sample statistics of kpis.py (`kpis.ttft_ms`, ...) are percentiles of the
per-sample rate-window means and are shown beside them, labelled as such.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hpa_experiments.analysis.load import Run
from hpa_experiments.rundir import LATENCY_WINDOWS_FILE

NO_DATA = "no data"
Format = Callable[..., str]  # report.fmt (passed in: report imports this module)
WINDOW_KEYS = ("mean", "p50", "p90", "p99")
METRICS = (("ttft_ms", "TTFT"), ("itl_ms", "ITL"))


def latency_over_window(run: Run) -> dict[str, Any] | None:
    """The run's window and one per phase (and the cooldown), or None when the run has no measurement."""
    path = run.path / LATENCY_WINDOWS_FILE
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        windows = content["windows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a latency-windows file ({exc})") from None
    return {
        **{key: content.get(key) for key in ("method", "selector", "metric_names", "warm_up_s", "quantiles")},
        "run": next((w for w in windows if w.get("kind") == "run"), None),
        "phases": [w for w in windows if w.get("kind") != "run"],
    }


def missing_note(run: Run) -> str:
    """Why a run has no `latency_over_window`, for summary.json's notes."""
    if isinstance(run.info.get("legacy"), dict):
        return (
            "imported from the original system, which kept no latency histograms: TTFT/ITL over the run "
            "and its phases cannot be computed; the latency numbers are statistics of one-minute samples"
        )
    return (
        f"no {LATENCY_WINDOWS_FILE}: TTFT/ITL over the run from the histograms were not measured "
        "(a run made before hpa-exp measured them, or its process was killed); the latency numbers "
        "are statistics of the samples"
    )


def window_value(window: dict[str, Any] | None, metric: str, key: str) -> float | None:
    """One number of a window (`metric` ttft_ms/itl_ms, `key` mean/p90/...), None when not measured."""
    if not window or window.get("not_measured"):
        return None
    return (window.get(metric) or {}).get(key)


def run_window(summary: dict[str, Any]) -> dict[str, Any] | None:
    return (summary.get("latency_over_window") or {}).get("run")


def phase_window(summary: dict[str, Any], phase: str) -> dict[str, Any] | None:
    windows = (summary.get("latency_over_window") or {}).get("phases") or []
    return next((w for w in windows if w.get("name") == phase), None)


def window_text(window: dict[str, Any] | None, metric: str, fmt: Format) -> str:
    """`mean / p50 / p90 / p99 ms (N observations)` or why there is none."""
    if window is None:
        return NO_DATA
    if window.get("not_measured"):
        return f"not measured: {window['not_measured']}"
    stats = window.get(metric) or {}
    if not stats.get("observations"):
        return "no data (no observations in the window)" if stats.get("observations") == 0 else NO_DATA
    numbers = " / ".join(fmt(stats.get(key), "", 1) for key in WINDOW_KEYS)
    what = "requests" if metric == "ttft_ms" else "token gaps"
    return f"{numbers} ms ({fmt(stats['observations'], '', 0)} {what})"


def window_rows(summary: dict[str, Any], fmt: Format) -> list[tuple[str, str, str]]:
    """Report rows for the run's window; one "no data" row (the notes say why) without a measurement."""
    window = run_window(summary)
    if window is None:
        return [("latency", "TTFT / ITL over the run (histograms)", NO_DATA)]
    bounds = f"{fmt(window['start_s'], '', 0)}–{fmt(window['end_s'], ' s', 0)}"
    return [
        (
            "latency",
            f"{name} over the run {bounds} (histogram) mean / p50 / p90 / p99",
            window_text(window, metric, fmt),
        )
        for metric, name in METRICS
    ]
