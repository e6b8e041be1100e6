"""Analysis of run directories: loading, KPIs, plots, reports and run comparison.

Shared by the `runs`, `report` and `compare` commands and by the notebooks, so that no
analysis logic lives in a notebook cell.
"""

from hpa_experiments.analysis.kpis import compute_kpis, headline
from hpa_experiments.analysis.load import Run, load_run, newest_run_path, resolve_run_path

__all__ = ["Run", "compute_kpis", "headline", "load_run", "newest_run_path", "resolve_run_path"]
