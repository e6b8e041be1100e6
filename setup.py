"""Packaging step that pyproject.toml cannot express: the repository's top-level kit folders
(workloads, manifests, notebooks, experiment-configs) are copied into the wheel as
hpa_experiments/kit/<folder>, so an installed hpa-exp finds them (hpa_experiments/kit.py)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

KIT_FOLDERS = ("workloads", "manifests", "notebooks", "experiment-configs")


class BuildWithKit(build_py):
    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "hpa_experiments" / "kit"
        for name in KIT_FOLDERS:
            shutil.copytree(root / name, target / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildWithKit})
