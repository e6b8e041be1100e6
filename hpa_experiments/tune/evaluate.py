"""A point of the search as an experiment, and its score from the runs of its seeds.

A point's experiment is the base config with its autoscaler manifest replaced by the point's
variant (written to a file and validated by the same loader as any config), named
`<experiment>-p<index>` so its runs are recognisable.  Its score: per seed the GPU-hours and
the SLO attainment; over the seeds their median and p10/p90 (ensemble.spread), plus the
ensemble summary of the headline KPIs.  The same code scores a point on local processes and in
a Kubernetes worker pod, so both give the same numbers for the same seeds.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hpa_experiments.config import ExperimentConfig, config_from_data, read_config_data
from hpa_experiments.ensemble import SeedRun, spread, summarize
from hpa_experiments.errors import ConfigError
from hpa_experiments.tune.attainment import run_attainment
from hpa_experiments.tune.space import Point, apply_point

RESULT_VERSION = 1
MANIFEST_FILE = "manifest.yaml"


@dataclass(frozen=True)
class BaseExperiment:
    """The experiment a search varies: its validated config, its raw data and which key names the manifest."""

    config: ExperimentConfig
    raw: dict[str, Any]
    manifest_key: str  # 'hpa' or 'autoscaler'

    @property
    def manifest(self) -> dict[str, Any]:
        doc = self.config.scaled_object if self.config.autoscaler_kind == "keda" else self.config.hpa_manifest
        if not doc:
            raise ConfigError(
                f"{self.manifest_key}.manifest: tune needs an HPA or ScaledObject manifest to vary",
                str(self.config.source),
            )
        return doc


def base_experiment(config: ExperimentConfig) -> BaseExperiment:
    if config.source is None:
        raise ConfigError("tune needs the experiment as a file (its relative paths resolve against it)")
    raw = read_config_data(config.source)
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping", str(config.source))
    key = "autoscaler" if isinstance(raw.get("autoscaler"), dict) else "hpa"
    return BaseExperiment(config, raw, key)


def point_name(experiment: str, index: int) -> str:
    return f"{experiment[:70]}-p{index:04d}"


def point_raw(base: BaseExperiment, point: Point, manifest_path: Path) -> dict[str, Any]:
    """The raw config of a point: the base's, with the manifest path and name replaced."""
    raw = copy.deepcopy(base.raw)
    raw.setdefault(base.manifest_key, {})["manifest"] = str(manifest_path)
    raw["name"] = point_name(base.config.name, point.index)
    for key in ("output_summary_json_path", "output_requests_csv_path"):  # a search writes no extra copies
        (raw.get("metrics") or {}).pop(key, None)
    return raw


def point_config(base: BaseExperiment, point: Point, folder: Path) -> tuple[ExperimentConfig, dict[str, Any]]:
    """Write the point's manifest into `folder` and validate its experiment (ConfigError naming the point)."""
    try:
        manifest = apply_point(base.manifest, point.values)
    except ValueError as exc:
        raise ConfigError(f"point {point.index} ({point.label}): {exc}") from None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST_FILE
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    assert base.config.source is not None
    try:
        config = config_from_data(point_raw(base, point, path.resolve()), base.config.source)
    except ConfigError as exc:
        problems = [p.replace(str(path.resolve()), "the point's manifest") for p in exc.problems]
        raise ConfigError([f"point {point.index} ({point.label}): {p}" for p in problems], exc.source) from None
    return config, manifest


def point_key(config: ExperimentConfig, manifest: dict[str, Any], seeds: Sequence[int]) -> str:
    """What a point's result depends on: a changed experiment, manifest or seed list runs it again."""
    # the manifest's content counts, not where the point's copy lies (another output folder, same key)
    exclude: Any = {
        **dict.fromkeys(("source", "hpa_manifest", "scaled_object", "name", "output"), True),
        "hpa": {"manifest"},
        "autoscaler": {"manifest"},
    }
    data = config.model_dump(mode="json", exclude=exclude)
    text = json.dumps([RESULT_VERSION, data, manifest, list(seeds)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def score_point(
    point: Point, key: str, config: ExperimentConfig, manifest: dict[str, Any], runs: Sequence[SeedRun]
) -> dict[str, Any]:
    """The point's result file: per seed GPU-hours and attainment, their spreads, the ensemble summary."""
    from hpa_experiments.analysis.kpis import SUMMARY_FILE, headline

    seeds = []
    for run in sorted(runs, key=lambda r: r.seed):
        entry: dict[str, Any] = {
            "seed": run.seed,
            "status": run.status,
            "reason": run.reason,
            "run_dir": str(run.run_dir) if run.run_dir else None,
            "gpu_hours": None,
            "attainment": None,
            "requests_counted": None,
        }
        summary_path = run.run_dir / SUMMARY_FILE if run.run_dir else None
        if run.status == "completed" and summary_path and summary_path.is_file():
            line = headline(json.loads(summary_path.read_text(encoding="utf-8")))
            attained = run_attainment(run.run_dir, config) if run.run_dir else None
            entry.update(
                gpu_hours=line["gpu_hours"],
                peak_replicas=line["peak_replicas"],
                attainment=attained.share if attained else None,
                requests_counted=attained.counted if attained else None,
            )
        seeds.append(entry)
    ensemble = summarize(config.name, config, list(runs))
    cost = [s["gpu_hours"] for s in seeds if s["gpu_hours"] is not None and s["attainment"] is not None]
    attainment = [s["attainment"] for s in seeds if s["gpu_hours"] is not None and s["attainment"] is not None]
    return {
        "version": RESULT_VERSION,
        "index": point.index,
        "key": key,
        "values": point.values,
        "manifest": manifest,
        "scored_seeds": len(cost),
        "gpu_hours": spread(cost),
        "attainment": spread(attainment),
        "reached_max_share": ensemble["reached_max_share"],
        "kpis": ensemble["kpis"],
        "seeds": seeds,
    }
