"""Ensembles: one experiment on the digital twin under N seeds, run in parallel processes.

Near a replica's capacity the outcome of one seed is not an answer (one seed cascades to
maxReplicas, another adds a pod), so an ensemble reports each headline KPI as a median with
its p10-p90 spread, and the share of seeds that reached maxReplicas.

Each seed is an ordinary run directory in the output folder, tagged `ensemble=<id>` and
`seed=<n>`, so `hpa-exp runs`, `report` and `compare` work on it as on any run.  The
ensemble's own folder, `<output>/ensembles/<name>-<UTC stamp>/`, holds `ensemble.json` (the
seeds, their run directories and the KPI spreads), the replica band plot and a small HTML page.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpa_experiments.config import ExperimentConfig
from hpa_experiments.errors import EXIT_FAILED, EXIT_OK, UsageError
from hpa_experiments.rundir import RunStatus, atomic_write_json

ENSEMBLES_DIR = "ensembles"
ENSEMBLE_FILE = "ensemble.json"
MAX_SEEDS = 1000
# Headline KPIs summarised across seeds: (key in the headline, label, unit, scale, digits).
ENSEMBLE_KPIS = (
    ("peak_replicas", "peak replicas", "", 1.0, 1),
    ("gpu_hours", "GPU-hours", "", 1.0, 3),
    ("first_scale_up_s", "first scale-up after a load increase", "s", 1.0, 0),
    ("scale_down_s", "scale-down completion", "s", 1.0, 0),
    ("waiting_share", "time with waiting > 0", "%", 100.0, 1),
    ("ttft_p90_ms", "TTFT p90", "ms", 1.0, 0),
    ("itl_p90_ms", "ITL p90", "ms", 1.0, 1),
    ("energy_kwh", "GPU energy", "kWh", 1.0, 3),
)


@dataclass(frozen=True)
class SeedRun:
    seed: int
    run_dir: Path | None
    status: RunStatus
    exit_code: int
    reason: str | None


@dataclass
class EnsembleResult:
    directory: Path
    runs: list[SeedRun]
    summary: dict[str, Any]

    @property
    def exit_code(self) -> int:
        return EXIT_OK if all(r.exit_code == EXIT_OK for r in self.runs) else EXIT_FAILED


def ensemble_seeds(first: int, count: int) -> list[int]:
    """`count` consecutive seeds from the config's seed, so an ensemble is reproducible too."""
    if not 2 <= count <= MAX_SEEDS:
        raise UsageError(f"--seeds {count}: an ensemble has 2 to {MAX_SEEDS} seeds")
    return [first + i for i in range(count)]


def run_seed(config: ExperimentConfig, seed: int, output_dir: str, tags: dict[str, str]) -> SeedRun:
    """One seed in a worker process (no signal handlers: the parent owns Ctrl-C)."""
    from hpa_experiments.api import Experiment

    experiment = Experiment(config).with_overrides("sim", seed, tags={**tags, "seed": str(seed)})
    try:
        result = experiment.run(output_dir=output_dir, handle_signals=False)
    except Exception as exc:  # reported per seed; the other seeds go on
        return SeedRun(seed, None, RunStatus.FAILED, EXIT_FAILED, str(exc))
    return SeedRun(seed, result.run_dir, result.status, result.exit_code, result.reason)


def run_ensemble(
    config: ExperimentConfig,
    seeds: Sequence[int],
    output_dir: Path,
    *,
    processes: int | None = None,
    on_seed: Callable[[SeedRun, int, int], None] | None = None,
) -> EnsembleResult:
    """Run `config` on the twin once per seed, `processes` at a time (default: every core)."""
    if config.backend != "simulation":
        raise UsageError("ensembles run on the digital twin: use --backend sim (a cluster run has one outcome)")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    ensemble_id = f"{config.name}-{stamp}"
    directory = output_dir / ENSEMBLES_DIR / ensemble_id
    directory.mkdir(parents=True, exist_ok=False)
    workers = max(1, min(processes or os.cpu_count() or 1, len(seeds)))
    runs: list[SeedRun] = []
    # spawn, not fork: the parent may hold threads and open files a forked child must not share
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_seed, config, seed, str(output_dir), {"ensemble": ensemble_id}) for seed in seeds]
        for future in as_completed(futures):
            runs.append(future.result())
            if on_seed:
                on_seed(runs[-1], len(runs), len(seeds))
    runs.sort(key=lambda r: r.seed)
    summary = summarize(ensemble_id, config, runs)
    atomic_write_json(directory / ENSEMBLE_FILE, summary)
    return EnsembleResult(directory, runs, summary)


def max_replicas(config: ExperimentConfig) -> int | None:
    spec = (config.hpa_manifest or {}).get("spec") or {}
    value = spec.get("maxReplicas")
    return int(value) if isinstance(value, int) else None


def spread(values: Sequence[float]) -> dict[str, float | int | None]:
    """Median, p10, p90, min and max (linear interpolation between order statistics)."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "median": None, "p10": None, "p90": None, "min": None, "max": None}

    def quantile(q: float) -> float:
        position = q * (len(ordered) - 1)
        low, high = math.floor(position), math.ceil(position)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    return {
        "n": len(ordered),
        "median": quantile(0.5),
        "p10": quantile(0.1),
        "p90": quantile(0.9),
        "min": ordered[0],
        "max": ordered[-1],
    }


def summarize(ensemble_id: str, config: ExperimentConfig, runs: Sequence[SeedRun]) -> dict[str, Any]:
    """ensemble.json: the seeds, their runs, each KPI's spread and the share that reached maxReplicas."""
    from hpa_experiments.analysis.kpis import SUMMARY_FILE, compute_kpis, headline
    from hpa_experiments.analysis.load import load_run

    headlines: list[dict[str, Any]] = []
    for run in runs:
        if run.run_dir is None or run.status != RunStatus.COMPLETED:
            continue
        written = run.run_dir / SUMMARY_FILE  # finish_run wrote it; recompute only if it is missing
        summary = json.loads(written.read_text()) if written.exists() else compute_kpis(load_run(run.run_dir))
        headlines.append(headline(summary))
    limit = max_replicas(config)
    reached = [h["peak_replicas"] for h in headlines if h["peak_replicas"] is not None]
    return {
        "ensemble": ensemble_id,
        "name": config.name,
        "seeds": [r.seed for r in runs],
        "runs": [
            {"seed": r.seed, "run_dir": str(r.run_dir) if r.run_dir else None, "status": r.status, "reason": r.reason}
            for r in runs
        ],
        "completed": len(headlines),
        "max_replicas": limit,
        "reached_max_share": (sum(p >= limit for p in reached) / len(reached)) if limit and reached else None,
        "kpis": {
            key: {
                "label": label,
                "unit": unit,
                "digits": digits,
                **spread([h[key] * scale for h in headlines if h.get(key) is not None]),
            }
            for key, label, unit, scale, digits in ENSEMBLE_KPIS
        },
    }
