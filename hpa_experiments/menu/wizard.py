"""A new experiment from a shipped one, by answering questions; written, then validated at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.text import Text

from hpa_experiments.config import K8S_NAME, MAX_JOB_NAME, RUN_NAME, ExperimentConfig, load_config
from hpa_experiments.durations import parse_duration
from hpa_experiments.errors import HpaExpError
from hpa_experiments.menu.config_writer import Answers, JobAnswer, render_config
from hpa_experiments.menu.context import MenuContext, shown_path
from hpa_experiments.menu.run_screen import run_flow
from hpa_experiments.menu.ui import ask_text, confirm, keys_line, notice, show_screen, stack
from hpa_experiments.plan import build_plan, render_timeline

MAX_JOBS = 9


def _check_run_name(answer: str) -> str | None:
    if RUN_NAME.match(answer) and len(answer) <= 80:
        return None
    return "letters, digits, '.', '_' or '-' (it names the run folder and the file)"


def _job_name_check(taken: list[str]) -> Callable[[str], str | None]:
    def check(answer: str) -> str | None:
        if not (K8S_NAME.match(answer) and len(answer) <= MAX_JOB_NAME):
            return f"a Kubernetes name: lower-case letters, digits and '-', at most {MAX_JOB_NAME} characters"
        return f"'{answer}' is already the name of an earlier job" if answer in taken else None

    return check


def _seconds(minimum: float, allow_equal: bool) -> Callable[[str], str | None]:
    def check(answer: str) -> str | None:
        try:
            value = parse_duration(answer)
        except ValueError as exc:
            return str(exc)
        if value < minimum or (value == minimum and not allow_equal):
            return f"must be {'at least' if allow_equal else 'more than'} {minimum:g} s"
        return None

    return check


def _positive_number(answer: str) -> str | None:
    try:
        return None if float(answer) > 0 else "must be more than 0"
    except ValueError:
        return f"must be a number (got {answer!r})"


def _job_count(answer: str) -> str | None:
    return None if answer.isdigit() and 1 <= int(answer) <= MAX_JOBS else f"a number from 1 to {MAX_JOBS}"


def _g(value: float) -> str:
    return f"{value:g}"


def choose_base(ctx: MenuContext) -> ExperimentConfig | None:
    paths = ctx.config_files()[:9]
    body = Text("Start from which experiment? Its settings are copied; you choose name, rates and times.\n\n")
    for i, path in enumerate(paths, start=1):
        body.append(f"{i}", style="bold")
        body.append(f"  {path.name}\n")
    digits = {str(i) for i in range(1, len(paths) + 1)}
    footer = stack(Text(""), keys_line([("1-9", "choose"), ("b", "back"), ("q", "quit")]))
    key = show_screen(ctx.console, "New experiment · base", body, footer, lambda k: k in digits or k in ("b", "escape"))
    if key not in digits:
        return None
    try:
        return load_config(paths[int(key) - 1])
    except HpaExpError as exc:
        notice(ctx.console, "That config is not valid", Text(str(exc)))
        return None


def ask_answers(ctx: MenuContext, base: ExperimentConfig) -> Answers:
    console = ctx.console
    console.clear()
    console.print(
        f"New experiment from {base.name} · Enter keeps the value in [brackets] · q quits\n", style="bold", markup=False
    )
    name = ask_text(console, "Name", f"{base.name}-custom", _check_run_name)
    description = ask_text(console, "Description", base.description or name)
    count = int(ask_text(console, "Number of load jobs", str(len(base.jobs)), _job_count))
    console.print(
        "Durations and delays: seconds, or e.g. 90s, 6m.  A start delay > 0 on any job makes the jobs "
        "run in parallel (each starts at its delay); all 0 means one after another.",
        style="dim",
    )
    jobs: list[JobAnswer] = []
    for i in range(count):
        template = base.jobs[min(i, len(base.jobs) - 1)]
        default_name = template.name if i < len(base.jobs) else f"job-{i + 1}"
        console.print(f"job {i + 1}", style="bold")
        job_name = ask_text(console, "  name", default_name, _job_name_check([j.name for j in jobs]))
        rate = float(ask_text(console, "  rate (requests per second)", _g(template.rate or 10), _positive_number))
        duration = parse_duration(ask_text(console, "  duration", _g(template.duration), _seconds(0, False)))
        delay = parse_duration(ask_text(console, "  start delay", _g(template.start_delay), _seconds(0, True)))
        jobs.append(JobAnswer(job_name, rate, duration, delay))
    gap = base.gap
    if not any(job.start_delay > 0 for job in jobs):
        gap = parse_duration(ask_text(console, "Gap between jobs", _g(base.gap), _seconds(0, True)))
    cooldown_default = base.cooldown.duration if base.cooldown.enabled else 0.0
    cooldown = parse_duration(
        ask_text(console, "Cooldown after the last job (0: none)", _g(cooldown_default), _seconds(0, True))
    )
    return Answers(name, description, tuple(jobs), gap, cooldown)


def new_experiment(ctx: MenuContext) -> None:
    base = choose_base(ctx)
    if base is None:
        return
    answers = ask_answers(ctx, base)
    destination = ctx.configs_dir / f"{answers.name}.yaml"
    if destination.exists() and not confirm(ctx.console, f"{shown_path(destination)} exists. Replace it?"):
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_text(render_config(base, answers, destination), encoding="utf-8")
    show_validation(ctx, destination)


def show_validation(ctx: MenuContext, path: Path) -> None:
    """Validate the file just written and show the verdict with its timeline."""
    try:
        config = load_config(path)
        plan = build_plan(config)
    except HpaExpError as exc:
        body = stack(
            Text(f"✗ written, but not valid: {shown_path(path)}", style="bold red"),
            Text(str(exc)),
            Text(f"\nfix the file, then: hpa-exp validate {shown_path(path)}"),
        )
        notice(ctx.console, "New experiment", body)
        return
    body = stack(
        Text(
            f"✓ {shown_path(path)} is valid: {len(config.jobs)} jobs, {plan.mode}, {plan.total:g} s, "
            f"peak {plan.peak_rps:g} req/s",
            style="bold green",
        ),
        Text(""),
        Text(render_timeline(plan, max(16, min(60, ctx.console.width - 50)))),
        Text(f"\nwithout the menu: hpa-exp run {shown_path(path)} --backend sim"),
    )
    footer = stack(Text(""), keys_line([("r", "run it now"), ("b", "back"), ("q", "quit")]))
    key = show_screen(
        ctx.console,
        "New experiment · written and validated",
        body,
        footer,
        lambda k: k in ("r", "b", "enter", "escape"),
    )
    if key == "r":
        run_flow(ctx, path)
