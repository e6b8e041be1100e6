"""`hpa-exp init`: a starter folder for experiments in a user's own repository."""

from __future__ import annotations

from pathlib import Path

import typer


def init(
    folder: Path = typer.Argument(Path("hpa-exp-experiments"), help="New (or empty) folder to write."),
) -> None:
    """Write a starter folder: a commented experiment config, the HPA variants, the load Job
    template and the runner's RBAC, laid out so the config validates as written.

    Example:  hpa-exp init perf/autoscaling && hpa-exp validate perf/autoscaling/experiment-configs/*.yaml
    """
    from hpa_experiments.config import load_config
    from hpa_experiments.starter import STARTER_CONFIG, write_starter

    written = write_starter(folder)
    load_config(folder / "experiment-configs" / STARTER_CONFIG)  # the promise: valid as written
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"next: hpa-exp plan {folder / 'experiment-configs' / STARTER_CONFIG}")


def register(app: typer.Typer) -> None:
    app.command()(init)
