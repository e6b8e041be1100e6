"""What every screen of the menu needs: the console, where configs and runs live, the cluster."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from hpa_experiments.menu.kube_context import KubeContext

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def _ready() -> threading.Event:
    event = threading.Event()
    event.set()
    return event


@dataclass
class MenuContext:
    console: Console
    configs_dir: Path
    data_dir: Path
    cluster: KubeContext | None
    # Set once `cluster` is known and the analysis modules (pandas, matplotlib) are imported:
    # the menu does both in the background so that the home screen shows at once.
    loaded: threading.Event = field(default_factory=_ready)
    # Kubernetes, this run only (`run --take-over`): an existing HPA/ScaledObject that differs from
    # the manifest is taken over and restored at the end instead of refused.  Off at each new run.
    take_over: bool = False

    def config_files(self) -> list[Path]:
        """The experiment configs in the configs folder, by name."""
        if not self.configs_dir.is_dir():
            return []
        return sorted(p for p in self.configs_dir.iterdir() if p.suffix in CONFIG_SUFFIXES and p.is_file())


def shown_path(path: Path) -> str:
    """A path relative to the current folder when it is below it (shorter on small screens)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
