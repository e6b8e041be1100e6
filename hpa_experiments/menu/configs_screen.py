"""The configs screen: validate every config in the folder (a table), or create a new one."""

from __future__ import annotations

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from hpa_experiments.config import load_config
from hpa_experiments.errors import ConfigError
from hpa_experiments.menu.context import MenuContext, shown_path
from hpa_experiments.menu.ui import keys_line, show_screen, stack
from hpa_experiments.menu.wizard import new_experiment
from hpa_experiments.plan import build_plan


def validation_table(ctx: MenuContext) -> tuple[Table, list[Text]]:
    """One row per config file; problems and warnings listed under the table."""
    table = Table(box=None, padding=(0, 1), header_style="bold")
    for header in ("", "config", "jobs", "mode", "total", "peak"):
        table.add_column(header, no_wrap=True)
    notes: list[Text] = []
    for path in ctx.config_files():
        try:
            config = load_config(path)
            plan = build_plan(config)
        except ConfigError as exc:
            table.add_row(Text("✗", style="red"), path.name, "", "", "", "")
            notes.append(Text(f"✗ {path.name}:\n" + "\n".join(f"    {p}" for p in exc.problems), style="red"))
            continue
        table.add_row(
            Text("✓", style="green"),
            path.name,
            str(len(config.jobs)),
            plan.mode,
            f"{plan.total:g} s",
            f"{plan.peak_rps:g} req/s",
        )
        notes += [Text(f"! {path.name}: {w}", style="yellow") for w in plan.warnings]
    return table, notes


def configs(ctx: MenuContext) -> None:
    while True:
        body: RenderableType
        if ctx.config_files():
            table, notes = validation_table(ctx)
            body = stack(table, Text(""), *notes)
        else:
            body = Text(f"no configs in {shown_path(ctx.configs_dir)}/", style="dim")
        footer = stack(Text(""), keys_line([("n", "new experiment from one of these"), ("b", "home"), ("q", "quit")]))
        key = show_screen(
            ctx.console,
            f"Configs in {shown_path(ctx.configs_dir)}/ · validation",
            body,
            footer,
            lambda k: k in ("n", "b", "escape"),
        )
        if key != "n":
            return
        new_experiment(ctx)
