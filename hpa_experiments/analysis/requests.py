"""Per-request statistics of a run from its requests.csv (written by the twin; columns in
`hpa_experiments.backends.sim.request_log`).

Conventions:
- Requests that arrived (`arrival_s`) before `metrics.warm_up_duration_s` stay in the file but are
  left out of everything here; `excluded_by_warm_up` says how many.
- Counts by outcome and token totals cover every remaining request; latency statistics (TTFT, mean
  ITL, E2E, queue wait) only the completed ones.  An empty cell is a value that does not exist and
  is never counted as 0.
- Percentiles interpolate linearly between order statistics (numpy's default, as the sample
  statistics of kpis.py): p50, p90, p99 and the run's `metrics.percentiles`.
- The file is read in chunks; only the completed requests' latencies (float32) are kept, so a
  24-hour run's millions of rows fit in memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpa_experiments.analysis.load import Run, complete_lines
from hpa_experiments.errors import UsageError
from hpa_experiments.rundir import REQUEST_OUTCOMES, REQUESTS_FILE, percentile_label

LATENCIES = ("ttft_ms", "itl_mean_ms", "e2e_ms", "queue_wait_ms")
DEFAULT_QUANTILES = (0.5, 0.9, 0.99)
CHUNK_ROWS = 100_000
DECIMALS = 3  # the file's resolution (microseconds); hides float32 noise
_DTYPES: dict[str, Any] = {
    "job": "category",
    "outcome": "category",
    "arrival_s": "float64",
    "prompt_tokens": "int64",
    "output_tokens": "int64",
    **dict.fromkeys(LATENCIES, "float32"),
}


@dataclass
class RequestScan:
    """What one pass over requests.csv keeps: counts, token sums and the completed requests' latencies."""

    warm_up_s: float
    excluded_by_warm_up: int = 0
    jobs: list[str] = field(default_factory=list)  # in order of their first row
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)  # (job, outcome) -> requests
    prompt_tokens: Counter[str] = field(default_factory=Counter)  # job -> tokens
    output_tokens: Counter[str] = field(default_factory=Counter)
    completed_job: np.ndarray = field(default_factory=lambda: np.array([], dtype=np.int16))  # index into jobs
    completed: dict[str, np.ndarray] = field(
        default_factory=lambda: {c: np.array([], dtype=np.float32) for c in LATENCIES}
    )

    def latencies(self, column: str, job: str | None = None) -> np.ndarray:
        """The values present in one latency column of the completed requests, of one job or all (a new array)."""
        values = self.completed[column]
        present = ~np.isnan(values)
        if job is not None:
            present &= self.completed_job == self.jobs.index(job)
        return values[present]


def requests_path(run: Run) -> Path | None:
    path = run.path / REQUESTS_FILE
    return path if path.is_file() else None


def scan_requests(path: Path, warm_up_s: float = 0.0, warnings: list[str] | None = None) -> RequestScan:
    """Read requests.csv in chunks (see the module docstring); a cut last line is skipped (said in `warnings`)."""
    scan = RequestScan(warm_up_s)
    source = complete_lines(path, warnings if warnings is not None else [])
    job_parts: list[np.ndarray] = []
    parts: dict[str, list[np.ndarray]] = {c: [] for c in LATENCIES}
    try:
        chunks = pd.read_csv(
            source,
            usecols=["job", "arrival_s", "outcome", "prompt_tokens", "output_tokens", *LATENCIES],
            dtype=_DTYPES,
            chunksize=CHUNK_ROWS,
            keep_default_na=False,
            na_values=[""],
        )
        for chunk in chunks:
            late = chunk["arrival_s"].to_numpy() >= warm_up_s
            scan.excluded_by_warm_up += int((~late).sum())
            chunk = chunk[late]
            _count(scan, chunk)
            done = chunk[chunk["outcome"] == "completed"]
            categories = [str(c) for c in done["job"].cat.categories]  # all in scan.jobs (added by _count)
            to_global = np.array([scan.jobs.index(job) for job in categories] + [-1], dtype=np.int16)
            job_parts.append(to_global[done["job"].cat.codes.to_numpy()])  # code -1 (no job) stays -1
            for column in LATENCIES:
                parts[column].append(done[column].to_numpy(dtype=np.float32, na_value=np.nan))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    finally:
        if not isinstance(source, Path):
            source.close()
    if job_parts:
        scan.completed_job = np.concatenate(job_parts)
        for column in LATENCIES:  # one column at a time, freeing its chunks: peak memory ~ the data + one column
            scan.completed[column] = np.concatenate(parts.pop(column))
    return scan


