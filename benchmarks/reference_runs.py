"""The two real reference runs and their twin replays, on one footing (used by calibrate.py and fidelity.py).

- The real runs are imported with the legacy importer (milli-units repaired, zeros that mean
  "not collected" made empty) into a scratch folder; the shared data is never modified.
- The twin replays them with the configs in benchmarks/calibration/ (the jobs as they really ran),
  run in-process through the same Runner as `hpa-exp run`.
- Both runs get the same phase table (the jobs as really run, nominal windows), so the KPIs of
  hpa_experiments.analysis mean the same thing for both; the twin's samples are cut at the end
  of the real recording so replica-seconds cover the same time span.
- Errors are measured at the real samples' times (~21 s apart), reading the twin's sample at or
  just before each of them (the twin samples every 5 s).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import Run, load_run
from hpa_experiments.backends.factory import BackendOptions, make_backend
from hpa_experiments.config import load_config
from hpa_experiments.legacy import import_legacy
from hpa_experiments.plan import build_plan
from hpa_experiments.rundir import PHASE_COLUMNS
from hpa_experiments.runner import Runner
from hpa_experiments.workloads import new_run_id

BENCHMARKS = Path(__file__).resolve().parent
REFERENCE_DATA = BENCHMARKS.parent / "tests" / "data" / "reference-runs"  # copies of the shared reference runs


@dataclass(frozen=True)
class Reference:
    """One real run: where its data is, the config that replays it, its jobs as really run."""

    name: str
    legacy_dir: Path
    config: Path
    jobs: tuple[tuple[str, float, float, float], ...]  # (job, rate req/s, start s, end s) nominal


REFERENCES = (
    Reference(
        "high-load-20251124",
        REFERENCE_DATA / "high-load-hpa-20251124-155733",
        BENCHMARKS / "calibration" / "high-load-hpa-20251124.yaml",
        (("phase-1-high-load", 20.0, 0.0, 360.0), ("phase-2-peak-load", 30.0, 120.0, 480.0)),
    ),
    Reference(
        "moderate-extended-20251210",
        REFERENCE_DATA / "moderate-load-hpa-extended-20251210-132157",
        BENCHMARKS / "calibration" / "moderate-load-hpa-extended-20251210.yaml",
        (
            ("phase-1-baseline", 5.0, 0.0, 600.0),
            ("phase-2-ramp-up", 12.0, 180.0, 780.0),
            ("phase-3-sustained", 10.0, 360.0, 960.0),
            ("phase-4-cooldown", 10.0, 540.0, 1140.0),
        ),
    ),
)


def as_really_run(run: Run, ref: Reference) -> Run:
    """The run with the phase table of the jobs as really run (in memory only)."""
    rows = [
        {
            "job": job,
            "resource_name": job,
            "rate": rate,
            "planned_start_s": start,
            "planned_end_s": end,
            "actual_start_s": math.nan,
            "actual_end_s": math.nan,
            "outcome": "as really run",
        }
        for job, rate, start, end in ref.jobs
    ]
    return dataclasses.replace(run, phases=pd.DataFrame(rows, columns=PHASE_COLUMNS))


def real_run(ref: Reference, scratch: Path) -> Run:
    """The real run, imported into `scratch` and given the true phase table."""
    result = import_legacy(ref.legacy_dir, scratch)
    return as_really_run(load_run(result.directory), ref)


def real_end_s(real: Run) -> float:
    """End of the real recording: the last sample plus one sampling interval."""
    return float(real.elapsed.iloc[-1]) + float(real.interval_s or 0.0)


@dataclass
class TwinRun:
    run: Run
    wall_s: float


def twin_run(
    ref: Reference,
    parameters: dict[str, Any],
    seed: int,
    out_dir: Path | None = None,
    until_s: float | None = None,
    scrape_interval: float | None = None,
) -> TwinRun:
    """Replay `ref` on the twin with profile overrides `parameters` (on top of the config's)."""
    config = load_config(ref.config)
    config.simulation.parameters = {**config.simulation.parameters, **parameters}
    config.simulation.seed = seed
    if scrape_interval is not None:
        config.simulation.scrape_interval = scrape_interval
    plan = build_plan(config)
    run_id = new_run_id(time.time())
    with tempfile.TemporaryDirectory(prefix="twin-") as tmp:
        base = out_dir or Path(tmp)
        started = time.perf_counter()
        backend, names = make_backend("simulation", config, plan, run_id, BackendOptions())
        result = Runner(
            config, plan, backend, base_dir=base, metric_names=names, handle_signals=False, run_id=run_id
        ).run()
        wall = time.perf_counter() - started
        if result.exit_code != 0:
            raise RuntimeError(f"twin run of {ref.name} failed: {result.reason}")
        run = load_run(result.run_dir)
    run = as_really_run(run, ref)
    if until_s is not None:
        run = dataclasses.replace(run, metrics=run.metrics[run.elapsed < until_s].reset_index(drop=True))
    return TwinRun(run, wall)


def at_real_times(real: Run, twin: Run, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(real values, twin values) at the real samples' times; NaN where either has no value."""
    t_real = real.elapsed.to_numpy(dtype=float)
    t_twin = twin.elapsed.to_numpy(dtype=float)
    index = np.searchsorted(t_twin, t_real, side="right") - 1
    twin_values = twin.metrics[column].to_numpy(dtype=float, na_value=np.nan)
    picked = np.where(index >= 0, twin_values[np.clip(index, 0, None)], np.nan)
    return real.metrics[column].to_numpy(dtype=float, na_value=np.nan), picked


def mean_abs_diff(real: Run, twin: Run, column: str) -> float | None:
    a, b = at_real_times(real, twin, column)
    both = ~np.isnan(a) & ~np.isnan(b)
    return float(np.abs(a[both] - b[both]).mean()) if both.any() else None


def kpi_row(run: Run) -> dict[str, float | None]:
    """The compared KPIs of one run, from hpa_experiments.analysis.compute_kpis."""
    summary = compute_kpis(run)
    first_up = next(
        (
            row["at_s"] + row["time_to_first_scale_up_s"]
            for row in summary["load_increases"]
            if row["time_to_first_scale_up_s"] is not None
        ),
        None,
    )
    replicas = summary["kpis"]["replicas"]
    return {
        "first_scale_up_at_s": first_up,
        "peak_replicas": replicas["peak"],
        "time_at_peak_s": replicas["peak_at_s"],
        "scale_down_completed_after_s": summary["kpis"]["scale_down"]["completed_after_s"],
        "replica_seconds": replicas["replica_seconds"],
    }


def fit_errors(real: Run, twin: Run) -> dict[str, float | None]:
    """Trajectory errors (at the real sample times) and KPI differences twin - real."""
    real_kpis, twin_kpis = kpi_row(real), kpi_row(twin)
    out: dict[str, float | None] = {
        "replicas_mae": mean_abs_diff(real, twin, "replicas"),
        "kv_mae": mean_abs_diff(real, twin, "kv_cache_usage_perc"),
        "waiting_mae": mean_abs_diff(real, twin, "num_requests_waiting"),
    }
    for key, value in real_kpis.items():
        other = twin_kpis[key]
        out[f"d_{key}"] = None if value is None or other is None else other - value
    return out
