"""Analysis commands: `runs`, `report`, `compare`, `import-legacy`, `notebook`.

The work is done by `hpa_experiments.analysis` and `hpa_experiments.legacy`; these commands
only parse arguments and print.  Heavy imports (pandas, matplotlib) happen inside the
commands so that the rest of the command line starts fast.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hpa_experiments.errors import UsageError

if TYPE_CHECKING:
    from rich.console import Console

DATA_DIR_HELP = "Folder holding the run directories."
DEFAULT_DATA_DIR = Path("experiment-data")
ANALYZE_NOTEBOOK = "analyze-hpa-experiment.ipynb"
COMPARE_NOTEBOOK = "compare-runs.ipynb"
NOTEBOOK_HTML = "notebook.html"  # `notebook --execute` writes it into the run directory
# Read by hpa_experiments.analysis.notebook (kept here as text to avoid importing pandas at startup).
RUN_DIR_ENV = "HPA_EXP_RUN_DIR"
RUN_DIRS_ENV = "HPA_EXP_RUN_DIRS"


PIPE_WIDTH = 100_000  # piped output: lines as long as their content, nothing wrapped or cut


def output_console() -> Console:
    """Rich console: the terminal's width on a terminal (tables wrap cells, never cut them); unbounded
    when piped, so a file or a pipeline gets whole lines."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=PIPE_WIDTH)


def _data_dir_option() -> Path:
    return typer.Option(DEFAULT_DATA_DIR, "--data-dir", "-d", help=DATA_DIR_HELP)


def _json_option() -> bool:
    return typer.Option(False, "--json", help="Print JSON for machines instead of tables.")


def runs(data_dir: Path = _data_dir_option(), as_json: bool = _json_option()) -> None:
    """List the runs under the data folder, newest first (by start time in run.json).

    A run still marked "running" whose process is gone, or whose metrics stopped long ago,
    shows as "incomplete".
    """
    from hpa_experiments.analysis.runs import list_runs, runs_json, runs_table

    if not data_dir.is_dir():
        raise UsageError(f"{data_dir}: no such data folder (use --data-dir)")
    listings = list_runs(data_dir)
    if as_json:
        typer.echo(json.dumps(runs_json(listings), indent=2, default=str))
        return
    console = output_console()
    if not listings:
        console.print(f"no runs under {data_dir}")
        return
    console.print(runs_table(listings, data_dir))
    for item in listings:
        if item.problem:
            console.print(f"[yellow]{item.path.name}: {item.problem}[/]")


def report(
    run: str = typer.Argument(..., metavar="RUN", help="A run directory, or a run name under the data folder."),
    data_dir: Path = _data_dir_option(),
    as_json: bool = _json_option(),
) -> None:
    """Summarise one run: terminal table, summary.json, plots/overview.png and report.html.

    With --json the files are written as usual and summary.json's content is printed.

    Example:  hpa-exp report experiment-data/high-load-hpa-20261123-041655
    """
    from hpa_experiments.analysis.ensemble_report import is_ensemble, load_ensemble, spread_table, write_ensemble_page
    from hpa_experiments.analysis.load import load_run, resolve_run_path
    from hpa_experiments.analysis.report import build_report, print_report

    path = resolve_run_path(run, data_dir)
    if is_ensemble(path):  # an ensemble folder (hpa-exp run --seeds N)
        ensemble = load_ensemble(path)
        if as_json:
            typer.echo(json.dumps(ensemble.summary, indent=2))
            return
        png, page = write_ensemble_page([ensemble], path, f"Ensemble {ensemble.summary['ensemble']}")
        output_console().print(spread_table([ensemble]))
        output_console().print(f"plot:    {png}\nreport:  {page}")
        return
    loaded = load_run(path)
    files = build_report(loaded)
    for warning in dict.fromkeys(loaded.warnings):  # the files' problems, once each
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json.dumps(files.summary, indent=2, default=str))
        return
    console = output_console()
    print_report(files.summary, console)
    console.print(f"summary: {files.summary_path}")
    for plot in files.plots:
        console.print(f"plot:    {plot}")
    console.print(f"report:  {files.html_path}")


def compare(
    run_refs: list[str] = typer.Argument(..., metavar="RUN_A RUN_B [...]", help="Two or more runs."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Folder for compare.png/.html/.json. Default: <data>/comparisons/compare-<UTC>."
    ),
    data_dir: Path = _data_dir_option(),
) -> None:
    """Compare runs: overlay plots aligned on experiment time and KPI deltas vs the first run."""
    from hpa_experiments.analysis.compare import comparison_table, default_output_dir, write_comparison
    from hpa_experiments.analysis.ensemble_report import is_ensemble, load_ensemble, spread_table, write_ensemble_page
    from hpa_experiments.analysis.load import load_run, resolve_run_path

    if len(run_refs) < 2:
        raise UsageError("compare needs at least two runs")
    paths = [resolve_run_path(ref, data_dir) for ref in run_refs]
    ensembles = [is_ensemble(p) for p in paths]
    if any(ensembles):
        if not all(ensembles):
            raise UsageError("compare runs with runs, or ensembles with ensembles (an ensemble's runs are in it)")
        target = output or default_output_dir(data_dir)
        target.mkdir(parents=True, exist_ok=True)
        loaded_ensembles = [load_ensemble(p) for p in paths]
        png, page = write_ensemble_page(loaded_ensembles, target, "Ensemble comparison")
        output_console().print(spread_table(loaded_ensembles))
        output_console().print(f"plot:   {png}\nreport: {page}")
        return
    loaded = [load_run(p) for p in paths]
    files = write_comparison(loaded, output or default_output_dir(data_dir))
    for warning in dict.fromkeys(w for run in loaded for w in run.warnings):
        typer.echo(f"warning: {warning}", err=True)
    console = output_console()
    console.print(comparison_table(files.comparison))
    console.print(f"plot:   {files.png}\nreport: {files.html}\ndata:   {files.json}")