def _count(scan: RequestScan, chunk: pd.DataFrame) -> None:
    """Requests by (job, outcome) and token sums by job, added to `scan`; new jobs join `scan.jobs`."""
    counts = chunk.groupby(["job", "outcome"], observed=True, sort=False).size()
    # zip(index, values) is Series.items(); pandas-stubs types items()' MultiIndex keys as Hashable, not tuples
    for (job, outcome), n in zip(counts.index, counts, strict=True):
        scan.counts[(str(job), str(outcome))] += int(n)
        if str(job) not in scan.jobs:
            scan.jobs.append(str(job))
    sums = chunk.groupby("job", observed=True, sort=False)[["prompt_tokens", "output_tokens"]].sum()
    for job, row in sums.iterrows():
        scan.prompt_tokens[str(job)] += int(row["prompt_tokens"])
        scan.output_tokens[str(job)] += int(row["output_tokens"])


def latency_stats(present: np.ndarray, quantiles: tuple[float, ...]) -> dict[str, float | int | None]:
    """count, mean and percentiles of values without NaN (None without any); reorders `present` in place."""
    stats: dict[str, float | int | None] = {"count": len(present), "mean": None}
    labels = [percentile_label(q) for q in quantiles]
    if len(present) == 0:
        stats.update(dict.fromkeys(labels))
        return stats
    stats["mean"] = round(float(present.mean(dtype=np.float64)), DECIMALS)
    percentiles = np.percentile(present, [q * 100 for q in quantiles], overwrite_input=True)
    for label, value in zip(labels, percentiles, strict=True):
        stats[label] = round(float(value), DECIMALS)
    return stats


def run_quantiles(run: Run) -> tuple[float, ...]:
    """p50, p90, p99 and the run's configured `metrics.percentiles` (fractions), sorted."""
    metrics = run.config.get("metrics")
    configured = metrics.get("percentiles") if isinstance(metrics, dict) else None
    extra = [float(q) for q in configured or [] if isinstance(q, (int, float)) and 0 < q < 1]
    return tuple(sorted({*DEFAULT_QUANTILES, *extra}))


def _group_kpis(scan: RequestScan, jobs: list[str], job: str | None, quantiles: tuple[float, ...]) -> dict[str, Any]:
    by_outcome = {o: sum(scan.counts[(j, o)] for j in jobs) for o in REQUEST_OUTCOMES}
    return {
        "requests": sum(by_outcome.values()),
        "by_outcome": by_outcome,
        "prompt_tokens": sum(scan.prompt_tokens[j] for j in jobs),
        "output_tokens": sum(scan.output_tokens[j] for j in jobs),
        **{column: latency_stats(scan.latencies(column, job), quantiles) for column in LATENCIES},
    }


def request_kpis(run: Run) -> dict[str, Any] | None:
    """The "requests" part of summary.json; None when the run has no requests.csv."""
    path = requests_path(run)
    if path is None:
        return None
    scan = scan_requests(path, run.warm_up_s, run.warnings)
    quantiles = run_quantiles(run)
    return {
        "source": REQUESTS_FILE,
        "warm_up_s": scan.warm_up_s,
        "excluded_by_warm_up": scan.excluded_by_warm_up,
        **_group_kpis(scan, scan.jobs, None, quantiles),
        "per_job": {job: _group_kpis(scan, [job], job, quantiles) for job in scan.jobs},
    }
