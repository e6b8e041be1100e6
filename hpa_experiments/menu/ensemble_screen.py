"""An ensemble from the menu: N seeds of the experiment on the twin in parallel processes, then
each KPI's median and p10/p90 and the ensemble page with the replica bands (as `run --seeds N`)."""

from __future__ import annotations

from rich.text import Text

from hpa_experiments.api import Experiment
from hpa_experiments.ensemble import MAX_SEEDS, SeedRun
from hpa_experiments.errors import HpaExpError
from hpa_experiments.menu.context import MenuContext, shown_path
from hpa_experiments.menu.ui import ask_text, notice, stack

DEFAULT_SEEDS = 10


def _seed_count(answer: str) -> str | None:
    if not answer.isdigit() or not 2 <= int(answer) <= MAX_SEEDS:
        return f"a whole number from 2 to {MAX_SEEDS}"
    return None


def ensemble_flow(ctx: MenuContext, experiment: Experiment) -> None:
    config = experiment.config
    ctx.console.clear()
    default = str(config.simulation.seeds or DEFAULT_SEEDS)
    count = int(ask_text(ctx.console, f"Seeds (from {config.simulation.seed})", default, _seed_count))
    done: list[SeedRun] = []
    try:
        with ctx.console.status(f"ensemble of {count} seeds on the twin…") as status:

            def progress(run: SeedRun, finished: int, total: int) -> None:
                done.append(run)
                status.update(f"ensemble: {finished}/{total} seeds done (seed {run.seed}: {run.status})")

            result = experiment.with_overrides("sim").run_ensemble(count, on_seed=progress)
            from hpa_experiments.analysis.ensemble_report import load_ensemble, spread_table, write_ensemble_page

            ensemble = load_ensemble(result.directory)
            _, page = write_ensemble_page([ensemble], result.directory, f"Ensemble {ensemble.summary['ensemble']}")
    except HpaExpError as exc:
        notice(ctx.console, "The ensemble could not run", Text(str(exc)))
        return
    failed = [f"seed {r.seed}: {r.status}: {r.reason}" for r in result.runs if r.exit_code]
    body = stack(
        Text(f"{ensemble.summary['completed']} of {count} seeds completed", style="bold"),
        *(Text(line, style="red") for line in failed),
        spread_table([ensemble]),
        Text(f"ensemble: {shown_path(result.directory)}\nreport (replica bands): {shown_path(page)}"),
    )
    notice(ctx.console, "Ensemble finished", body, back_label="home")
