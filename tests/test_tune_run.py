"""`hpa-exp tune` end to end on the twin (local processes): outputs, the recommendation, resume, and
the Kubernetes worker's result equal to the local one for the same point and seeds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.tune.attainment import run_attainment
from hpa_experiments.tune.report import analyse
from hpa_experiments.tune.search import load_plan
from hpa_experiments.tune.worker import make_bundle, parse_result, run_worker

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

REPO = Path(__file__).resolve().parents[1]
HPA_MANIFEST = REPO / "manifests" / "hpa-vllm-combined.yaml"
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"


def hpa_exp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpa_experiments", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )


def small_config(folder: Path) -> Path:
    """One short load job (about a minute of twin time per run)."""
    config = {
        "name": "tune-small",
        "backend": "sim",
        "hpa": {"enabled": True, "manifest": str(HPA_MANIFEST)},
        "jobs": [{"name": "only", "rate": 25, "duration": 120, "manifest": str(JOB_TEMPLATE)}],
        "values": {"output_len": 1024},
        "slo": {"ttft_ms": 1000, "itl_ms": 100},
        "simulation": {"seed": 5, "parameters": {"job_start_delay_s": 0}},
    }
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def space_file(folder: Path, min_replicas: list[int]) -> Path:
    path = folder / "space.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": "small", "seeds": 2, "target_attainment": 0.9, "parameters": {"minReplicas": min_replicas}}
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, subprocess.CompletedProcess[str]]:
    folder = tmp_path_factory.mktemp("tune")
    config, space = small_config(folder), space_file(folder, [1, 3])
    done = hpa_exp("tune", str(config), str(space), "-o", str(folder / "out"), "--processes", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    return folder, config, space, done


def test_a_search_writes_the_table_plot_and_the_recommended_manifest(tuned) -> None:
    folder, config, space, done = tuned
    target = folder / "out" / "tunes" / "small"
    summary = json.loads((target / "tune.json").read_text())
    assert summary["seeds"] == [5, 6] and summary["points_scored"] == 2
    for point in summary["points"]:
        runs = [Path(s["run_dir"]) for s in point["seeds"]]
        assert all(r.parent == target / "runs" for r in runs)
        plan = load_plan(config, space, folder / "out")
        shares = sorted(run_attainment(r, plan.points[0].config).share for r in runs)  # type: ignore[union-attr]
        assert [point["attainment"]["min"], point["attainment"]["max"]] == shares
    by_min = {p["values"]["minReplicas"]: p for p in summary["points"]}
    assert (
        by_min[3]["gpu_hours"]["median"] > by_min[1]["gpu_hours"]["median"]
    )  # three replicas from the start cost more
    chosen = summary["recommended"]
    manifest = yaml.safe_load(Path(chosen["manifest"]).read_text())
    point = summary["points"][chosen["index"]]
    assert manifest["spec"]["minReplicas"] == point["values"]["minReplicas"]
    front = [p for p in summary["points"] if p["index"] in summary["front"]]
    meeting = [p for p in front if p["attainment"]["median"] >= 0.9]
    if meeting:
        assert chosen["meets_target"] and point["gpu_hours"]["median"] == min(p["gpu_hours"]["median"] for p in meeting)
    assert (target / "tune.csv").read_text().count("\n") == 3
    assert (target / "front.png").stat().st_size > 10_000
    assert "recommended" in done.stdout and "2 of 2 points scored (0 done before, skipped)" in done.stdout


def test_a_rerun_skips_finished_points_and_runs_only_new_ones(tuned) -> None:
    folder, config, space, _ = tuned
    runs = folder / "out" / "tunes" / "small" / "runs"
    before = set(runs.iterdir())
    again = hpa_exp("tune", str(config), str(space), "-o", str(folder / "out"))
    assert again.returncode == 0, again.stderr
    assert "2 done before, 0 to run" in again.stdout and set(runs.iterdir()) == before
    wider = space_file(folder, [1, 2, 3])
    more = hpa_exp("tune", str(config), str(wider), "-o", str(folder / "out"), "--processes", "2")
    assert more.returncode == 0, more.stderr
    # point 0 (minReplicas 1) is unchanged; points 1 and 2 have new manifests and run
    assert "1 done before, 2 to run" in more.stdout, more.stdout
    assert len(set(runs.iterdir()) - before) == 4


def test_the_kubernetes_worker_scores_a_point_as_the_local_run_did(tuned, capsys: pytest.CaptureFixture[str]) -> None:
    """The worker in-process on a bundle (no cluster): same seeds, same twin, same numbers."""
    folder, config, _, _ = tuned
    plan = load_plan(config, space_file(folder, [1, 3]), folder / "out")
    outcome = analyse(plan)
    bundle = folder / "bundle.json"
    bundle.write_text(json.dumps(make_bundle(plan, plan.points)))
    capsys.readouterr()
    run_worker(bundle, 0, processes=2)  # point 0 (minReplicas 1): the resume test does not change it
    printed = parse_result(capsys.readouterr().out)
    assert printed is not None
    local = next(r for r in outcome.results if r["index"] == 0)
    assert printed["key"] == local["key"]
    assert printed["gpu_hours"] == local["gpu_hours"] and printed["attainment"] == local["attainment"]
    assert [s["run_dir"] for s in printed["seeds"]] == [None, None]