def import_legacy(
    sources: list[Path] = typer.Argument(
        ..., metavar="DIR...", help="Run folder(s) of the original system (metrics.csv, scaling-events.log, ...)."
    ),
    tz: str | None = typer.Option(
        None, "--tz", help="Time zone of the original local timestamps (e.g. Europe/Rome); converts to UTC."
    ),
    output_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--output-dir", "-o", help="Data folder to import into."),
) -> None:
    """Import runs of the original shell-based system as hpa-exp run directories.

    Repairs the known defects: milli-unit queue values (60250 -> 60.25), never-collected
    columns (ttft_ms, itl_ms, request_rate_per_min, active_jobs) become empty instead of 0.
    Timestamps stay local time (zone recorded as unknown) unless --tz is given.
    """
    from hpa_experiments.legacy import import_legacy as run_import

    for source in sources:
        result = run_import(source, output_dir, tz=tz)
        fixed = f", {len(result.corrections)} milli-unit value(s) corrected" if result.corrections else ""
        typer.echo(f"imported {source} -> {result.directory} ({result.rows} rows{fixed})")
    typer.echo("next: hpa-exp report <run directory>")


def notebook_path(several_runs: bool) -> Path:
    """The analysis notebook for one run, the comparison notebook for several (as shipped)."""
    from hpa_experiments.kit import kit_dir

    return kit_dir("notebooks") / (COMPARE_NOTEBOOK if several_runs else ANALYZE_NOTEBOOK)


def notebook_command(run_dirs: list[Path], notebook: Path) -> tuple[list[str], dict[str, str]]:
    """The `jupyter lab` argument list and the environment variables for these runs.

    Jupyter serves the repository folder (the notebook must lie inside its root), and as root
    (containers) it refuses to start without --allow-root.
    """
    if len(run_dirs) == 1:
        env = {RUN_DIR_ENV: str(run_dirs[0].resolve())}
    elif run_dirs:
        env = {RUN_DIRS_ENV: os.pathsep.join(str(p.resolve()) for p in run_dirs)}
    else:
        env = {}
    command = [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={notebook.parent.parent}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    return [*command, str(notebook)], env


def notebook(
    run_refs: list[str] = typer.Argument(
        None, metavar="[RUN...]", help="One run (analysis notebook) or several (comparison). Default: newest."
    ),
    data_dir: Path = _data_dir_option(),
    print_only: bool = typer.Option(False, "--print-only", help="Print the command instead of starting Jupyter."),
    execute: bool = typer.Option(
        False,
        "--execute",
        help="Run the notebook headless and save it as HTML (one run: <run>/notebook.html; several: --output).",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="HTML file for --execute."),
) -> None:
    """Open the analysis notebook in Jupyter Lab on a run (or the comparison notebook on several).

    With --execute nothing is opened: the notebook runs headless and is written as a static page.
    """
    from hpa_experiments.analysis.load import newest_run_path, resolve_run_path

    refs = run_refs or []
    run_dirs = [resolve_run_path(ref, data_dir) for ref in refs] or [newest_run_path(data_dir)]
    path = notebook_path(len(run_dirs) > 1)
    if not path.exists():
        raise UsageError(f"{path}: notebook not found (this installation of hpa-exp lacks its notebooks)")
    command, env = notebook_command(run_dirs, path)
    if execute:
        from hpa_experiments.analysis.notebook_render import execute_to_html

        if output is None and len(run_dirs) > 1:
            raise UsageError("--execute on several runs needs --output FILE.html")
        target = output or run_dirs[0] / NOTEBOOK_HTML
        typer.echo(f"executing {path.name} on {', '.join(p.name for p in run_dirs)} ...")
        typer.echo(f"notebook page: {execute_to_html(path, env, target)}")
        return
    if not print_only and importlib.util.find_spec("jupyterlab") is None:
        raise UsageError("Jupyter Lab is not installed: pip install 'hpa-experiments[notebooks]' (or jupyterlab)")
    if print_only:
        typer.echo(" ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + " " + shlex.join(command))
        return
    process = subprocess.Popen(command, env={**os.environ, **env})
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue  # Jupyter got the same Ctrl-C and handles its own shutdown
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
    app.command("report")(report)
    app.command("compare")(compare)
    app.command("import-legacy")(import_legacy)
    app.command("notebook")(notebook)
