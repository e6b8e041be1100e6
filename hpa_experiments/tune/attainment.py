"""SLO attainment of a run: the share of its requests served within the config's `slo:` thresholds.

Counted requests: those that arrived after `metrics.warm_up_duration_s` and ended as `completed`
or as a failure a client sees (`rejected`, `aborted_scale_down`; analysis/slo_gates.py).  Requests
cut by the experiment itself (`aborted_job_stopped`, `running_at_end`) are left out: no
autoscaler setting is to blame for them.  A completed request is within the SLO when its TTFT is
at most `slo.ttft_ms` and its mean ITL at most `slo.itl_ms` (a threshold that is not set is not
checked; a request with one output token has no ITL and passes that part).  A failure is a miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_experiments.analysis.slo_gates import FAILED_OUTCOMES
from hpa_experiments.config import ExperimentConfig
from hpa_experiments.errors import ConfigError
from hpa_experiments.rundir import REQUESTS_FILE

COLUMNS = ["arrival_s", "outcome", "ttft_ms", "itl_mean_ms"]


@dataclass(frozen=True)
class Attainment:
    counted: int
    within: int

    @property
    def share(self) -> float | None:
        return self.within / self.counted if self.counted else None


def require_slo(config: ExperimentConfig) -> None:
    """A search needs something to attain: exit 2 before anything runs when `slo:` sets no threshold."""
    if config.slo.ttft_ms is None and config.slo.itl_ms is None:
        raise ConfigError(
            "slo: set ttft_ms and/or itl_ms; tune scores each point by the share of requests within them",
            str(config.source or "<config>"),
        )


def run_attainment(run_dir: Path, config: ExperimentConfig) -> Attainment | None:
    """The run's attainment, or None when it has no requests.csv (not a twin run)."""
    path = run_dir / REQUESTS_FILE
    if not path.is_file():
        return None
    warm_up = config.metrics.warm_up_duration_s or 0.0
    counted = within = 0
    for chunk in pd.read_csv(path, usecols=COLUMNS, chunksize=200_000):
        chunk = chunk[chunk["arrival_s"] >= warm_up]
        completed = chunk["outcome"] == "completed"
        failed = chunk["outcome"].isin(FAILED_OUTCOMES)
        ok = completed.to_numpy().copy()
        if config.slo.ttft_ms is not None:
            ok &= (chunk["ttft_ms"] <= config.slo.ttft_ms).to_numpy()
        if config.slo.itl_ms is not None:
            itl = chunk["itl_mean_ms"].to_numpy()
            ok &= np.isnan(itl) | (itl <= config.slo.itl_ms)
        counted += int(completed.sum() + failed.sum())
        within += int(ok.sum())
    return Attainment(counted, within)
