"""The points of a search on this machine: every (point, seed) run is one task of one process pool
with a process per core, so no core idles while a point waits for its last seed.  A point is
scored and its result handed back as soon as its last seed ends."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from hpa_experiments.ensemble import SeedRun, run_seed
from hpa_experiments.tune.evaluate import score_point
from hpa_experiments.tune.plan import PlannedPoint

OnPoint = Callable[[dict[str, Any]], None]


def run_local(
    points: Sequence[PlannedPoint],
    seeds: Sequence[int],
    runs_dir: Path,
    on_point: OnPoint,
    processes: int | None = None,
) -> None:
    """Run each point under each seed into `runs_dir`; `on_point(result)` per finished point."""
    if not points:
        return
    tasks = len(points) * len(seeds)
    workers = max(1, min(processes or os.cpu_count() or 1, tasks))
    pending: dict[int, list[SeedRun]] = {p.point.index: [] for p in points}
    by_index = {p.point.index: p for p in points}
    # spawn, not fork: the parent holds threads and open files a forked child must not share
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: dict[Future[SeedRun], int] = {}
        for planned in points:
            tags = {"tune": planned.tune_id, "point": str(planned.point.index)}
            for seed in seeds:
                futures[pool.submit(run_seed, planned.config, seed, str(runs_dir), tags)] = planned.point.index
        try:
            for future in as_completed(futures):
                index = futures[future]
                pending[index].append(future.result())
                if len(pending[index]) == len(seeds):
                    planned = by_index[index]
                    on_point(score_point(planned.point, planned.key, planned.config, planned.manifest, pending[index]))
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise
