"""`hpa-exp menu`: the interactive terminal UI (needs a terminal; scripts use the other commands)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from hpa_experiments.errors import UsageError

NOT_A_TERMINAL = (
    "hpa-exp menu needs an interactive terminal (stdin/stdout are not a TTY). "
    "In scripts and pipelines use the commands instead, e.g.: "
    "hpa-exp run experiment-configs/high-load-hpa.yaml --backend sim"
)


def menu(
    configs_dir: Path = typer.Option(
        Path("experiment-configs"), "--configs-dir", help="Folder of experiment configs to offer."
    ),
    data_dir: Path = typer.Option(Path("experiment-data"), "--data-dir", "-d", help="Folder holding the runs."),
) -> int:
    """Interactive menu: run experiments with a live dashboard, explore runs, create configs.

    Keys work without Enter; q quits from every screen.  Needs a terminal.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(NOT_A_TERMINAL)
    from hpa_experiments.menu import run_menu

    return run_menu(configs_dir, data_dir)


def register(app: typer.Typer) -> None:
    app.command()(menu)
