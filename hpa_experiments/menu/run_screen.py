"""Running an experiment from the menu: config, plan, backend (with preflight), confirm, live view."""

from __future__ import annotations

import io
from pathlib import Path

from rich.text import Text

from hpa_experiments.api import Experiment, PreparedRun
from hpa_experiments.config import ExperimentConfig
from hpa_experiments.dashboard import PACES, DashboardObserver, Pace
from hpa_experiments.errors import HpaExpError, PreflightError
from hpa_experiments.menu.context import MenuContext, shown_path
from hpa_experiments.menu.live_run import Outcome, run_with_dashboard
from hpa_experiments.menu.runs_screen import open_run
from hpa_experiments.menu.ui import ask_text, keys_line, notice, show_screen, stack
from hpa_experiments.plan import Plan, render_timeline
from hpa_experiments.rundir import RunStatus

SIMULATION, KUBERNETES, ENSEMBLE = "simulation", "kubernetes", "ensemble"


def run_flow(ctx: MenuContext, path: Path | None = None) -> None:
    """From a config to a finished (or stopped) run; returns to the caller (the home screen)."""
    path = path or choose_config(ctx)
    if path is None:
        return
    try:
        experiment = Experiment.from_file(path)
        plan = experiment.plan()
    except HpaExpError as exc:
        notice(ctx.console, f"{path.name}: not valid", Text(str(exc)))
        return
    config = experiment.config
    ctx.take_over = False  # never carried over from an earlier run
    kind = plan_screen(ctx, path, config, plan)
    if kind is None:
        return
    if kind == ENSEMBLE:
        from hpa_experiments.menu.ensemble_screen import ensemble_flow

        ensemble_flow(ctx, experiment)
        return
    observer = DashboardObserver()  # its pace is chosen on the confirm screen
    notes = io.StringIO()  # what the preflight says (warnings, what it found)
    prepared = kubernetes_preflight(ctx, experiment, observer, notes) if kind == KUBERNETES else None
    if kind == KUBERNETES and prepared is None:
        return
    pace = confirm_screen(ctx, config, plan, kind, notes.getvalue(), take_over=ctx.take_over)
    if pace is None:
        if prepared:
            prepared.close()
        return
    try:
        prepared = prepared or experiment.prepare(SIMULATION, observer=observer, handle_signals=False)
    except HpaExpError as exc:
        notice(ctx.console, "Cannot start the simulation", Text(str(exc)))
        return
    observer.pace = pace
    result_screen(ctx, run_with_dashboard(ctx.console, prepared, observer))


def choose_config(ctx: MenuContext) -> Path | None:
    paths = ctx.config_files()[:9]
    body = Text()
    for i, path in enumerate(paths, start=1):
        body.append(f"{i}", style="bold")
        body.append(f"  {shown_path(path)}\n")
    if not paths:
        body.append(f"no configs in {shown_path(ctx.configs_dir)}/\n", style="dim")
    digits = {str(i) for i in range(1, len(paths) + 1)}
    footer = stack(Text(""), keys_line([("1-9", "choose"), ("t", "type a path"), ("b", "back"), ("q", "quit")]))
    key = show_screen(
        ctx.console,
        "Run an experiment · choose a config",
        body,
        footer,
        lambda k: k in digits or k in ("t", "b", "escape"),
    )
    if key in digits:
        return paths[int(key) - 1]
    if key == "t":
        return Path(ask_text(ctx.console, "Config file", check=_existing_file))
    return None


def _existing_file(answer: str) -> str | None:
    return None if Path(answer).is_file() else f"{answer}: no such file"


def _timeline_width(ctx: MenuContext, plan: Plan) -> int:
    name_w = max([len(j.name) for j in plan.jobs] + [8])
    return max(16, min(60, ctx.console.width - name_w - 30))


def plan_screen(ctx: MenuContext, path: Path, config: ExperimentConfig, plan: Plan) -> str | None:
    """The plan, then the backend choice: 's' simulation, 'k' Kubernetes when a context exists
    ('t' toggles take-over for the Kubernetes run and shows the screen again)."""
    while True:
        key = _plan_key(ctx, path, config, plan)
        if key == "t":
            ctx.take_over = not ctx.take_over
            continue
        return {"s": SIMULATION, "k": KUBERNETES, "e": ENSEMBLE}.get(key)


def take_over_text(on: bool) -> str:
    return f"[t] take over an existing HPA/ScaledObject that differs (restored after): {'ON' if on else 'off'}"


def _plan_key(ctx: MenuContext, path: Path, config: ExperimentConfig, plan: Plan) -> str:
    # One choice per line: the three do not fit one 80-column line with a long context name.
    backends = Text("backend: ")
    backends.append("[s] simulation (digital twin)", style="bold")
    backends.append("\n         ")
    backends.append("[e] ensemble of seeds (twin)", style="bold")
    backends.append("\n         ")
    if ctx.cluster:
        backends.append(f"[k] kubernetes, context {ctx.cluster.name}", style="bold")
        backends.append("\n         ")
        backends.append(take_over_text(ctx.take_over), style="bold" if ctx.take_over else "")
    else:
        backends.append("· kubernetes: no kubeconfig context", style="dim")
    body = stack(
        Text(f"{config.name}: {config.description}".rstrip(": ")),
        Text(
            f"{len(plan.jobs)} jobs · total {plan.total:g} s · peak load {plan.peak_rps:g} req/s · "
            f"{len(plan.warnings)} warning(s)",
            style="bold",
        ),
        Text(""),
        Text(render_timeline(plan, _timeline_width(ctx, plan))),
    )
    pairs = (
        [("s", "simulate"), ("e", "ensemble")]
        + ([("k", "kubernetes"), ("t", "take over")] if ctx.cluster else [])
        + [("b", "back"), ("q", "quit")]
    )
    footer = stack(Text(""), backends, keys_line(pairs))
    allowed = {"s", "e", "b", "escape"} | ({"k", "t"} if ctx.cluster else set())
    return show_screen(ctx.console, f"Plan · {shown_path(path)}", body, footer, lambda k: k in allowed)


