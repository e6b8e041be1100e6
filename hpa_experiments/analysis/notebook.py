"""Helpers for the notebooks: which run(s) to open, and tables/figures shown in cells.

The notebooks call only these functions (and the analysis modules), so no analysis logic is
copied into notebook cells.  Environment variables set by `hpa-exp notebook` (and by the
tests) take precedence over the parameter cell.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from hpa_experiments.analysis.compare import Comparison, compare
from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import Run, load_run, newest_run_path, runs_newest_first
from hpa_experiments.analysis.plots import DPI
from hpa_experiments.analysis.report import (
    ENERGY_PHASE_HEADERS,
    energy_phase_rows,
    energy_rows,
    kpi_rows,
    phase_headers,
    phase_table_rows,
    request_rows,
)
from hpa_experiments.errors import UsageError

RUN_DIR_ENV = "HPA_EXP_RUN_DIR"
RUN_DIRS_ENV = "HPA_EXP_RUN_DIRS"
NOTEBOOK_DATA_DIR = Path("../experiment-data")


def choose_run_dir(parameter: str | Path | None, data_dir: Path = NOTEBOOK_DATA_DIR) -> Path:
    """$HPA_EXP_RUN_DIR, else the parameter, else the newest run under the data dir."""
    chosen = os.environ.get(RUN_DIR_ENV) or parameter
    return Path(chosen) if chosen else newest_run_path(data_dir)


def choose_run_dirs(parameter: Sequence[str | Path] | None, data_dir: Path = NOTEBOOK_DATA_DIR) -> list[Path]:
    """$HPA_EXP_RUN_DIRS (separated by os.pathsep), else the parameter, else the two newest runs."""
    from_env = [p for p in os.environ.get(RUN_DIRS_ENV, "").split(os.pathsep) if p]
    if from_env:
        return [Path(p) for p in from_env]
    if parameter:
        return [Path(p) for p in parameter]
    newest = runs_newest_first(data_dir)[:2]
    if len(newest) < 2:
        raise UsageError(f"need two runs to compare; found {len(newest)} under {data_dir}")
    return newest


def open_run(parameter: str | Path | None = None) -> Run:
    return load_run(choose_run_dir(parameter))


def open_runs(parameter: Sequence[str | Path] | None = None) -> list[Run]:
    return [load_run(p) for p in choose_run_dirs(parameter)]


def describe(run: Run) -> pd.DataFrame:
    """Who, when, where: the run's identity as a small table."""
    info = run.info
    rows = {
        "directory": run.path.name,
        "run id": run.run_id,
        "name": run.name,
        "backend": run.backend,
        "status": run.status,
        "start": info.get("start_utc") or f"{info.get('start_local')} (local, zone {info.get('timezone')})",
        "interval (s)": run.interval_s,
        "samples": run.digest.rows if run.digest is not None else len(run.metrics),
        "path": str(run.path),
    }
    return pd.DataFrame({"value": [str(v) for v in rows.values()]}, index=list(rows))


def kpis(run: Run) -> dict[str, Any]:
    return compute_kpis(run)


def kpi_frame(summary: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(kpi_rows(summary), columns=["section", "KPI", "value"])


def phase_frame(summary: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(phase_table_rows(summary), columns=phase_headers(summary))


def headline(summary: dict[str, Any]) -> Any:
    """The scaling sentences with their reference points (and what an unfinished run could not measure)."""
    from hpa_experiments.analysis.reference_points import headline_sentences

    return _note(" · ".join(headline_sentences(summary)))


def latency_window_frame(summary: dict[str, Any]) -> Any:
    """TTFT/ITL over the run and each phase from the histograms (ms), or why the run has none."""
    from hpa_experiments.analysis.window_latency import WINDOW_KEYS

    over = summary.get("latency_over_window")
    if not over:
        return _note(
            "This run has no latency histograms over its windows: "
            + next((n for n in summary.get("notes", []) if "histograms" in n), "not measured")
        )
    rows = []
    for window in [over["run"], *over["phases"]]:
        row: dict[str, Any] = {"window": window["name"], "start_s": window["start_s"], "end_s": window["end_s"]}
        for metric in ("ttft_ms", "itl_ms"):
            stats = window.get(metric) or {}
            name = metric.removesuffix("_ms")
            row[f"{name} observations"] = stats.get("observations")
            row.update({f"{name} {key} (ms)": stats.get(key) for key in WINDOW_KEYS})
        row["not measured"] = window.get("not_measured") or ""
        rows.append(row)
    return pd.DataFrame(rows).set_index("window")


def increase_frame(summary: dict[str, Any]) -> pd.DataFrame:
    columns = [
        "at_s",
        "offered_rps_before",
        "offered_rps_after",
        "baseline_replicas",
        "time_to_first_scale_up_s",
        "steady_replicas",
        "time_to_steady_s",
    ]
    return pd.DataFrame(summary["load_increases"], columns=columns)


def energy_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """Run-level GPU energy, power, J per token, GPU-hours and cost ("no data" without power series)."""
    return pd.DataFrame(energy_rows(summary.get("energy")), columns=["section", "KPI", "value"])


def energy_phase_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """GPU energy per stretch of constant load; empty when the run has no power data."""
    return pd.DataFrame(energy_phase_rows(summary), columns=ENERGY_PHASE_HEADERS)


def energy_plot(run: Run) -> Any:
    """The power and cumulative-energy figure, or a note when the run recorded no GPU power."""
    from hpa_experiments.analysis.energy_plots import POWER_COLUMN, energy_figure

    if run.series(POWER_COLUMN) is None:
        return _note("This run has no GPU power data (no DCGM exporter series on the cluster, or an imported run).")
    return show(energy_figure(run.plot_view()))


def scale_event_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per scale event: time, desired count, the limit that held it, ready lag."""
    events = summary.get("scale_events") or []
    if not events:
        return pd.DataFrame({"scale events": ["none: the desired replica count never changed"]})
    columns = ["at_s", "direction", "from_desired", "desired", "limited_by", "new_pods", "ready_pods", "ready_after_s"]
    frame = pd.DataFrame([{c: e.get(c) for c in columns} for e in events], columns=columns)
    frame.index = range(1, len(frame) + 1)
    return frame


def scale_event_lines(summary: dict[str, Any]) -> Any:
    """The per-event lines as a numbered list (numbers as in the why figure)."""
    events = summary.get("scale_events") or []
    if not events:
        return _note("No scale event: the desired replica count never changed.")
    from IPython.display import Markdown

    return Markdown("\n".join(f"{n}. {e['line']}" for n, e in enumerate(events, start=1)))


def why_plot(run: Run) -> Any:
    """Metric/target ratios, proposals and limits with the scale events, or a note without HPA metrics."""
    from hpa_experiments.analysis.why import scale_events, why_data
    from hpa_experiments.analysis.why_plots import why_figure

    if not why_data(run).metrics:
        return _note("This run recorded no HPA metric next to its target, so there is nothing to explain.")
    events = scale_events(run) if run.digest is not None else None  # a streamed run's figure has only its envelope
    return show(why_figure(run.plot_view(), events))


def request_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """Per-request KPIs of the whole run (simulated runs write requests.csv)."""
    rows = request_rows(summary.get("requests")) or [("requests", "per-request results", "none in this run")]
    return pd.DataFrame(rows, columns=["section", "KPI", "value"])


def request_job_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per job: requests, completions and latency percentiles of its completed requests."""
    requests = summary.get("requests")
    if not requests:
        return pd.DataFrame()
    rows = []
    for job, stats in requests["per_job"].items():
        row: dict[str, Any] = {"job": job, "requests": stats["requests"], **stats["by_outcome"]}
        for column in ("ttft_ms", "itl_mean_ms", "e2e_ms", "queue_wait_ms"):
            for key in ("p50", "p90", "p99"):
                row[f"{column.removesuffix('_ms')} {key} (ms)"] = stats[column][key]
        rows.append(row)
    return pd.DataFrame(rows).set_index("job")


def request_plot(run: Run) -> Any:
    """CDFs of TTFT, ITL, end-to-end latency and queue wait by job, or a note without requests.csv."""
    from hpa_experiments.analysis.request_plots import request_figure
    from hpa_experiments.analysis.requests import requests_path, scan_requests

    path = requests_path(run)
    if path is None:
        return _note("This run has no requests.csv (per-request results come from the digital twin).")
    return show(request_figure(run, scan_requests(path, run.warm_up_s)))


def client_frame(summary: dict[str, Any]) -> Any:
    """Per job: the load Job's own results beside the server-side numbers, or a note without them."""
    from hpa_experiments.analysis.client_report import CLIENT_HEADERS, client_job_rows

    rows = client_job_rows(summary)
    if not rows:
        return _note("This run has no job-results.csv (the load Jobs' own results; output.include_pod_logs).")
    return pd.DataFrame(rows, columns=CLIENT_HEADERS).set_index("job")


def _note(text: str) -> Any:
    from IPython.display import Markdown

    return Markdown(f"*{text}*")


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    rows = [[text for text, _ in row] for row in comparison.rows()]
    return pd.DataFrame(rows, columns=comparison.headers())


def compare_runs(runs: Sequence[Run]) -> Comparison:
    return compare(runs)


def show(fig: Figure) -> Any:
    """The figure as a PNG display object (works whatever the notebook's matplotlib backend)."""
    from IPython.display import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return Image(data=buffer.getvalue(), format="png")
