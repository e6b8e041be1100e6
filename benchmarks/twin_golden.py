"""Determinism check of the twin across a code change: hashes of each run's output files.

    .venv/bin/python benchmarks/twin_golden.py --write before.json     # on the old code
    .venv/bin/python benchmarks/twin_golden.py --compare before.json   # on the new code

Runs the shipped experiment configs (three seeds each), the calibration configs, and variants
that exercise the other code paths of the fleet (drain at scale-down, round-robin routing, a
40-replica fleet pinned by the HPA), each as `hpa-exp run CONFIG --backend sim` does, and
records the SHA-256 of metrics.csv, requests.csv, phases.csv, events.csv, job-results.csv and
each file under job-logs/ (with a fixed run id, which the Job resource names carry).  Run the
old code with PYTHONPATH pointing at a checkout of it, e.g. `git archive main | tar -x -C /tmp/old`
(the whole tree: its workloads/ folder is needed) and `PYTHONPATH=/tmp/old`.  `--compare` exits 1
and names the runs whose files differ.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
FILES = ("metrics.csv", "requests.csv", "phases.csv", "events.csv", "job-results.csv")


def cases() -> dict[str, tuple[Path, dict[str, Any]]]:
    """name -> (config file, changes applied to its YAML document)."""
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    shipped = ("baseline-hpa", "moderate-load-hpa", "high-load-hpa")
    for name in shipped:
        for seed in (42, 1, 7):
            out[f"{name}-seed{seed}"] = (REPO / "experiment-configs" / f"{name}.yaml", {"seed": seed})
    for path in sorted((REPO / "benchmarks" / "calibration").glob("*.yaml")):
        if "jobs" in yaml.safe_load(path.read_text()):  # the folder holds HPA manifests too
            out[f"calibration-{path.stem}"] = (path, {})
    high = REPO / "experiment-configs" / "high-load-hpa.yaml"
    out["high-load-drain"] = (high, {"parameters": {"scale_down": "drain"}})
    out["high-load-round-robin"] = (high, {"parameters": {"routing": "round_robin"}})
    out["high-load-fast-pods-drain"] = (
        high,
        {"seed": 3, "parameters": {"scale_down": "drain", "pod_load_mean_s": 20.0, "drain_grace_s": 60.0}},
    )
    out["pinned-40-replicas"] = (high, {"pinned": 40, "rate_scale": 4.0})
    return out


def materialize(source: Path, change: dict[str, Any], folder: Path) -> Path:
    """Write `source` with `change` applied into `folder` (relative paths made absolute)."""
    doc = yaml.safe_load(source.read_text())
    doc = copy.deepcopy(doc)
    sim = doc.setdefault("simulation", {})
    if "seed" in change:
        sim["seed"] = change["seed"]
    if "parameters" in change:
        sim["parameters"] = {**sim.get("parameters", {}), **change["parameters"]}
    hpa = doc.get("hpa", {})
    if hpa.get("manifest"):
        manifest = (source.parent / hpa["manifest"]).resolve()
        if "pinned" in change:
            spec = yaml.safe_load(manifest.read_text())
            spec["spec"]["minReplicas"] = spec["spec"]["maxReplicas"] = change["pinned"]
            manifest = folder / f"hpa-{source.stem}.yaml"
            manifest.write_text(yaml.safe_dump(spec))
            sim["initial_replicas"] = change["pinned"]
        hpa["manifest"] = str(manifest)
    for job in doc.get("jobs", []):
        if job.get("manifest"):
            job["manifest"] = str((source.parent / job["manifest"]).resolve())
        if "rate_scale" in change:
            job["rate"] = job["rate"] * change["rate_scale"]
    doc.setdefault("output", {})["base_dir"] = str(folder / "runs")
    path = folder / f"{source.stem}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_once(config_path: Path) -> tuple[dict[str, str], float]:
    """Run a config on the twin; returns the output files' hashes and the run's wall time."""
    from hpa_experiments.backends.factory import BackendOptions, make_backend
    from hpa_experiments.config import load_config
    from hpa_experiments.plan import build_plan
    from hpa_experiments.runner import Runner

    config = load_config(config_path)
    plan = build_plan(config)
    run_id = "20260101-000000-gold"  # fixed: Job resource names in phases.csv and events.csv carry it
    started = time.perf_counter()
    backend, names = make_backend("simulation", config, plan, run_id, BackendOptions())
    result = Runner(
        config, plan, backend, base_dir=config_path.parent / "runs", metric_names=names, run_id=run_id
    ).run()
    wall = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(f"{config_path}: the run ended with exit code {result.exit_code}")
    hashes = {}
    for name in FILES:
        path = result.run_dir / name
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"
    logs = result.run_dir / "job-logs"
    for path in sorted(logs.iterdir()) if logs.is_dir() else []:
        hashes[f"job-logs/{path.name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", type=Path, help="write the hashes to this JSON file")
    group.add_argument("--compare", type=Path, help="compare with hashes written by --write")
    parser.add_argument("--only", nargs="*", help="case names (default: all)")
    args = parser.parse_args()
    expected = json.loads(args.compare.read_text()) if args.compare else {}
    results: dict[str, dict[str, str]] = {}
    differ = []
    for name, (source, change) in cases().items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory(prefix="twin-golden-") as tmp:
            hashes, wall = run_once(materialize(source, change, Path(tmp)))
        results[name] = hashes
        verdict = ""
        if args.compare:
            same = expected.get(name) == hashes
            verdict = "identical" if same else "DIFFERENT"
            if not same:
                differ.append(name)
        print(f"{name:45s} {wall:6.2f} s  {verdict}", flush=True)
    if args.write:
        args.write.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        print(f"written {args.write}")
        return 0
    if differ:
        print(f"{len(differ)} of {len(results)} runs differ: {', '.join(differ)}", file=sys.stderr)
        return 1
    print(f"all {len(results)} runs byte-identical (metrics, requests, phases, events, job results and logs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
