"""`hpa-exp validate` and `hpa-exp plan`: check configs and show timelines; nothing is applied."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hpa_experiments.errors import EXIT_INVALID, ConfigError


def validate(
    configs: list[Path] = typer.Argument(..., help="Experiment config files (YAML or JSON).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file for machines."),
) -> None:
    """Check experiment configs: keys, types, durations, job manifests, the HPA manifest.

    Prints one line per file; exits 2 if any file is invalid.
    """
    from hpa_experiments.config import load_config
    from hpa_experiments.plan import build_plan

    failed = 0
    results = []
    for path in configs:
        try:
            config = load_config(path)
            plan = build_plan(config)
        except ConfigError as exc:
            failed += 1
            results.append({"file": str(path), "valid": False, "problems": exc.problems or [str(exc)]})
            if not as_json:
                typer.echo(f"✗ {exc}", err=True)
            continue
        results.append(
            {
                "file": str(path),
                "valid": True,
                "jobs": len(config.jobs),
                "mode": plan.mode,
                "total_s": plan.total,
                "peak_rps": plan.peak_rps,
                "warnings": list(plan.warnings),
            }
        )
        if as_json:
            continue
        typer.echo(f"✓ {path}: {len(config.jobs)} jobs, {plan.mode}, {plan.total:g} s, peak {plan.peak_rps:g} req/s")
        for warning in plan.warnings:
            typer.echo(f"  warning: {warning}")
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    if failed:
        raise typer.Exit(EXIT_INVALID)


def plan(
    config: Path = typer.Argument(..., help="Experiment config file (YAML or JSON).", show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON for machines."),
) -> None:
    """Show an experiment's timeline: one bar per job, load per segment, peak, cooldown, total."""
    from hpa_experiments.config import load_config
    from hpa_experiments.plan import build_plan, render_timeline

    experiment = load_config(config)
    timeline = build_plan(experiment)
    if as_json:
        typer.echo(json.dumps({"name": experiment.name, **timeline.to_json()}, indent=2))
    else:
        typer.echo(f"{experiment.name}: {experiment.description}".rstrip(": "))
        typer.echo(render_timeline(timeline))


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(plan)
