"""`hpa-exp run`: run an experiment on the digital twin or on a Kubernetes cluster."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from hpa_experiments.api import Experiment
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
    seed: int | None = typer.Option(None, help="Simulation seed (same config + seed = identical metrics.csv)."),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Folder for run directories. Default: the config's output.base_dir."
    ),
    kubeconfig: str | None = typer.Option(None, help="kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config."),
    context: str | None = typer.Option(None, help="kubeconfig context. Default: the current context."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Override the config's namespace."),
    prometheus_url: str | None = typer.Option(
        None, help="Prometheus (or thanos-querier) URL. Default: config, then $HPA_EXP_PROMETHEUS_URL."
    ),
    keep_jobs: bool = typer.Option(False, help="Leave the load Jobs in the cluster at the end (debugging)."),
    take_over: bool = typer.Option(
        False,
        "--take-over",
        help="An HPA/ScaledObject of the manifest's name that exists and differs: replace its spec for the run "
        "and restore it at the end (default: refuse, exit 3, with the diff).",
    ),
    dry_run: bool = typer.Option(False, help="Print the rendered Job manifests and the timeline; apply nothing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors and the final line."),
    live: bool | None = typer.Option(
        None, "--live/--plain", help="Live dashboard or plain lines. Default: live on a terminal."
    ),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Twin only: an ensemble of N seeds in parallel, with each KPI's median and spread."
    ),
    processes: int | None = typer.Option(None, "--processes", help="Parallel seeds of --seeds. Default: every core."),
    tag: list[str] = typer.Option(
        [], "--tag", "-t", metavar="KEY=VALUE", help="Label the run (repeatable); shown by runs and compare."
    ),
    fail_on_slo: bool = typer.Option(
        False,
        "--fail-on-slo",
        help="Exit 4 when a completed run misses a gate of the config's slo.gates (or a gate has no data).",
    ),
) -> int:
    """Run an experiment: start each load Job on time, sample the HPA and Prometheus on a fixed grid.

    Writes <output>/<name>-<UTC yyyymmdd-HHMMSS>/ with run.json, metrics.csv, phases.csv,
    events.csv and a copy of the config.  Nothing is applied before the whole config has been
    validated and (on Kubernetes) the preflight checks have passed.

    Objects the run creates carry the labels app.kubernetes.io/managed-by=hpa-exp and
    hpa-exp/run=<run id> and the annotation hpa-exp/run-id; an HPA or ScaledObject that exists
    already is used as is when it equals the manifest, else refused (exit 3) unless --take-over.

    Exit codes: 0 completed, 1 failed (a Job failed, the backend broke, the disk is full, the
    HPA, Deployment or a Job disappeared mid-run, or Jobs were left behind, also after Ctrl-C),
    2 invalid config or arguments, 3 preflight failed, 4 completed but an SLO gate missed (only
    with --fail-on-slo), 130 interrupted (cleanup finished, partial run kept).  Ctrl-C a second
    time stops waiting for the cleanup: what is left is listed (hpa-exp cleanup deletes it).

    Examples:

      hpa-exp run experiment-configs/high-load-hpa.yaml --backend sim

      hpa-exp run my.yaml --backend kubernetes --context kind-hpa-exp -n hpa-exp \\
          --prometheus-url http://localhost:9090
    """
    # Imported here, not at the top, so that every other command starts faster.
    from hpa_experiments.api import Experiment
    from hpa_experiments.console import LiveConsole, PlainConsole
    from hpa_experiments.errors import EXIT_INTERRUPTED

    experiment = Experiment.from_file(config_path).with_overrides(backend, seed, namespace, parse_tags(tag))
    if dry_run:
        _print_dry_run(experiment.config, experiment.plan())
        return 0
    if seeds is not None or (experiment.config.simulation.seeds and experiment.config.backend == "simulation"):
        return _run_ensemble(experiment, seeds, output_dir, processes, quiet)
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
        take_over=take_over,
    )
    for warning in prepared.plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    result = prepared.run()
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if result.leftover_jobs:
        typer.echo(
            f"error: Jobs left in the cluster: {', '.join(result.leftover_jobs)}; "
            f"delete them with: hpa-exp cleanup {result.run_dir}",
            err=True,
        )
    if result.summary is None and result.exit_code == EXIT_INTERRUPTED:  # the summary was interrupted
        return result.exit_code
    if result.stopped_waiting:  # do not wait for calls still in flight either (files are complete)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(result.exit_code)
    if result.summary is not None and not quiet:
        _print_headline(result.summary, result.run_dir)
    return _slo_exit_code(result.exit_code, result.summary, fail_on_slo)


def _run_ensemble(
    experiment: Experiment, seeds: int | None, output_dir: Path | None, processes: int | None, quiet: bool
) -> int:
    from hpa_experiments.analysis.ensemble_report import load_ensemble, spread_table, write_ensemble_page
    from hpa_experiments.cli.analysis import output_console
    from hpa_experiments.ensemble import SeedRun

    def progress(run: SeedRun, done: int, total: int) -> None:
        if not quiet:
            where = run.run_dir.name if run.run_dir else run.reason
            typer.echo(f"[{done}/{total}] seed {run.seed}: {run.status} ({where})")

    result = experiment.run_ensemble(seeds, output_dir, processes=processes, on_seed=progress)
    ensemble = load_ensemble(result.directory)
    _, page = write_ensemble_page([ensemble], result.directory, f"Ensemble {ensemble.summary['ensemble']}")
    for run in result.runs:
        if run.exit_code:
            typer.echo(f"seed {run.seed}: {run.status}: {run.reason}", err=True)
    if not quiet:
        output_console().print(spread_table([ensemble]))
    typer.echo(f"ensemble: {result.directory}\nreport:   {page}")
    return result.exit_code


def parse_tags(given: list[str]) -> dict[str, str]:
    """`--tag key=value` options as a dict; a malformed one is a usage error (exit 2)."""
    from hpa_experiments.errors import UsageError

    tags = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r}: give KEY=VALUE, e.g. --tag variant=queue-5")
        tags[key] = value
    return tags


def _slo_exit_code(exit_code: int, summary: dict[str, Any] | None, fail_on_slo: bool) -> int:
    """Print one line per gate; with --fail-on-slo a completed run that missed one exits 4."""
    from hpa_experiments.analysis.slo_gates import gate_results
    from hpa_experiments.errors import EXIT_OK, EXIT_SLO_MISSED

    block = (summary or {}).get("slo_gates")
    for gate in gate_results(block):
        typer.echo(f"SLO gate {gate.line()}", err=not gate.passed)
    if not fail_on_slo or exit_code != EXIT_OK:
        return exit_code
    if summary is None:
        typer.echo("SLO gates: not checked, the KPIs could not be computed", err=True)
        return EXIT_SLO_MISSED
    if block is None:
        typer.echo("warning: --fail-on-slo, but the config sets no slo.gates: nothing to check", err=True)
        return exit_code
    return exit_code if block["passed"] else EXIT_SLO_MISSED


def _print_headline(summary: dict[str, Any], run_dir: Path) -> None:
    from hpa_experiments.analysis import headline
    from hpa_experiments.analysis.reference_points import headline_sentences

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

    typer.echo(" · ".join(headline_sentences(summary)))
    typer.echo(
        f"peak replicas {show(h['peak_replicas'], '')} · GPU-hours {show(h['gpu_hours'], '')}"
        f" · over the run (histograms): TTFT p90 {show(h['ttft_p90_ms'], ' ms')}"
        f" · ITL p90 {show(h['itl_p90_ms'], ' ms')}"
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
