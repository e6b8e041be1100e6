"""`hpa-exp menu`: an interactive terminal UI to run experiments and explore their results."""

from hpa_experiments.menu.app import run_menu

__all__ = ["run_menu"]
