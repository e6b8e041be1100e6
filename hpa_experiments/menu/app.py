"""The menu's main loop: the home screen and its actions, until `q`."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path

from rich.console import Console

from hpa_experiments.menu.configs_screen import configs
from hpa_experiments.menu.context import MenuContext
from hpa_experiments.menu.help_screen import show_help
from hpa_experiments.menu.home import home_screen
from hpa_experiments.menu.kube_context import current_context
from hpa_experiments.menu.run_screen import run_flow
from hpa_experiments.menu.runs_screen import explore
from hpa_experiments.menu.ui import BackToHome, QuitMenu, cbreak

ACTIONS = {"r": run_flow, "e": explore, "c": configs, "h": show_help}


def run_menu(configs_dir: Path, data_dir: Path, console: Console | None = None) -> int:
    """Show the menu until the person quits; returns the exit code (0)."""
    console = console or Console()
    ctx = MenuContext(console, configs_dir, data_dir, cluster=None, loaded=threading.Event())
    threading.Thread(target=_load, args=(ctx,), name="hpa-exp-menu-load", daemon=True).start()
    with cbreak():
        _loop(ctx)
    console.clear()
    console.print("bye: hpa-exp menu closed")
    return 0


def _load(ctx: MenuContext) -> None:
    """The slow parts of starting (kubeconfig via the kubernetes client, pandas, matplotlib)."""
    try:
        ctx.cluster = current_context()
        importlib.import_module("hpa_experiments.analysis.runs")
    finally:
        ctx.loaded.set()


def _loop(ctx: MenuContext) -> None:
    try:
        while True:
            try:
                key = home_screen(ctx)
            except (BackToHome, KeyboardInterrupt):  # Ctrl-C on the home screen leaves
                break
            try:
                ctx.loaded.wait()  # the next screens rely on the cluster context and the analysis modules
                if key.isdigit():
                    run_flow(ctx, ctx.config_files()[int(key) - 1])
                else:
                    ACTIONS[key](ctx)
            except (BackToHome, KeyboardInterrupt):
                continue
    except QuitMenu:
        pass
