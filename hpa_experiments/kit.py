"""The files hpa-exp ships besides its code: the Job template, the manifests, the notebooks and
the example experiment configs.

In a wheel they live inside the package (`hpa_experiments/kit/<folder>`, copied there by
setup.py's build step from the repository's top-level folders); in a source checkout they are
those top-level folders themselves.  Everything that needs one asks `kit_dir`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from hpa_experiments.errors import UsageError

KIT_FOLDERS = ("workloads", "manifests", "notebooks", "experiment-configs")


def kit_dir(name: str) -> Path:
    """The shipped folder `name` (one of KIT_FOLDERS): packaged, else the source checkout's."""
    if name not in KIT_FOLDERS:
        raise ValueError(f"not a kit folder: {name}")
    packaged = Path(str(files("hpa_experiments"))) / "kit" / name
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[1] / name
    if checkout.is_dir():
        return checkout
    raise UsageError(f"this installation of hpa-exp has no {name}/ folder (looked in {packaged} and {checkout})")
