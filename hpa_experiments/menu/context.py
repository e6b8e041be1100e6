"""What every screen of the menu needs: the console, where configs and runs live, the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from hpa_experiments.menu.cluster import KubeContext


@dataclass
class MenuContext:
    console: Console
    configs_dir: Path
    data_dir: Path
    cluster: KubeContext | None

    def config_files(self) -> list[Path]:
        """The experiment configs in the configs folder, by name."""
        if not self.configs_dir.is_dir():
            return []
        return sorted(p for p in self.configs_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def shown_path(path: Path) -> str:
    """A path relative to the current folder when it is below it (shorter on small screens)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
