"""hpa-exp: reproducible HPA load experiments for LLM inference on Kubernetes.

`from hpa_experiments import Experiment` is the Python API (hpa_experiments.api); it is imported
on first use, so that importing the package (as the command line does) stays cheap.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpa_experiments.api import Experiment, ExperimentResult

try:  # one source of truth: the version in pyproject.toml, as installed
    __version__ = version("hpa-experiments")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"
__all__ = ["Experiment", "ExperimentResult", "__version__"]

_API_NAMES = ("Experiment", "ExperimentResult")


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from hpa_experiments import api

        return getattr(api, name)
    raise AttributeError(f"module 'hpa_experiments' has no attribute {name!r}")
