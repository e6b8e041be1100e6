"""Exploring runs: the list with headline KPIs, one run's summary, its files, notebook, comparison.

All numbers come from hpa_experiments.analysis (the same functions as `hpa-exp runs/report/compare`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from hpa_experiments.errors import HpaExpError
from hpa_experiments.menu.context import MenuContext, shown_path
from hpa_experiments.menu.ui import confirm, cooked, keys_line, notice, show_screen, stack

if TYPE_CHECKING:
    from hpa_experiments.analysis.runs import RunListing

PAGE = 9


def _listings(ctx: MenuContext) -> list[RunListing]:
    from hpa_experiments.analysis.runs import list_runs

    ctx.console.clear()
    with ctx.console.status("reading runs…"):
        return list_runs(ctx.data_dir)


def _runs_table(ctx: MenuContext, listings: list[RunListing], first: int) -> Table:
    from hpa_experiments.analysis.report import fmt
    from hpa_experiments.analysis.runs import STATUS_STYLE

    wide = ctx.console.width >= 110
    table = Table(box=None, padding=(0, 1), header_style="bold")
    table.add_column("#", no_wrap=True)
    table.add_column("run", no_wrap=True, overflow="ellipsis")
    table.add_column("status", no_wrap=True)
    table.add_column("peak", justify="right", no_wrap=True)
    table.add_column("TTFT p90", justify="right", no_wrap=True)
    if wide:
        for header in ("backend", "GPU-h", "first up", "scale-down"):
            table.add_column(header, justify="right", no_wrap=True)
    for i, item in enumerate(listings[first : first + PAGE], start=1):
        h = item.headline or {}
        row: list[str | Text] = [
            str(i),
            item.path.name,
            Text(item.status, style=STATUS_STYLE.get(item.status, "")),
            fmt(h.get("peak_replicas"), "", 0),
            fmt(h.get("ttft_p90_ms"), " ms", 0),
        ]
        if wide:
            row += [
                str(item.info.get("backend", "?")),
                fmt(h.get("gpu_hours"), "", 3),
                fmt(h.get("first_scale_up_s"), " s", 0),
                fmt(h.get("scale_down_s"), " s", 0),
            ]
        table.add_row(*row)
    return table


def pick_run(ctx: MenuContext, listings: list[RunListing], title: str, back_label: str = "back") -> Path | None:
    """A paged list of runs (newest first); a digit opens one."""
    first = 0
    while True:
        if not listings:
            notice(ctx.console, title, Text(f"no runs under {shown_path(ctx.data_dir)}/", style="dim"))
            return None
        shown = listings[first : first + PAGE]
        pages = (len(listings) - 1) // PAGE + 1
        body = stack(
            Text(
                f"{len(listings)} run(s) under {shown_path(ctx.data_dir)}/, newest first · "
                f"page {first // PAGE + 1} of {pages}",
                style="dim",
            ),
            _runs_table(ctx, listings, first),
        )
        pairs = [("1-9", "open")] + ([("n", "next page")] if first + PAGE < len(listings) else [])
        pairs += ([("p", "previous page")] if first else []) + [("b", back_label), ("q", "quit")]
        allowed = {str(i) for i in range(1, len(shown) + 1)} | {"n", "p", "b", "escape"}
        key = show_screen(ctx.console, title, body, stack(Text(""), keys_line(pairs)), allowed.__contains__)
        if key.isdigit():
            return shown[int(key) - 1].path
        if key == "n" and first + PAGE < len(listings):
            first += PAGE
        elif key == "p":
            first = max(0, first - PAGE)
        elif key in ("b", "escape"):
            return None


def explore(ctx: MenuContext) -> None:
    while (path := pick_run(ctx, _listings(ctx), "Runs", back_label="home")) is not None:
        open_run(ctx, path)


def open_run(ctx: MenuContext, path: Path) -> None:
    """One run: its KPI summary and per-phase table; files, notebook and comparison from here."""
    from hpa_experiments.analysis.kpis import compute_kpis
    from hpa_experiments.analysis.load import load_run
    from hpa_experiments.analysis.report import kpi_table, phase_table

    try:
        ctx.console.clear()
        with ctx.console.status(f"computing the summary of {path.name}…"):
            summary = compute_kpis(load_run(path))
    except HpaExpError as exc:
        notice(ctx.console, f"Run {path.name}", Text(str(exc), style="red"))
        return
    while True:
        body = stack(kpi_table(summary), phase_table(summary))
        pairs = [("f", "plots & HTML report"), ("n", "notebook"), ("c", "compare with…"), ("b", "back"), ("q", "quit")]
        key = show_screen(
            ctx.console,
            f"Run {path.name} · summary",
            body,
            stack(Text(""), keys_line(pairs)),
            lambda k: k in ("f", "n", "c", "b", "escape"),
        )
        if key == "f":
            report_files(ctx, path)
        elif key == "n":
            notebook(ctx, [path])
        elif key == "c":
            compare_with(ctx, path)
        else:
            return


def report_files(ctx: MenuContext, path: Path) -> None:
    """Where the plots and the HTML report are; generated first when missing."""
    from hpa_experiments.analysis.kpis import SUMMARY_FILE
    from hpa_experiments.analysis.plots import OVERVIEW_FILE, PLOTS_DIR
    from hpa_experiments.analysis.report import HTML_FILE, build_report

    expected = [path / SUMMARY_FILE, path / PLOTS_DIR / OVERVIEW_FILE, path / HTML_FILE]
    generated = not all(p.exists() for p in expected)
    if generated:
        ctx.console.clear()
        try:
            with ctx.console.status("writing summary.json, the plots and report.html…"):
                files = build_report(path)
        except HpaExpError as exc:
            notice(ctx.console, "Report", Text(str(exc), style="red"))
            return
        expected = [files.summary_path, *files.plots, files.html_path]
    body = Text("generated now:\n" if generated else "already there:\n", style="bold")
    for file in expected:
        body.append(f"  {shown_path(file)}\n")
    body.append(f"\nopen the report in a browser: file://{(path / HTML_FILE).resolve()}\n")
    notice(ctx.console, f"Run {path.name} · files", body)


def notebook(ctx: MenuContext, run_dirs: list[Path]) -> None:
    """Print the Jupyter command for these runs (as `hpa-exp notebook` does), and start it on request."""
    from hpa_experiments.cli.analysis import notebook_command, notebook_path

    path = notebook_path(len(run_dirs) > 1)
    if not path.exists():
        notice(ctx.console, "Notebook", Text(f"{path}: notebook not found (this installation lacks its notebooks)"))
        return
    command, env = notebook_command(run_dirs, path)
    line = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(command)
    console = ctx.console
    console.clear()
    console.print("The analysis notebook on this run:\n", style="bold")
    console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print("\n(or: hpa-exp notebook " + " ".join(shlex.quote(str(p)) for p in run_dirs) + ")\n")
    if not confirm(console, "Start Jupyter Lab now (Ctrl-C in it comes back here)?"):
        return
    with cooked():
        process = subprocess.Popen(command, env={**os.environ, **env})
        while process.poll() is None:
            try:
                process.wait()
            except KeyboardInterrupt:
                continue  # Jupyter got the same Ctrl-C and asks its own question
    notice(console, "Notebook", Text(f"Jupyter Lab exited with code {process.returncode}"))


def compare_with(ctx: MenuContext, path: Path) -> None:
    from hpa_experiments.analysis.compare import comparison_table, default_output_dir, write_comparison
    from hpa_experiments.analysis.load import load_run

    others = [item for item in _listings(ctx) if item.path.resolve() != path.resolve()]
    other = pick_run(ctx, others, f"Compare {path.name} with…")
    if other is None:
        return
    ctx.console.clear()
    try:
        with ctx.console.status("comparing…"):
            files = write_comparison([load_run(path), load_run(other)], default_output_dir(ctx.data_dir))
    except HpaExpError as exc:
        notice(ctx.console, "Compare", Text(str(exc), style="red"))
        return
    where = Text(
        f"\nplot:   {shown_path(files.png)}\nreport: {shown_path(files.html)}\ndata:   {shown_path(files.json)}"
    )
    notice(ctx.console, f"{path.name} vs {other.name}", stack(comparison_table(files.comparison), where))
