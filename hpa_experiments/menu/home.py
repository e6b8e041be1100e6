"""The home screen: configs to run, recent runs, backend and cluster context, and the actions."""

from __future__ import annotations

from pathlib import Path

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from hpa_experiments.config import read_config_data
from hpa_experiments.errors import ConfigError
from hpa_experiments.menu import kube_context
from hpa_experiments.menu.context import MenuContext, shown_path
from hpa_experiments.menu.ui import keys_line, show_screen, stack

RECENT_RUNS = 5
HOME_KEYS = {"r", "e", "c", "h"}


def _description(path: Path) -> str:
    """The config's description line, read without validating (the configs screen validates)."""
    try:
        raw = read_config_data(path)  # YAML, or JSON for a .json config
    except ConfigError:
        return "(unreadable)"
    return str(raw.get("description", "")) if isinstance(raw, dict) else "(not a mapping)"


def configs_list(paths: list[Path]) -> Text:
    """One line per config: its key, file name and description (cut at the window edge)."""
    name_w = min(40, max(len(p.name) for p in paths[:9]))
    lines = Text(no_wrap=True, overflow="ellipsis")
    for i, path in enumerate(paths[:9], start=1):
        if i > 1:
            lines.append("\n")
        lines.append(f"{i:>2} ", style="bold")
        lines.append(f"{path.name:<{name_w}} ")
        lines.append(_description(path), style="dim")
    return lines


def recent_runs(ctx: MenuContext) -> Table | Text:
    if not ctx.loaded.is_set():
        return Text("  reading runs…", style="dim")
    from hpa_experiments.analysis.load import read_run_json, runs_newest_first
    from hpa_experiments.analysis.runs import STATUS_STYLE, effective_status
    from hpa_experiments.errors import UsageError

    directories = runs_newest_first(ctx.data_dir)[:RECENT_RUNS]
    if not directories:
        return Text(f"  no runs yet under {shown_path(ctx.data_dir)}", style="dim")
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, overflow="ellipsis")
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True)
    for directory in directories:
        try:
            info = read_run_json(directory)
        except UsageError:
            table.add_row(f"  {directory.name}", "unreadable", "")
            continue
        status = effective_status(directory, info)
        style = STATUS_STYLE.get(status, "")
        table.add_row(f"  {directory.name}", Text(status, style=style), str(info.get("backend", "?")))
    return table


def backends_line(ctx: MenuContext) -> Text:
    line = Text("backends: simulation (digital twin) · ")
    if not ctx.loaded.is_set():
        line.append("reading the kubeconfig…", style="dim")
    elif ctx.cluster:
        line.append(kube_context.describe(ctx.cluster), style="cyan")
    else:
        line.append(kube_context.NO_CLUSTER, style="yellow")
    return line


def home_screen(ctx: MenuContext) -> str:
    """Draw the home screen; returns the chosen action key, or a digit to run that config."""
    paths = ctx.config_files()
    configs = (
        configs_list(paths)
        if paths
        else Text(f"  none found in {shown_path(ctx.configs_dir)}/ ([r] lets you type a path)", style="dim")
    )

    def body() -> RenderableType:
        return stack(
            backends_line(ctx),
            Text(""),
            Text(f"Experiment configs ({shown_path(ctx.configs_dir)}/):", style="bold"),
            configs,
            Text(""),
            Text(f"Recent runs ({shown_path(ctx.data_dir)}/, newest first):", style="bold"),
            recent_runs(ctx),
        )

    digits = {str(i) for i in range(1, min(len(paths), 9) + 1)}
    pairs = [("1-9", "run it")] if digits else []
    pairs += [("r", "run"), ("e", "runs"), ("c", "configs"), ("h", "help"), ("q", "quit")]
    footer = stack(Text(""), keys_line(pairs))
    return show_screen(
        ctx.console,
        "hpa-exp menu · HPA experiments",
        body,
        footer,
        lambda key: key in HOME_KEYS or key in digits,
        redraw_when=ctx.loaded,
    )
