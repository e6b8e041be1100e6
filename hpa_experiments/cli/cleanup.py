"""`hpa-exp cleanup`: delete what a run left behind (found by label), restore what it took over, mark its run.json."""

from __future__ import annotations

from pathlib import Path

import typer

from hpa_experiments.cli.analysis import DATA_DIR_HELP, DEFAULT_DATA_DIR


def cleanup(
    run: str | None = typer.Argument(
        None, metavar="[RUN]", help="A run directory, or a run name under the data folder."
    ),
    all_jobs: bool = typer.Option(
        False,
        "--all",
        help="Every Job, HPA and ScaledObject labelled app.kubernetes.io/managed-by=hpa-exp in the namespace.",
    ),
    kubeconfig: str | None = typer.Option(None, help="kubeconfig file. Default: $KUBECONFIG, then ~/.kube/config."),
    context: str | None = typer.Option(None, help="kubeconfig context. Default: the current context."),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="Namespace of the Jobs. Default: the run's (or hpa-exp with --all)."
    ),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--data-dir", "-d", help=DATA_DIR_HELP),
    force: bool = typer.Option(False, help="Clean up even if the run's process still seems to be running."),
) -> None:
    """Delete the load Jobs, HPA and ScaledObject left by a run that could not clean up (killed,
    crashed), put back what it took over (--take-over), and mark the run.

    Objects are found by the label hpa-exp/run=<run id from run.json>; Jobs are deleted with
    background propagation (their pods go too); an object the run took over gets its original
    spec, labels and annotations back (kept in its annotation hpa-exp/original).  A run.json still
    saying "running" becomes "interrupted"
    (or "failed" if its last event was an error) with the reason.

    Examples:

      hpa-exp cleanup experiment-data/high-load-hpa-20261123-041655

      hpa-exp cleanup --all -n hpa-exp
    """
    from hpa_experiments.analysis.load import resolve_run_path
    from hpa_experiments.backends.kube.backend import KubeSettings
    from hpa_experiments.cleanup import cleanup as run_cleanup

    result = run_cleanup(
        resolve_run_path(run, data_dir) if run is not None else None,
        all_jobs=all_jobs,
        settings=KubeSettings(kubeconfig=kubeconfig, context=context),
        namespace=namespace,
        force=force,
        on_warning=lambda text: typer.echo(f"warning: {text}", err=True),
    )
    for line in result.lines():
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command()(cleanup)
