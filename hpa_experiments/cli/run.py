"""`hpa-exp run`: run an experiment on the digital twin or on a Kubernetes cluster."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hpa_experiments.errors import UsageError

if TYPE_CHECKING:
    from hpa_experiments.config import ExperimentConfig
    from hpa_experiments.plan import Plan


def run(
    config_path: Path = typer.Argument(
        ..., metavar="CONFIG", help="Experiment config file (YAML).", show_default=False
    ),
    backend: str | None = typer.Option(
        None,
        "--backend",
        "-b",
        help="sim (the digital twin, no cluster) or kubernetes. Default: the config's.",
    ),
    seed: int | None = typer.Option(
        None, help="Simulation seed (same config + seed = identical metrics.csv)."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Folder for run directories. Default: the config's output.base_dir."
    ),
    kubeconfig: str | None = typer.Option(
        None, help="kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config."
    ),
    context: str | None = typer.Option(None, help="kubeconfig context. Default: the current context."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Override the config's namespace."),
    prometheus_url: str | None = typer.Option(
        None, help="Prometheus (or thanos-querier) URL. Default: config, then $HPA_EXP_PROMETHEUS_URL."
    ),
    keep_jobs: bool = typer.Option(False, help="Leave the load Jobs in the cluster at the end (debugging)."),
    dry_run: bool = typer.Option(
        False, help="Print the rendered Job manifests and the timeline; apply nothing."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the final line."),
    live: bool | None = typer.Option(
        None, "--live/--plain", help="Live dashboard or plain lines. Default: live on a terminal."
    ),
) -> int:
    """Run an experiment: start each load Job on time, sample the HPA and Prometheus on a fixed grid.

    Writes <output>/<name>-<UTC yyyymmdd-HHMMSS>/ with run.json, metrics.csv, phases.csv,
    events.csv and a copy of the config.  Nothing is applied before the whole config has been
    validated and (on Kubernetes) the preflight checks have passed.

    Exit codes: 0 completed, 1 failed (a Job failed, the backend broke), 2 invalid config or
    arguments, 3 preflight failed, 130 interrupted (Jobs cleaned up, partial run kept).

    Examples:

      hpa-exp run experiment-configs/high-load-hpa.yaml --backend sim

      hpa-exp run my.yaml --backend kubernetes --context kind-hpa-exp -n hpa-exp \\
          --prometheus-url http://localhost:9090
    """
    # Imported here, not at the top, so that every other command starts faster.
    from hpa_experiments.backends.factory import BackendOptions, make_backend, normalize_backend
    from hpa_experiments.config import K8S_NAME, load_config
    from hpa_experiments.console import LiveConsole, PlainConsole
    from hpa_experiments.plan import build_plan
    from hpa_experiments.runner import Runner
    from hpa_experiments.workloads import new_run_id

    config = load_config(config_path)
    if namespace:
        if not K8S_NAME.match(namespace) or len(namespace) > 63:
            raise UsageError(f"--namespace {namespace!r}: must be a Kubernetes name (lower-case letters, digits, '-')")
        config.namespace = namespace
    chosen = normalize_backend(backend or config.backend)
    if seed is not None:
        config.simulation.seed = seed
    plan = build_plan(config)
    if dry_run:
        _print_dry_run(config, plan)
        return 0
    _check_output_folder(output_dir or config.output.base_dir)
    options = BackendOptions(
        kubeconfig=kubeconfig, context=context, prometheus_url=prometheus_url, output=sys.stderr
    )
    run_id = new_run_id(time.time())
    backend_impl, metric_names = make_backend(chosen, config, plan, run_id, options)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    use_live = sys.stdout.isatty() if live is None else live
    observer = PlainConsole(quiet=quiet) if quiet or not use_live else LiveConsole()
    runner = Runner(
        config,
        plan,
        backend_impl,
        base_dir=output_dir,
        metric_names=metric_names,
        keep_jobs=keep_jobs,
        observer=observer,
        run_id=run_id,
    )
    result = runner.run()
    _summarize(result.run_dir, quiet)
    return result.exit_code


def _summarize(run_dir: Path, quiet: bool) -> None:
    """Write summary.json and print the headline KPIs; a problem here never changes the exit code."""
    from hpa_experiments.analysis import headline, load_run
    from hpa_experiments.analysis.kpis import write_summary

    try:
        summary, _ = write_summary(load_run(run_dir))
    except Exception as exc:  # the run itself is complete; analysis can be redone with `report`
        typer.echo(f"warning: could not compute the KPIs ({exc}); try: hpa-exp report {run_dir}", err=True)
        return
    if quiet:
        return
    h = headline(summary)

    def show(value: object, unit: str) -> str:
        if value is None:
            return "no data"
        if isinstance(value, float) and value.is_integer():
            return f"{int(value)}{unit}"
        if isinstance(value, float):
            digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 3
            return f"{value:.{digits}f}{unit}"
        return f"{value}{unit}"

    typer.echo(
        f"peak replicas {show(h['peak_replicas'], '')} · first scale-up after {show(h['first_scale_up_s'], ' s')}"
        f" · scale-down done {show(h['scale_down_s'], ' s')} after load · GPU-hours {show(h['gpu_hours'], '')}"
        f" · TTFT p90 {show(h['ttft_p90_ms'], ' ms')} · ITL p90 {show(h['itl_p90_ms'], ' ms')}"
    )
    typer.echo(f"plots and HTML report: hpa-exp report {run_dir}")


def _check_output_folder(folder: Path) -> None:
    """Fail before anything is applied if run directories cannot be made in `folder` (it is created
    only when the run starts)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"output folder {folder}: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {folder}: {existing} is not writable")


def _print_dry_run(config: ExperimentConfig, plan: Plan) -> None:
    import yaml

    from hpa_experiments.plan import render_timeline
    from hpa_experiments.workloads import render_job

    run_id = "dry-run"
    for job in plan.jobs:
        typer.echo(f"# Job {job.name}: starts at {job.start:g} s, deleted at {job.end:g} s")
        typer.echo("---")
        typer.echo(yaml.safe_dump(render_job(config, job, run_id), sort_keys=False).rstrip())
    typer.echo("")
    typer.echo(render_timeline(plan))
    typer.echo("\n(dry run: nothing was applied)")


def register(app: typer.Typer) -> None:
    app.command()(run)
