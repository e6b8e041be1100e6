"""An ensemble's page and plots: replicas over time as a median with p10-p90 and min-max bands,
and each KPI's spread across seeds; `compare` overlays the bands of several ensembles."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from rich.table import Table

from hpa_experiments.analysis.plots import COLORS, save_figure
from hpa_experiments.analysis.report import NO_DATA, fmt, html_page, html_table, png_data_uri
from hpa_experiments.ensemble import ENSEMBLE_FILE
from hpa_experiments.errors import UsageError
from hpa_experiments.rundir import RunStatus

BAND_FILE = "replicas-band.png"
ENSEMBLE_HTML = "ensemble.html"


@dataclass
class Ensemble:
    directory: Path
    summary: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.summary['ensemble']} ({self.summary['completed']} seeds)"

    def run_dirs(self) -> list[Path]:
        return [Path(r["run_dir"]) for r in self.summary["runs"] if r["run_dir"] and r["status"] == RunStatus.COMPLETED]


def is_ensemble(path: Path) -> bool:
    return (path / ENSEMBLE_FILE).is_file()


def load_ensemble(path: Path) -> Ensemble:
    try:
        summary = json.loads((path / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable ensemble ({exc})") from None
    return Ensemble(path, summary)


def replica_bands(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """Per sample time: p10, median, p90, min and max of `replicas` across the seeds' runs.
    The twin samples every seed on the same grid, so times line up exactly."""
    series = []
    for i, directory in enumerate(run_dirs):
        frame = pd.read_csv(directory / "metrics.csv", usecols=["elapsed_s", "replicas"])
        series.append(frame.set_index("elapsed_s")["replicas"].rename(i))
    if not series:
        return pd.DataFrame(columns=["p10", "median", "p90", "min", "max"])
    table = pd.concat(series, axis=1).sort_index()
    return pd.DataFrame(
        {
            "p10": table.quantile(0.1, axis=1),
            "median": table.quantile(0.5, axis=1),
            "p90": table.quantile(0.9, axis=1),
            "min": table.min(axis=1),
            "max": table.max(axis=1),
        }
    )


def band_figure(ensembles: Sequence[Ensemble]) -> Figure:
    fig = Figure(figsize=(13.0, 5.0))
    ax = fig.subplots()
    for i, ensemble in enumerate(ensembles):
        bands = replica_bands(ensemble.run_dirs())
        color = COLORS[i % len(COLORS)]
        t = bands.index.to_numpy(dtype=float)
        ax.fill_between(t, bands["min"], bands["max"], step="post", color=color, alpha=0.12, lw=0)
        ax.fill_between(
            t,
            bands["p10"],
            bands["p90"],
            step="post",
            color=color,
            alpha=0.3,
            lw=0,
            label=f"{ensemble.label}: p10-p90 (light: min-max)",
        )
        ax.step(t, bands["median"], where="post", color=color, lw=1.6, label=f"{ensemble.label}: median")
        limit = ensemble.summary.get("max_replicas")
        if limit:
            ax.axhline(limit, color=color, ls=":", lw=1, label=f"maxReplicas {limit}")
    ax.set_xlabel("experiment time (s)")
    ax.set_ylabel("replicas (current)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), fontsize=9, frameon=False)
    fig.suptitle("Replicas across seeds", fontsize=12)
    return fig


def spread_text(stats: dict[str, Any]) -> str:
    """'9.5 (p10 7.3, p90 10)': the median and the p10-p90 spread in the KPI's unit."""
    if not stats.get("n"):
        return NO_DATA
    unit, digits = (f" {stats['unit']}" if stats["unit"] else ""), stats["digits"]
    return (
        f"{fmt(stats['median'], unit, digits)} (p10 {fmt(stats['p10'], '', digits)}, "
        f"p90 {fmt(stats['p90'], '', digits)})"
    )


def spread_rows(ensembles: Sequence[Ensemble]) -> list[list[str]]:
    rows = []
    first = ensembles[0].summary
    for key, stats in first["kpis"].items():
        rows.append([stats["label"], *(spread_text(e.summary["kpis"][key]) for e in ensembles)])
    rows.append(
        [
            "seeds that reached maxReplicas",
            *(
                NO_DATA
                if e.summary.get("reached_max_share") is None
                else f"{e.summary['reached_max_share'] * 100:.0f}%"
                for e in ensembles
            ),
        ]
    )
    return rows


def spread_table(ensembles: Sequence[Ensemble]) -> Table:
    table = Table(title="KPIs across seeds: median (p10, p90)", title_justify="left")
    table.add_column("KPI", overflow="fold")
    for ensemble in ensembles:
        table.add_column(ensemble.label, overflow="fold")
    for row in spread_rows(ensembles):
        table.add_row(*row)
    return table


def write_ensemble_page(ensembles: Sequence[Ensemble], output_dir: Path, title: str) -> tuple[Path, Path]:
    """The band plot and an HTML page with the spread table, in `output_dir`."""
    png = save_figure(band_figure(ensembles), output_dir / BAND_FILE)
    seeds = "".join(
        f"<li>{html.escape(e.label)}: seeds {', '.join(map(str, e.summary['seeds']))}</li>" for e in ensembles
    )
    page = html_page(
        title,
        " vs ".join(e.label for e in ensembles),
        [
            f"<ul>{seeds}</ul>",
            "<h2>KPIs across seeds</h2>",
            html_table(["KPI", *(e.label for e in ensembles)], spread_rows(ensembles)),
            "<h2>Replicas</h2>",
            f'<img alt="replica bands" src="{png_data_uri(png)}">',
        ],
    )
    page_path = output_dir / ENSEMBLE_HTML
    page_path.write_text(page, encoding="utf-8")
    return png, page_path
