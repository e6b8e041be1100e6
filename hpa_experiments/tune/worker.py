"""A point of the search run inside a pod: `hpa-exp tune --worker --bundle FILE --index N`.

The bundle (one JSON file, mounted from a ConfigMap) is self-contained: the experiment's raw
config with every file it names carried along (each job's template), and per Job index the
point's manifest, values and key.  The worker rebuilds the point's experiment in a scratch folder,
runs its ensemble on the twin with every core of the pod, scores it with the same code as the
local backend and prints the result as one line `RESULT_PREFIX {json}` on stdout, which the
runner reads from the pod's log.  Run directories stay in the pod (their paths are dropped).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from hpa_experiments.config import load_config
from hpa_experiments.errors import UsageError
from hpa_experiments.tune.evaluate import MANIFEST_FILE, point_name, score_point
from hpa_experiments.tune.plan import PlannedPoint, TunePlan
from hpa_experiments.tune.space import Point

RESULT_PREFIX = "HPA_EXP_TUNE_RESULT "
BUNDLE_VERSION = 1
EXPERIMENT_FILE = "experiment.yaml"


def make_bundle(plan: TunePlan, points: Sequence[PlannedPoint]) -> dict[str, Any]:
    """Job index i runs points[i]."""
    config = plan.base.config
    raw = copy.deepcopy(plan.base.raw)
    files: dict[str, str] = {}
    for i, job in enumerate(config.jobs):
        assert job.manifest is not None  # resolved by the loader (the shipped template when not given)
        files[f"job-{i}.yaml"] = job.manifest.read_text(encoding="utf-8")
        raw["jobs"][i]["manifest"] = f"job-{i}.yaml"
    raw.setdefault(plan.base.manifest_key, {})["manifest"] = MANIFEST_FILE
    raw["backend"] = "simulation"
    raw.pop("output", None)
    for key in ("output_summary_json_path", "output_requests_csv_path"):
        (raw.get("metrics") or {}).pop(key, None)
    for key in ("token_file", "ca_file", "token_env"):
        (raw.get("prometheus") or {}).pop(key, None)
    return {
        "version": BUNDLE_VERSION,
        "tune": plan.space.name,
        "seeds": plan.seeds,
        "config": raw,
        "files": files,
        "points": [
            {"index": p.point.index, "values": p.point.values, "key": p.key, "manifest": p.manifest} for p in points
        ],
    }


def run_worker(bundle_path: Path, index: int | None, processes: int | None = None) -> dict[str, Any]:
    """Run the bundle's entry `index` (default: $JOB_COMPLETION_INDEX) and print its result line."""
    if index is None:
        env = os.environ.get("JOB_COMPLETION_INDEX")
        if env is None or not env.isdigit():
            raise UsageError("--worker needs --index N (or $JOB_COMPLETION_INDEX, set in an Indexed Job's pods)")
        index = int(env)
    try:
        bundle = json.loads(bundle_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--bundle {bundle_path}: not readable ({exc})") from None
    if bundle.get("version") != BUNDLE_VERSION:
        raise UsageError(
            f"--bundle {bundle_path}: version {bundle.get('version')}, this hpa-exp reads {BUNDLE_VERSION}"
        )
    if not 0 <= index < len(bundle["points"]):
        raise UsageError(f"--index {index}: the bundle has entries 0 to {len(bundle['points']) - 1}")
    entry = bundle["points"][index]
    from hpa_experiments.ensemble import run_ensemble

    with tempfile.TemporaryDirectory(prefix="hpa-exp-tune-") as scratch:
        folder = Path(scratch)
        for name, text in bundle["files"].items():
            (folder / Path(name).name).write_text(text, encoding="utf-8")
        (folder / MANIFEST_FILE).write_text(yaml.safe_dump(entry["manifest"], sort_keys=False), encoding="utf-8")
        raw = copy.deepcopy(bundle["config"])
        point = Point(int(entry["index"]), dict(entry["values"]))
        raw["name"] = point_name(str(raw.get("name", "tune")), point.index)
        (folder / EXPERIMENT_FILE).write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        config = load_config(folder / EXPERIMENT_FILE)
        out = folder / "runs"
        out.mkdir()
        ensemble = run_ensemble(config, bundle["seeds"], out, processes=processes)
        result = score_point(point, entry["key"], config, entry["manifest"], ensemble.runs)
    for seed in result["seeds"]:
        seed["run_dir"] = None  # it was in the pod's scratch folder, gone now
    result["ran_in"] = os.environ.get("HOSTNAME") or "pod"
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, sort_keys=True) + "\n")
    sys.stdout.flush()
    return result


def parse_result(log: str) -> dict[str, Any] | None:
    """The result a worker printed, from its pod's log (the last such line), or None."""
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_PREFIX):
            try:
                data = json.loads(line[len(RESULT_PREFIX) :])
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None
