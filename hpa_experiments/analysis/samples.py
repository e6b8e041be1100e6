"""A run's samples as numbers: each sample's duration and its columns as float arrays.

Shared by the KPIs (kpis.py) and energy (energy.py), which follow one convention: each sample
holds its value until the next sample, the last one for one sampling interval; a missing value
is NaN, never 0.
"""

from __future__ import annotations

import numpy as np

from hpa_experiments.analysis.load import Run


def sample_durations(elapsed: np.ndarray, interval_s: float | None) -> np.ndarray:
    """How long each sample's value holds: until the next sample, the last one for one interval."""
    if len(elapsed) == 0:
        return np.array([], dtype=float)
    last = interval_s if interval_s is not None else 0.0
    return np.diff(elapsed, append=elapsed[-1] + last)


class SampleColumns:
    """The run's columns as float arrays (NaN = missing), computed once."""

    def __init__(self, run: Run):
        self.elapsed = run.elapsed.to_numpy(dtype=float)
        self.weights = sample_durations(self.elapsed, run.interval_s)
        self._frame = run.metrics

    def get(self, name: str) -> np.ndarray:
        if name not in self._frame.columns:
            return np.full(len(self.elapsed), np.nan)
        return self._frame[name].to_numpy(dtype=float, na_value=np.nan)

    def first_present(self, names: tuple[str, ...]) -> tuple[str | None, np.ndarray]:
        for name in names:
            values = self.get(name)
            if not np.isnan(values).all():
                return name, values
        return None, np.full(len(self.elapsed), np.nan)
