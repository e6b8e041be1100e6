"""`hpa-exp suite`: run a suite of experiments (configs x repeats, with overrides), resumable."""

from __future__ import annotations

from pathlib import Path

import typer


def suite(
    suite_path: Path = typer.Argument(..., metavar="SUITE", help="Suite file (YAML).", show_default=False),
    backend: str | None = typer.Option(
        None, "--backend", "-b", help="sim or kubernetes for every run. Default: the suite's, else each config's."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Folder for the suite's folder. Default: the suite's output_dir."
    ),
    kubeconfig: str | None = typer.Option(None, help="kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config."),
    context: str | None = typer.Option(None, help="kubeconfig context. Default: the current context."),
    prometheus_url: str | None = typer.Option(
        None, help="Prometheus URL. Default: each config's, then $HPA_EXP_PROMETHEUS_URL."
    ),
    take_over: bool = typer.Option(
        False,
        "--take-over",
        help="Kubernetes: an HPA or ScaledObject of a run's manifest name that exists and differs is taken "
        "over and restored after that run, instead of refused (as `run --take-over`; suite file: take_over: true).",
    ),
    check: bool = typer.Option(False, "--check", help="Only validate the suite and list its runs."),
) -> int:
    """Run several experiments one after another and compare them.

    Every config and override is validated before the first run.  Progress is kept in
    <output>/<suite name>/suite-progress.json: running the same suite again skips the runs
    already completed.  A failed run is retried (max_retries, retry_backoff) and every failed
    attempt is listed in failures.csv.  On Kubernetes each run waits until the replicas are
    back at the HPA minimum (settle.timeout).  The suite ends with a comparison of its runs.

    Exit codes: 0 all runs completed, 1 some run failed after its retries, 2 invalid suite
    or config, 130 interrupted (run it again to resume).

    Example:  hpa-exp suite experiment-configs/suites/sim-peak-sweep.yaml
    """
    from hpa_experiments.suite.config import load_suite
    from hpa_experiments.suite.runner import SuiteOptions, SuiteRunner

    loaded = load_suite(suite_path, backend=backend, output_dir=output_dir)
    typer.echo(f"suite {loaded.config.name}: {len(loaded.runs)} run(s) -> {loaded.folder}")
    if check:
        for run in loaded.runs:
            typer.echo(f"  {run.label} on {run.backend}")
        return 0
    result = SuiteRunner(
        loaded,
        SuiteOptions(kubeconfig=kubeconfig, context=context, prometheus_url=prometheus_url, take_over=take_over),
    ).run()
    typer.echo(
        f"suite {loaded.config.name}: {len(result.completed)} completed, {len(result.failed)} failed, "
        f"{result.skipped} skipped (done before)" + (", interrupted" if result.interrupted else "")
    )
    return result.exit_code


def register(app: typer.Typer) -> None:
    app.command()(suite)
