"""Plan arithmetic for both modes, warnings, the timeline text, and Job rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.config import load_config
from hpa_experiments.plan import build_plan, render_timeline
from hpa_experiments.workloads import JOB_LABEL, RUN_LABEL, job_resource_name, new_run_id, render_job
from tests.test_config import base_config, fixed_job, workspace, write  # noqa: F401 - fixture reuse

REPO = Path(__file__).resolve().parents[1]


def test_sequential_mode_adds_gaps(workspace: Path) -> None:  # noqa: F811
    doc = base_config()
    doc["gap"] = 45
    doc["jobs"].append({"name": "c", "rate": 5, "duration": 30})
    doc["cooldown"] = {"enabled": True, "duration": 120}
    plan = build_plan(load_config(write(workspace, doc)))
    assert plan.mode == "sequential"
    assert [(j.start, j.end) for j in plan.jobs] == [(0, 60), (105, 165), (210, 240)]
    assert plan.load_end == 240
    assert plan.total == 360
    assert [(s.start, s.end, s.offered_rps) for s in plan.segments] == [
        (0, 60, 10),
        (60, 105, 0),
        (105, 165, 20),
        (165, 210, 0),
        (210, 240, 5),
    ]
    assert plan.phase_at(70) == "gap"
    assert plan.phase_at(300) == "cooldown"


def test_parallel_mode_uses_start_delay(workspace: Path) -> None:  # noqa: F811
    doc = base_config()
    doc["jobs"][1]["start_delay"] = 30
    plan = build_plan(load_config(write(workspace, doc)))
    assert plan.mode == "parallel"
    assert [(j.start, j.end) for j in plan.jobs] == [(0, 60), (30, 90)]
    assert [(s.start, s.end, s.offered_rps, s.active_jobs) for s in plan.segments] == [
        (0, 30, 10, ("a",)),
        (30, 60, 30, ("a", "b")),
        (60, 90, 20, ("b",)),
    ]
    assert plan.peak_rps == 30
    assert plan.offered_rps_at(45) == 30
    assert plan.phase_at(45) == "a+b"


def test_shipped_high_load_segments() -> None:
    plan = build_plan(load_config(REPO / "experiment-configs" / "high-load-hpa.yaml"))
    assert [s.offered_rps for s in plan.segments] == [20, 50, 70, 50, 20]
    assert [(s.start, s.end) for s in plan.segments] == [
        (0, 120),
        (120, 240),
        (240, 360),
        (360, 480),
        (480, 600),
    ]
    assert plan.peak_rps == 70
    assert plan.total == 900


def test_warnings(workspace: Path) -> None:  # noqa: F811
    doc = base_config()  # HPA with a 0 s scale-down window: no stabilization warnings
    plan = build_plan(load_config(write(workspace, doc)))
    assert plan.scale_down_window == 0
    assert plan.warnings == ()
    # an HPA without behavior: the 300 s default window
    hpa = yaml.safe_load((workspace / "manifests" / "hpa.yaml").read_text())
    del hpa["spec"]["behavior"]
    (workspace / "manifests" / "hpa.yaml").write_text(yaml.safe_dump(hpa))
    doc["cooldown"] = {"enabled": True, "duration": 120}
    plan = build_plan(load_config(write(workspace, doc)))
    assert plan.scale_down_window == 300
    assert plan.warnings == (
        "gap 30 s is shorter than the HPA's scale-down stabilization window (300 s): replicas from one job "
        "will still be up when the next starts",
        "cooldown 120 s is shorter than the HPA's scale-down stabilization window (300 s): the run ends before "
        "scale-down can be seen",
    )


def test_parallel_hole_and_fixed_manifest_reuse_warnings(workspace: Path) -> None:  # noqa: F811
    (workspace / "workloads" / "fixed.yaml").write_text(yaml.safe_dump(fixed_job(5)))
    doc = base_config()
    doc["jobs"] = [
        {"name": "a", "manifest": "../workloads/fixed.yaml", "rate": 5, "duration": 60},
        {"name": "b", "manifest": "../workloads/fixed.yaml", "rate": 5, "duration": 60, "start_delay": 30},
        {"name": "c", "rate": 5, "duration": 10, "start_delay": 200},
    ]
    plan = build_plan(load_config(write(workspace, doc)))
    assert "no job runs from 90 s to 200 s (a job ends before the next begins)" in plan.warnings
    assert (
        "fixed.yaml is used by a, b at overlapping times: fine, each gets its own Job name "
        "(the original system would have run it once)" in plan.warnings
    )


def test_rate_read_from_a_fixed_manifest(workspace: Path) -> None:  # noqa: F811
    (workspace / "workloads" / "fixed.yaml").write_text(yaml.safe_dump(fixed_job(14)))
    doc = base_config()
    doc["jobs"][0] = {"name": "a", "manifest": "../workloads/fixed.yaml", "duration": 360}
    plan = build_plan(load_config(write(workspace, doc)))
    assert plan.jobs[0].rate == 14


@pytest.mark.slow
def test_timeline_text_and_json() -> None:
    plan = build_plan(load_config(REPO / "experiment-configs" / "high-load-hpa.yaml"))
    text = render_timeline(plan)
    assert "peak load: 70 req/s" in text
    assert "total: 15m" in text
    assert "4m – 6m          70 req/s" in text
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "plan",
            str(REPO / "experiment-configs" / "high-load-hpa.yaml"),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    assert data["peak_rps"] == 70
    assert [s["offered_rps"] for s in data["segments"]] == [20, 50, 70, 50, 20]


def test_rendered_jobs_are_unique_labelled_and_computed() -> None:
    config = load_config(REPO / "experiment-configs" / "high-load-hpa.yaml")
    plan = build_plan(config)
    run_a, run_b = new_run_id(1_800_000_000.0), new_run_id(1_800_000_000.0)
    assert run_a != run_b  # same second, still distinct
    docs = [render_job(config, job, run_a) for job in plan.jobs]
    names = [d["metadata"]["name"] for d in docs]
    assert len(set(names)) == 3
    assert names[0] == job_resource_name("phase-1-high-load", run_a)
    assert all(len(n) <= 63 for n in names)
    for doc, job in zip(docs, plan.jobs, strict=True):
        assert doc["metadata"]["namespace"] == "hpa-exp"
        for labels in (doc["metadata"]["labels"], doc["spec"]["template"]["metadata"]["labels"]):
            assert labels["app.kubernetes.io/managed-by"] == "hpa-exp"
            assert labels[RUN_LABEL] == run_a
            assert labels[JOB_LABEL] == job.name
        args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--request-rate={job.rate:g}" in args
        assert f"--num-prompts={round(job.rate * 360)}" in args  # rate x duration
        assert "--model=meta-llama/Llama-3.1-8B" in args
        assert "--base-url=http://vllm:8000" in args
    # a different run renders different names from the same template
    other = render_job(config, plan.jobs[0], run_b)
    assert other["metadata"]["name"] != names[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["baseline-hpa", "moderate-load-hpa", "high-load-hpa"])
def test_dry_run_applies_nothing_and_prints_manifests(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "run", f"experiment-configs/{name}.yaml", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout.split("\n\n")[0]) if d]
    assert all(d["kind"] == "Job" for d in docs)
    assert "(dry run: nothing was applied)" in out.stdout


def test_template_values_cannot_change_the_manifest_structure(workspace: Path) -> None:  # noqa: F811
    """Values are placed into the parsed YAML tree, so text that looks like YAML stays text."""
    doc = base_config()
    doc["values"] = {"base_url": "http://gw:80\nkind: ConfigMap", "seed": "8: x"}
    config = load_config(write(workspace, doc))
    rendered = render_job(config, build_plan(config).jobs[0], new_run_id(1_800_000_000.0))
    assert rendered["kind"] == "Job"
    args = rendered["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--base-url=http://gw:80\nkind: ConfigMap" in args
    assert "--seed=8: x" in args


def test_whole_placeholder_keeps_the_value_type(workspace: Path) -> None:  # noqa: F811
    template = yaml.safe_load((REPO / "workloads" / "vllm-bench-serve.yaml").read_text())
    template["spec"]["backoffLimit"] = "${retries}"
    template["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "$(HOME)/$${kept}"})
    (workspace / "workloads" / "typed.yaml").write_text(yaml.safe_dump(template))
    doc = base_config()
    doc["jobs"][0]["manifest"] = "../workloads/typed.yaml"
    doc["jobs"][0]["values"] = {"retries": 4}
    config = load_config(write(workspace, doc))
    rendered = render_job(config, build_plan(config).jobs[0], "r1")
    assert rendered["spec"]["backoffLimit"] == 4
    env = rendered["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "X", "value": "$(HOME)/${kept}"} in env  # Kubernetes expansion untouched, $$ escapes


@pytest.mark.parametrize("name", ["baseline-hpa", "moderate-load-hpa", "high-load-hpa"])
def test_rendered_jobs_validate_against_the_kubernetes_schema(name: str) -> None:
    import kubernetes_validate

    from tests.test_manifests import KUBERNETES_VERSION

    config = load_config(REPO / "experiment-configs" / f"{name}.yaml")
    for job in build_plan(config).jobs:
        kubernetes_validate.validate(
            render_job(config, job, new_run_id(1_800_000_000.0)), KUBERNETES_VERSION, strict=True
        )
