"""`hpa-exp run`: run an experiment on the digital twin or on a Kubernetes cluster."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from hpa_experiments.config import ExperimentConfig
    from hpa_experiments.plan import Plan


def run(
    config_path: Path = typer.Argument(
        ..., metavar="CONFIG", help="Experiment config file (YAML or JSON).", show_default=False
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
    from hpa_experiments.api import Experiment
    from hpa_experiments.console import LiveConsole, PlainConsole

    experiment = Experiment.from_file(config_path).with_overrides(backend, seed, namespace)
    if dry_run:
        _print_dry_run(experiment.config, experiment.plan())
        return 0
    use_live = sys.stdout.isatty() if live is None else live
    observer = PlainConsole(quiet=quiet) if quiet or not use_live else LiveConsole()
    prepared = experiment.prepare(
        output_dir=output_dir,
        kubeconfig=kubeconfig,
        context=context,
        prometheus_url=prometheus_url,
        keep_jobs=keep_jobs,
        observer=observer,
        preflight_output=sys.stderr,
    )
    for warning in prepared.plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    result = prepared.run()
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.summary is not None and not quiet:
        _print_headline(result.summary, result.run_dir)
    return result.exit_code


def _print_headline(summary: dict[str, Any], run_dir: Path) -> None:
    from hpa_experiments.analysis import headline

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
    kwh = h["energy_kwh"]
    energy = "no data" if kwh is None else f"{kwh:.3g} kWh" if kwh < 1000 else f"{kwh:,.0f} kWh"
    cost = "" if h["cost"] is None else f" · cost {show(h['cost'], ' ' + str(h['currency']))}"
    typer.echo(f"GPU energy {energy}{cost}")
    for alert in h["alerts"]:
        typer.echo(f"warning: {alert}", err=True)
    typer.echo(f"plots and HTML report: hpa-exp report {run_dir}")


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
