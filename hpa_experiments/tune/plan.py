"""A search's folder and its points: which are done (a result file with the same key) and which to run.

    <output>/tunes/<space name>/
        points/<index>/manifest.yaml   the point's autoscaler manifest
        points/<index>/result.json     its score (written once its seeds are done)
        runs/                          the run directories of the local backend
        tune.json, tune.csv, tune.html, front.png, recommended-<kind>.yaml   (report.py)

Rerunning the same search skips every point whose result.json carries the key of its current
experiment, manifest and seeds; a changed config, space or seed count runs the points it changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpa_experiments.config import ExperimentConfig
from hpa_experiments.ensemble import ensemble_seeds
from hpa_experiments.rundir import atomic_write_json
from hpa_experiments.tune.evaluate import BaseExperiment, point_config, point_key
from hpa_experiments.tune.space import Point, SearchSpace

TUNES_DIR = "tunes"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class PlannedPoint:
    point: Point
    config: ExperimentConfig
    manifest: dict[str, Any]
    key: str
    tune_id: str


@dataclass
class TunePlan:
    folder: Path
    space: SearchSpace
    base: BaseExperiment
    seeds: list[int]
    points: list[PlannedPoint]
    done: dict[int, dict[str, Any]] = field(default_factory=dict)  # index -> result of an earlier run

    @property
    def pending(self) -> list[PlannedPoint]:
        return [p for p in self.points if p.point.index not in self.done]

    def point_dir(self, index: int) -> Path:
        return self.folder / "points" / f"{index:04d}"

    def save(self, result: dict[str, Any]) -> None:
        atomic_write_json(self.point_dir(int(result["index"])) / RESULT_FILE, result)
        self.done[int(result["index"])] = result

    def results(self) -> list[dict[str, Any]]:
        return [self.done[p.point.index] for p in self.points if p.point.index in self.done]


def plan_search(base: BaseExperiment, space: SearchSpace, output_dir: Path) -> TunePlan:
    """Validate every point (ConfigError before anything runs) and find those done before."""
    folder = output_dir / TUNES_DIR / space.name
    seeds = ensemble_seeds(base.config.simulation.seed, space.spec.seeds)
    plan = TunePlan(folder, space, base, seeds, [])
    for point in space.points:
        config, manifest = point_config(base, point, plan.point_dir(point.index))
        key = point_key(config, manifest, seeds)
        plan.points.append(PlannedPoint(point, config, manifest, key, space.name))
        previous = _read_result(plan.point_dir(point.index) / RESULT_FILE)
        if previous is not None and previous.get("key") == key:
            plan.done[point.index] = previous
    return plan


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # missing or cut short: the point runs again
    return data if isinstance(data, dict) else None
