"""Distributions of per-request latencies (requests.csv): one CDF panel per latency, a line per job.

Completed requests that arrived after the warm-up, as in the summary's request statistics.  Each
line is the exact empirical CDF sampled at `CDF_POINTS` quantiles, so a million requests draw as
fast as a hundred.  Latencies spread over orders of magnitude under overload, hence log x axes.
Conventions (object API, no pyplot; legends right of the panels; "no data" text) as in plots.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.plots import COLORS, FIGURE_WIDTH_IN, LEGEND, MARGINS, PLOTS_DIR, save_figure
from hpa_experiments.analysis.requests import RequestScan, requests_path, scan_requests

REQUESTS_PLOT_FILE = "requests.png"
CDF_POINTS = 1000
PANELS = (  # column, title, the SLO of run.slo that applies
    ("ttft_ms", "time to first token (ms)", "ttft_ms"),
    ("itl_mean_ms", "mean inter-token latency per request (ms)", "itl_ms"),
    ("e2e_ms", "end-to-end latency (ms)", None),
    ("queue_wait_ms", "queue wait (ms)", None),
)


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:  # values: no NaN
    """(latency, share of requests at or below it); zeros count in the shares but are not drawn (log axis)."""
    present = np.sort(values)
    if len(present) == 0 or present[-1] <= 0:
        return None
    shares = np.linspace(0.0, 1.0, min(CDF_POINTS, len(present)))
    index = np.minimum((shares * len(present)).astype(int), len(present) - 1)
    positive = present[index] > 0
    return present[index][positive], ((index + 1) / len(present))[positive]


def _panel(ax: Axes, scan: RequestScan, column: str, title: str, slo: float | None) -> None:
    lines = [(job, scan.latencies(column, job)) for job in scan.jobs]
    if len(lines) > 1:
        lines.append(("all jobs", scan.latencies(column)))
    drawn = False
    for i, (label, values) in enumerate(lines):
        cdf = _cdf(values)
        if cdf is None:
            continue
        all_jobs = label == "all jobs"
        ax.step(
            *cdf,
            where="post",
            color="black" if all_jobs else COLORS[i % len(COLORS)],
            lw=1.8 if all_jobs else 1.2,
            ls="--" if all_jobs else "-",
            label=f"{label} (n={len(values):,})",
        )
        drawn = True
    ax.set_title(title, fontsize=10, loc="left")
    if not drawn:
        ax.text(
            0.5,
            0.5,
            f"{title}: no data",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=11,
            color="0.45",
            style="italic",
        )
        ax.set_yticks([])
        return
    if slo is not None:
        ax.axvline(slo, color="tab:red", lw=1.2, ls="--", label=f"SLO {slo:g} ms")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.01)
    ax.set_ylabel("share of requests")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(**LEGEND)


def request_figure(run: Run, scan: RequestScan) -> Figure:
    """CDFs of TTFT, mean ITL, E2E and queue wait of the completed requests, by job."""
    fig = Figure(figsize=(FIGURE_WIDTH_IN, 2.6 * len(PANELS) + 1))
    axes = fig.subplots(len(PANELS), 1)
    fig.subplots_adjust(top=0.92, **{**MARGINS, "hspace": 0.45})
    for ax, (column, title, slo) in zip(axes, PANELS, strict=True):
        _panel(ax, scan, column, title, run.slo.get(slo) if slo else None)
    warm_up = f", arrivals after the {scan.warm_up_s:g} s warm-up" if scan.warm_up_s else ""
    fig.suptitle(f"{run.name} · per-request latencies (completed requests{warm_up})\n{run.path.name}", fontsize=12)
    return fig


def write_request_plots(run: Run) -> list[Path]:
    """<run>/plots/requests.png when the run has a requests.csv; returns the files written."""
    path = requests_path(run)
    if path is None:
        return []
    figure = request_figure(run, scan_requests(path, run.warm_up_s, run.warnings))
    return [save_figure(figure, run.path / PLOTS_DIR / REQUESTS_PLOT_FILE)]