def kubernetes_preflight(
    ctx: MenuContext, experiment: Experiment, observer: DashboardObserver, notes: io.StringIO
) -> PreparedRun | None:
    """Connect and run the preflight (its notes go to `notes`); on problems show them and return None.
    When the only way forward is taking over an existing object, 't' turns take-over on and retries."""
    assert ctx.cluster is not None
    while True:
        ctx.console.clear()
        notes.seek(0)
        notes.truncate()
        try:
            with ctx.console.status(f"preflight checks against {ctx.cluster.name}…"):
                return experiment.prepare(
                    KUBERNETES,
                    kubeconfig=ctx.cluster.kubeconfig,
                    context=ctx.cluster.name,
                    observer=observer,
                    handle_signals=False,
                    preflight_output=notes,
                    take_over=ctx.take_over,
                )
        except PreflightError as exc:
            if not _refused(ctx, exc, notes.getvalue()):
                return None
            ctx.take_over = True
        except HpaExpError as exc:
            notice(ctx.console, "Cannot use the cluster", stack(Text(str(exc)), Text(notes.getvalue())))
            return None


def _refused(ctx: MenuContext, exc: PreflightError, notes: str) -> bool:
    """Show the problems; True when the person asks to take over the existing object and retry."""
    from hpa_experiments.backends.kube.claim import REFUSED_EXISTING  # the kubernetes client: not at menu start

    body = stack(Text("\n".join(f"✗ {p}" for p in exc.problems), style="red"), Text(notes))
    if ctx.take_over or not any(REFUSED_EXISTING in p for p in exc.problems):
        notice(ctx.console, "Preflight failed: nothing was applied", body)
        return False
    hint = Text(
        "In the menu, --take-over is the toggle [t] (also on the plan screen): the run replaces the "
        "object's spec with the manifest and restores the original at the end, also when stopped.",
        style="bold",
    )
    footer = stack(Text(""), keys_line([("t", "take over and retry"), ("b", "back"), ("q", "quit")]))
    choices = {"t", "b", "enter", "escape"}
    key = show_screen(
        ctx.console, "Preflight failed: nothing was applied", stack(body, hint), footer, lambda k: k in choices
    )
    return key == "t"


def confirm_screen(
    ctx: MenuContext, config: ExperimentConfig, plan: Plan, kind: str, notes: str = "", take_over: bool = False
) -> Pace | None:
    """Start, change the pace (simulation), or go back."""
    pace_index = 0
    while True:
        pace = PACES[pace_index]
        body = Text()
        body.append(f"Run {config.name} on {kind}\n", style="bold")
        body.append(f"{len(plan.jobs)} jobs · {plan.total:g} s of experiment time · peak {plan.peak_rps:g} req/s\n")
        body.append(f"runs are written under {shown_path(config.output.base_dir)}/\n")
        if kind == SIMULATION:
            body.append(f"pace: {pace.describe(plan.total)}\n")
        else:
            body.append(f"this creates load Jobs in namespace {config.namespace}; Ctrl-C stops and deletes them\n")
            if take_over:
                body.append("take over: ON (an existing HPA/ScaledObject that differs is restored at the end)\n")
            body.append(notes, style="dim")
        pairs = (
            [("enter", "start")]
            + ([("p", "change pace")] if kind == SIMULATION else [])
            + [("b", "back"), ("q", "quit")]
        )
        key = show_screen(
            ctx.console,
            "Confirm",
            body,
            stack(Text(""), keys_line(pairs)),
            lambda k: k in ("enter", "y", "p", "b", "escape"),
        )
        if key == "p" and kind == SIMULATION:
            pace_index = (pace_index + 1) % len(PACES)
        elif key in ("enter", "y"):
            return pace
        elif key in ("b", "escape"):
            return None


def outcome_text(outcome: Outcome) -> Text:
    """One line saying how the run ended and where it is."""
    result = outcome.result
    if result is None:
        return Text(f"the run could not start: {outcome.error}", style="bold red")
    where = shown_path(result.run_dir)
    if result.status == RunStatus.COMPLETED:
        return Text(f"completed: run saved in {where}", style="bold green")
    if result.status == RunStatus.INTERRUPTED:
        if result.leftover_jobs:
            return Text(
                f"stopped, but Jobs are still present: {', '.join(result.leftover_jobs)}; partial run kept in {where}",
                style="bold red",
            )
        deleted = f"{outcome.jobs_deleted} job(s) deleted" if outcome.jobs_deleted else "no job was running"
        return Text(f"stopped: {deleted}, partial run kept in {where}", style="bold yellow")
    return Text(f"{result.status}: {result.reason or 'see events.csv'}; run kept in {where}", style="bold red")


def result_screen(ctx: MenuContext, outcome: Outcome) -> None:
    has_run = outcome.result is not None
    pairs = ([("o", "open its summary")] if has_run else []) + [("b", "home"), ("q", "quit")]
    body = stack(outcome_text(outcome), *(Text(f"warning: {w}", style="yellow") for w in outcome.warnings))
    key = show_screen(
        ctx.console,
        "Run finished",
        body,
        stack(Text(""), keys_line(pairs)),
        lambda k: k in ("b", "enter", "escape") or (k == "o" and has_run),
    )
    if key == "o" and outcome.result is not None:
        open_run(ctx, outcome.result.run_dir)
