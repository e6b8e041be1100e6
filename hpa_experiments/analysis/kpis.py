"""KPIs of one run, per run and per phase; the content of summary.json.

Conventions (so that every number has one meaning):
- Time is `elapsed_s` (seconds since the run's t0).  Each sample holds its value until the
  next sample (step function); the last sample holds for one sampling interval.  Time shares,
  means, replica-seconds and the replica standard deviation are weighted by these durations.
- A value that was not obtained (empty cell) is never counted as 0: statistics use only the
  samples that have a value, and a statistic with no samples is None ("no data").
- Load increases are the planned job starts of phases.csv at which the planned offered load
  rises (every job start when rates are unknown); without phases, the points where the
  `offered_rps` column rises.  Each increase is measured up to the next one (or the end).
- TTFT/ITL statistics in `kpis` and `phases` are over the per-sample values of the `ttft_ms`/`itl_ms`
  columns (each a mean over the Prometheus rate window), not over individual requests.  The
  percentiles over all requests of the run and of each phase are `latency_over_window`
  (window_latency.py), from the histograms; the headline uses those.
- Warm-up (`metrics.warm_up_duration_s`): samples before it stay in metrics.csv but not in the
  sample statistics (latency, waiting share, SLO shares, replica mean/max of the run and of each
  phase).  Whole-run quantities - peak replicas, replica-seconds and GPU-hours, scale-up and
  scale-down times - still use every sample: they describe what the run cost and how the HPA
  reacted, warm-up included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpa_experiments.analysis.client import client_kpis, client_notes
from hpa_experiments.analysis.cold_starts_client import cold_starts_section
from hpa_experiments.analysis.energy import energy_kpis
from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.requests import request_kpis
from hpa_experiments.analysis.samples import SampleColumns
from hpa_experiments.analysis.slo_gates import gates_summary
from hpa_experiments.analysis.why import autoscaler_floor, scale_events
from hpa_experiments.analysis.window_latency import latency_over_window, missing_note, run_window, window_value
from hpa_experiments.rundir import RunStatus, atomic_write_json

SUMMARY_FILE = "summary.json"

SUMMARY_SCHEMA_VERSION = 1
# After a scale-up, the new steady replica count is the first count above the baseline that
# holds unchanged this long (or 3 sampling intervals, if longer) before the next load increase.
STEADY_HOLD_S = 30.0
PERCENTILES = (50, 90, 99)
LATENCY_COLUMNS = ("ttft_ms", "itl_ms")
WAITING_COLUMNS = ("num_requests_waiting", "prom_requests_waiting")
COVERAGE_COLUMNS = (
    "replicas",
    "desired_replicas",
    "ready_replicas",
    "num_requests_waiting",
    "kv_cache_usage_perc",
    "ttft_ms",
    "itl_ms",
    "offered_rps",
    "active_jobs",
)


@dataclass(frozen=True)
class Window:
    """A stretch of experiment time [start_s, end_s) with a name (a job, or the cooldown)."""

    name: str
    start_s: float
    end_s: float
    rate: float | None
    basis: str  # "actual" or "planned" (which phases.csv columns the window comes from)


@dataclass(frozen=True)
class LoadIncrease:
    at_s: float
    jobs: tuple[str, ...]
    offered_before: float | None
    offered_after: float | None


def _clean(value: Any) -> Any:
    """numpy scalars -> Python, NaN -> None (JSON has no NaN, and missing must read as missing)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def _float_or_none(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return float(value)


def _weighted_share(condition: np.ndarray, valid: np.ndarray, weights: np.ndarray) -> float | None:
    total = weights[valid].sum()
    if not valid.any() or total <= 0:
        return None
    return float(weights[valid & condition].sum() / total)


def latency_stats(values: np.ndarray) -> dict[str, float | int | None]:
    """mean and percentiles of the non-missing values; all None (and samples 0) without data."""
    present = values[~np.isnan(values)]
    stats: dict[str, float | int | None] = {"samples": len(present)}
    if len(present) == 0:
        stats["mean"] = None
        stats.update({f"p{q}": None for q in PERCENTILES})
        return stats
    stats["mean"] = float(present.mean())
    for q, v in zip(PERCENTILES, np.percentile(present, PERCENTILES), strict=True):
        stats[f"p{q}"] = float(v)
    return stats


def phase_windows(run: Run) -> list[Window]:
    """One window per job of phases.csv: actual start/end when recorded, else planned."""
    windows: list[Window] = []
    for row in run.phases.itertuples(index=False):
        actual = (_float_or_none(row.actual_start_s), _float_or_none(row.actual_end_s))
        planned = (_float_or_none(row.planned_start_s), _float_or_none(row.planned_end_s))
        if actual[0] is not None and actual[1] is not None:
            start, end, basis = actual[0], actual[1], "actual"
        elif planned[0] is not None and planned[1] is not None:
            start, end, basis = planned[0], planned[1], "planned"
        else:
            continue
        windows.append(Window(str(row.job), start, end, _float_or_none(row.rate), basis))
    return windows


def load_increases(run: Run) -> list[LoadIncrease]:
    """Planned job starts where the planned offered load rises (see module docstring)."""
    jobs = [
        (str(r.job), start, _float_or_none(r.planned_end_s), _float_or_none(r.rate))
        for r in run.phases.itertuples(index=False)
        if (start := _float_or_none(r.planned_start_s)) is not None
    ]
    if not jobs:
        return _increases_from_offered_column(run)
    rates_known = all(rate is not None for *_, rate in jobs)

    def offered(t: float, just_before: bool) -> float:
        """Planned load at t, or just before t (jobs ending at t still count, those starting don't)."""
        total = 0.0
        for _, start, end, rate in jobs:
            started = start < t if just_before else start <= t
            running = end is None or (t <= end if just_before else t < end)
            total += (rate or 0.0) if started and running else 0.0
        return total

    increases = []
    for start in sorted({start for _, start, _, _ in jobs}):
        names = tuple(name for name, s, _, _ in jobs if s == start)
        if not rates_known:
            increases.append(LoadIncrease(start, names, None, None))
            continue
        before, after = offered(start, just_before=True), offered(start, just_before=False)
        if after > before:
            increases.append(LoadIncrease(start, names, before, after))
    return increases


def _increases_from_offered_column(run: Run) -> list[LoadIncrease]:
    if "offered_rps" not in run.metrics.columns:
        return []
    frame = run.metrics[["elapsed_s", "offered_rps"]].dropna()
    rates = frame["offered_rps"].to_numpy(dtype=float)
    times = frame["elapsed_s"].to_numpy(dtype=float)
    return [
        LoadIncrease(float(times[i]), (), float(rates[i - 1]), float(rates[i]))
        for i in range(1, len(rates))
        if rates[i] > rates[i - 1]
    ]


def scale_up_response(cols: SampleColumns, start_s: float, end_s: float, interval_s: float | None) -> dict[str, Any]:
    """Time from a load increase to the first scale-up and to the new steady replica count."""
    replicas, desired, t = cols.get("replicas"), cols.get("desired_replicas"), cols.elapsed
    known = ~np.isnan(replicas)
    before = known & (t <= start_s)
    if before.any():
        baseline = replicas[np.flatnonzero(before)[-1]]
    elif known.any():
        baseline = replicas[np.flatnonzero(known)[0]]
    else:
        return {
            "baseline_replicas": None,
            "time_to_first_scale_up_s": None,
            "steady_replicas": None,
            "time_to_steady_s": None,
        }
    inside = (t > start_s) & (t < end_s)
    rising = inside & ((replicas > baseline) | (desired > baseline))
    first_up = float(t[np.flatnonzero(rising)[0]] - start_s) if rising.any() else None
    result: dict[str, Any] = {
        "baseline_replicas": float(baseline),
        "time_to_first_scale_up_s": first_up,
        "steady_replicas": None,
        "time_to_steady_s": None,
    }
    if first_up is None:
        window = np.flatnonzero(inside & known)
        result["steady_replicas"] = float(replicas[window[-1]]) if len(window) else None
        return result
    hold = max(STEADY_HOLD_S, 3 * (interval_s or 0.0))
    for level, since, until in _constant_segments(t, replicas, start_s + first_up, end_s, interval_s):
        if level > baseline and until - since >= hold:
            result["steady_replicas"] = level
            result["time_to_steady_s"] = since - start_s
            break
    return result


def _constant_segments(
    t: np.ndarray, values: np.ndarray, start_s: float, end_s: float, interval_s: float | None
) -> list[tuple[float, float, float]]:
    """(value, since, until) for each stretch of equal known values in [start_s, end_s)."""
    rows = np.flatnonzero((t >= start_s) & (t < end_s) & ~np.isnan(values))
    if len(rows) == 0:
        return []
    changes = rows[1:][values[rows[1:]] != values[rows[:-1]]]
    starts = np.concatenate(([rows[0]], changes))
    last_until = min(end_s, float(t[rows[-1]]) + (interval_s or 0.0))
    untils = [float(t[i]) for i in starts[1:]] + [last_until]
    return [(float(values[i]), float(t[i]), until) for i, until in zip(starts, untils, strict=True)]


def replica_kpis(cols: SampleColumns) -> dict[str, Any]:
    replicas, t, w = cols.get("replicas"), cols.elapsed, cols.weights
    known = ~np.isnan(replicas)
    if not known.any():
        return {
            key: None
            for key in ("min", "peak", "peak_at_s", "mean", "std", "direction_changes", "replica_seconds", "gpu_hours")
        }
    values, weights = replicas[known], w[known]
    peak_index = int(np.argmax(values))
    replica_seconds = float((values * weights).sum())
    total = weights.sum()
    mean = float(replica_seconds / total) if total > 0 else None
    std = float(math.sqrt((weights * (values - mean) ** 2).sum() / total)) if mean is not None else None
    steps = np.sign(np.diff(values))
    steps = steps[steps != 0]
    return {
        "min": float(values.min()),
        "peak": float(values[peak_index]),
        "peak_at_s": float(t[known][peak_index]),
        "mean": mean,
        "std": std,
        "direction_changes": int((steps[1:] != steps[:-1]).sum()),
        "replica_seconds": replica_seconds,
        "gpu_hours": replica_seconds / 3600.0,
    }


def scale_down_completion(cols: SampleColumns, load_end_s: float | None, floor: int | None = None) -> dict[str, Any]:
    """Time from the end of the last job until replicas are back at the run's minimum: the fewest
    replicas seen, or the autoscaler's floor when that is higher (a Deployment that started below
    minReplicas is not expected back there)."""
    replicas, t = cols.get("replicas"), cols.elapsed
    result: dict[str, Any] = {
        "load_end_s": load_end_s,
        "from_replicas": None,
        "to_replicas": None,
        "completed_after_s": None,
        "at_minimum_since_s": None,
    }
    known = ~np.isnan(replicas)
    if load_end_s is None or not known.any():
        return result
    minimum = replicas[known].min() if floor is None else max(replicas[known].min(), float(floor))
    result["to_replicas"] = float(minimum)
    before = known & (t <= load_end_s)
    if before.any():
        result["from_replicas"] = float(replicas[np.flatnonzero(before)[-1]])
    reached = known & (t >= load_end_s) & (replicas <= minimum)
    if reached.any():
        first = int(np.flatnonzero(reached)[0])
        result["completed_after_s"] = float(t[first] - load_end_s)
        result["at_minimum_since_s"] = _at_minimum_since(t, replicas, known, minimum, first)
    return result


def _at_minimum_since(t: np.ndarray, replicas: np.ndarray, known: np.ndarray, minimum: float, at: int) -> float:
    """When the stretch at the minimum that holds at sample `at` began (before the load ended, when
    replicas were back at the minimum earlier; the first sample when they never left it)."""
    above = np.flatnonzero(known[:at] & (replicas[:at] > minimum))
    rows = np.flatnonzero(known)
    since = rows[rows > above[-1]][0] if len(above) else rows[0]
    return float(t[since])


def window_kpis(cols: SampleColumns, mask: np.ndarray, slo: dict[str, float]) -> dict[str, Any]:
    """Latency statistics, waiting share and SLO shares over the samples selected by `mask`."""
    weights = cols.weights
    out: dict[str, Any] = {"samples": int(mask.sum())}
    for column in LATENCY_COLUMNS:
        out[column] = latency_stats(cols.get(column)[mask])
    waiting_column, waiting = cols.first_present(WAITING_COLUMNS)
    out["waiting_column"] = waiting_column
    valid = mask & ~np.isnan(waiting)
    out["waiting_share"] = _weighted_share(waiting > 0, valid, weights)
    replicas = cols.get("replicas")
    known = mask & ~np.isnan(replicas)
    out["replicas_mean"] = (
        float((replicas[known] * weights[known]).sum() / weights[known].sum())
        if known.any() and weights[known].sum() > 0
        else None
    )
    out["replicas_max"] = float(replicas[known].max()) if known.any() else None
    for column, threshold in slo.items():
        values = cols.get(column)
        out[f"{column.removesuffix('_ms')}_over_slo_share"] = _weighted_share(
            values > threshold, mask & ~np.isnan(values), weights
        )
    return out


def compute_kpis(run: Run) -> dict[str, Any]:
    """All KPIs of a run as a JSON-ready dict (missing values are None, never 0)."""

    cols = SampleColumns(run)
    interval = run.interval_s
    t = cols.elapsed
    digest = run.digest  # a big metrics.csv read in one pass: `cols` holds its key rows only
    waiting_column = next((c for c in WAITING_COLUMNS if digest and c in digest.has_data), None)

    def sample_stats(mask: np.ndarray, start_s: float, end_s: float) -> dict[str, Any]:
        """window_kpis over the samples in [start_s, end_s) after the warm-up (selected by `mask`)."""
        if digest is None:
            return window_kpis(cols, mask, slo)
        return digest.window(start_s, end_s).result(waiting_column, slo, PERCENTILES)

    data_end = float(t[-1] + (interval or 0.0)) if len(t) else 0.0
    slo = run.slo

    increases = load_increases(run)
    increase_rows = []
    for i, inc in enumerate(increases):
        end = increases[i + 1].at_s if i + 1 < len(increases) else data_end
        increase_rows.append(
            {
                "at_s": inc.at_s,
                "jobs": list(inc.jobs),
                "offered_rps_before": inc.offered_before,
                "offered_rps_after": inc.offered_after,
                "measured_until_s": end,
                **scale_up_response(cols, inc.at_s, end, interval),
            }
        )

    windows = phase_windows(run)
    load_end = max((w.end_s for w in windows), default=None)
    warm_up = run.warm_up_s
    after_warm_up = t >= warm_up
    phase_rows = []
    for window in windows:
        mask = (t >= window.start_s) & (t < window.end_s) & after_warm_up
        phase_rows.append(
            {
                "phase": window.name,
                "rate": window.rate,
                "start_s": window.start_s,
                "end_s": window.end_s,
                "basis": window.basis,
                **sample_stats(mask, window.start_s, window.end_s),
            }
        )
    if load_end is not None and (t >= load_end).any():
        mask = (t >= load_end) & after_warm_up
        phase_rows.append(
            {
                "phase": "cooldown",
                "rate": 0.0,
                "start_s": load_end,
                "end_s": data_end,
                "basis": "after last job",
                **sample_stats(mask, load_end, math.inf),
            }
        )

    run_level = {
        "duration_s": float(t[-1] - t[0]) if len(t) else None,
        "interval_s": interval,
        "replicas": replica_kpis(cols),
        "scale_down": scale_down_completion(cols, load_end, autoscaler_floor(run)),
        **(run_stats := sample_stats(after_warm_up, -math.inf, math.inf)),
        "samples": len(t) if digest is None else digest.rows,
        "warm_up_s": warm_up,
        "samples_in_statistics": int(after_warm_up.sum()) if digest is None else run_stats["samples"],
    }
    if digest is None:
        coverage = {c: float((~np.isnan(cols.get(c))).mean()) if len(t) else None for c in COVERAGE_COLUMNS}
    else:
        rows = digest.rows
        coverage = {c: digest.coverage_counts.get(c, 0) / rows if rows else None for c in COVERAGE_COLUMNS}
    over_window = latency_over_window(run)
    alerts = run_alerts(run)
    summary = _clean(
        {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "run": {
                "id": run.run_id,
                "directory": run.path.name,
                "name": run.name,
                "backend": run.backend,
                "status": run.status,
                "start_utc": run.info.get("start_utc"),
                "start_local": run.info.get("start_local"),
                "path": str(run.path),
            },
            "slo": slo,
            "kpis": run_level,
            "load_increases": increase_rows,
            "phases": phase_rows,
            "data_coverage": coverage,
            "requests": request_kpis(run),  # per-request statistics (requests.csv, twin runs); None without it
            "latency_over_window": over_window,  # from the histograms (window_latency.py); None without them
            # requests at zero Ready replicas (requests.csv) and the load Jobs' initial request (job-results.csv)
            "cold_starts": cold_starts_section(run),
            "client": (client := client_kpis(run.path)),  # the load Jobs' own results (job-results.csv)
            "notes": data_notes(run, coverage)
            + ([] if over_window else [missing_note(run)])
            + client_notes(client)
            + alerts,
            "alerts": alerts,
            "energy": energy_kpis(run),
            "scale_events": scale_events(run),  # why the HPA scaled, per change of desired replicas (why.py)
        }
    )
    summary["slo_gates"] = gates_summary(summary, run.slo_gates)
    return summary


ALERT_KINDS = ("data_missing", "hpa_blocked", "object_lost")  # events of watchdog.py and lost_objects.py


def run_alerts(run: Run) -> list[str]:
    """What the watchdog said during the run (empty columns, an HPA that could not act) and the objects
    the run lost sight of (an HPA, Deployment or Job deleted mid-run), one line each."""
    events = run.events
    if events.empty or "kind" not in events:
        return []
    chosen = events[events["kind"].isin(ALERT_KINDS)]
    return [f"at {float(e.elapsed_s):g} s: {e.detail}" for e in chosen.itertuples()]


def data_notes(run: Run, coverage: dict[str, float | None]) -> list[str]:
    """What a reader must know before trusting the numbers (missing columns, imported data)."""
    notes = []
    empty = [column for column, share in coverage.items() if share == 0]
    if empty:
        notes.append("no data at all in: " + ", ".join(empty))
    legacy = run.info.get("legacy")
    if isinstance(legacy, dict):
        notes.append(
            f"imported from the original system ({legacy.get('source_path')}); "
            f"never-collected columns left empty: {', '.join(legacy.get('never_collected_columns', []))}"
        )
        corrections = legacy.get("corrections") or []
        if corrections:
            notes.append(f"{len(corrections)} milli-unit value(s) corrected ({legacy.get('milli_unit_rule')})")
        if legacy.get("timezone") == "unknown":
            notes.append("timestamps are local time of an unknown zone (import with --tz to convert to UTC)")
        notes.append("phases are the config's planned windows; the original jobs' real start/end were not recorded")
    if run.warm_up_s:
        notes.append(f"sample statistics leave out the first {run.warm_up_s:g} s (metrics.warm_up_duration_s)")
    if run.status != RunStatus.COMPLETED:
        notes.append(f"run status is {run.status!r}: the data may end early")
    return notes


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The few numbers shown per run in listings and comparisons."""
    kpis = summary["kpis"]
    first_up = next(
        (
            row["time_to_first_scale_up_s"]
            for row in summary["load_increases"]
            if row["time_to_first_scale_up_s"] is not None
        ),
        None,
    )
    energy = summary.get("energy") or {}  # summaries written before energy have none
    return {
        "duration_s": kpis["duration_s"],
        "peak_replicas": kpis["replicas"]["peak"],
        "gpu_hours": kpis["replicas"]["gpu_hours"],
        "first_scale_up_s": first_up,
        "scale_down_s": kpis["scale_down"]["completed_after_s"],
        "direction_changes": kpis["replicas"]["direction_changes"],
        "waiting_share": kpis["waiting_share"],
        "ttft_p90_ms": window_value(run_window(summary), "ttft_ms", "p90"),  # over the run, from histograms
        "itl_p90_ms": window_value(run_window(summary), "itl_ms", "p90"),
        "ttft_p90_of_samples_ms": kpis["ttft_ms"]["p90"],
        "itl_p90_of_samples_ms": kpis["itl_ms"]["p90"],
        "energy_kwh": (energy.get("run") or {}).get("energy_kwh"),
        "cost": (energy.get("run") or {}).get("cost"),
        "currency": energy.get("currency"),
        "alerts": summary.get("alerts") or [],  # summaries written before the watchdog have none
    }


def write_summary(run: Run) -> tuple[dict[str, Any], Path]:
    """Compute the KPIs of `run` and write them to <run>/summary.json."""
    summary = compute_kpis(run)
    path = run.path / SUMMARY_FILE
    atomic_write_json(path, summary)
    return summary, path
