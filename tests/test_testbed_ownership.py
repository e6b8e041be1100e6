"""A run touches only what it owns (issue 16, item 2), on the test bed.

Real test bed, not the emulator: what is at stake is what a real API server stores and returns
(labels and annotations on created objects, the defaults it fills in when the run compares an
existing HPA with its manifest by a dry-run replace, PUT conflicts with the HPA controller's status
writes) and what the real garbage collector and HPA controller do after a SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import (
    KIT,
    NAMESPACE,
    delete_run_jobs,
    derive_config,
    hpa_exp,
    install_model_server,
    job_objects,
    only_run_dir,
    run_args,
    wait_for,
)

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "high-load-hpa.yaml"
HPA_NAME = "vllm-hpa-combined"  # the shipped config's HPA (manifests/hpa-vllm-combined.yaml)
HPAS = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers"


def one_job(duration: int):
    def change(doc: dict) -> None:
        doc["jobs"] = [{"name": "owner-check", "rate": 1, "duration": duration}]
        doc["cooldown"]["duration"] = 2
        doc["metrics"]["interval"] = 1
        doc["metrics"]["rate_window"] = "10s"
        doc["values"]["output_len"] = 8

    return change


def read_hpa(bed: Testbed) -> dict[str, Any] | None:
    answer = bed.request("GET", f"{HPAS}/{HPA_NAME}")
    return answer.json() if answer.status_code == 200 else None


def delete_hpas(bed: Testbed) -> None:
    """No HPA and no hpa-exp Job or Job pod left from an earlier test (one that failed midway)."""
    for name in (HPA_NAME, "vllm-hpa-queue", "vllm-hpa-kvcache"):
        bed.request("DELETE", f"{HPAS}/{name}")
    delete_run_jobs(bed)
    wait_for("no HPA left", lambda: not bed.request("GET", HPAS).json().get("items"), 30)
    wait_for("no Job or Job pod left", lambda: job_objects(bed) == ([], []), 60)


def existing_hpa(bed: Testbed, **spec_changes: Any) -> dict[str, Any]:
    """The kit's HPA created by someone else (not hpa-exp), with `spec_changes` and a label of its own."""
    doc = yaml.safe_load((KIT / "hpa-vllm-combined.yaml").read_text())
    doc["spec"].update(spec_changes)
    doc["metadata"]["labels"]["team"] = "inference"
    bed.apply([doc])
    found = read_hpa(bed)
    assert found is not None
    return found


def owned_view(hpa: dict[str, Any]) -> tuple[Any, Any, Any]:
    meta = hpa["metadata"]
    return hpa["spec"], meta.get("labels"), meta.get("annotations")


def start_run(bed: Testbed, config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpa_experiments", *run_args(bed, config), *extra],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **bed.env()},
    )


def run_id_of(proc: subprocess.Popen[str], base: Path) -> str:
    """The id of the run that `proc` writes under `base`/runs, once its run.json exists."""

    def started() -> bool:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[0][-3000:]}"
        return any((base / "runs").glob("*/run.json"))

    wait_for("the run's run.json", started, 120)
    return str(json.loads(next((base / "runs").glob("*/run.json")).read_text())["id"])


def wait_for_job_pods(bed: Testbed, proc: subprocess.Popen[str], base: Path, count: int = 1) -> str:
    """Wait until `count` Job pods of the run are Running (not pods of an earlier test); its run id."""
    run_id = run_id_of(proc, base)

    def running() -> bool:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[0][-3000:]}"
        _, pods = job_objects(bed, f"hpa-exp/run={run_id}")
        return sum(p["status"].get("phase") == "Running" for p in pods) >= count

    wait_for(f"{count} Job pod(s) of run {run_id} Running", running, 120)
    return run_id


def cleanup(bed: Testbed, run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "cleanup", str(run_dir), "--kubeconfig", str(bed.kubeconfig)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, **bed.env()},
    )


def test_sigkill_then_cleanup_removes_the_runs_hpa_and_jobs(testbed: Testbed, tmp_path: Path) -> None:
    """Every object the run creates carries its labels and run-id annotation; after a SIGKILL
    `hpa-exp cleanup RUN_DIR` finds the HPA by label and deletes it with the Jobs (it used to
    survive, and the next run adopted it)."""
    install_model_server(testbed)
    delete_hpas(testbed)
    proc = start_run(testbed, derive_config(SHIPPED, tmp_path, one_job(300)))
    try:
        run_id = wait_for_job_pods(testbed, proc, tmp_path)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = only_run_dir(tmp_path)
    hpa = read_hpa(testbed)
    jobs, pods = job_objects(testbed, f"hpa-exp/run={run_id}")
    assert hpa is not None and jobs and pods, "SIGKILL should leave the HPA and the Job behind"
    marks = {"app.kubernetes.io/managed-by": "hpa-exp", "hpa-exp/run": run_id}
    for obj in (hpa, *jobs, *pods):
        meta = obj["metadata"]
        assert marks.items() <= meta["labels"].items(), meta
    for obj in (hpa, *jobs):
        assert obj["metadata"]["annotations"]["hpa-exp/run-id"] == run_id, obj["metadata"]

    done = cleanup(testbed, run_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"deleted HPA {NAMESPACE}/{HPA_NAME} (created by the run)" in done.stdout, done.stdout
    wait_for("the HPA deleted", lambda: read_hpa(testbed) is None, 30)
    wait_for("the Jobs and their pods deleted", lambda: job_objects(testbed) == ([], []), 60)


def test_an_existing_hpa_that_differs_is_refused_with_the_diff_and_left_as_it_was(
    testbed: Testbed, tmp_path: Path
) -> None:
    """Exit 3 before anything is applied, the diff in the message, the HPA not touched, no Job."""
    install_model_server(testbed)
    delete_hpas(testbed)
    try:
        before = existing_hpa(testbed, maxReplicas=3)
        done = hpa_exp(testbed, *run_args(testbed, derive_config(SHIPPED, tmp_path, one_job(5))), timeout=300)
        text = done.stdout + done.stderr
        assert done.returncode == 3, f"exit {done.returncode}\n{text[-3000:]}"
        assert f"HPA {NAMESPACE}/{HPA_NAME} already exists and differs from the manifest" in text, text[-3000:]
        assert "-maxReplicas: 3\n" in text and "+maxReplicas: 10\n" in text, text[-3000:]
        assert owned_view(read_hpa(testbed) or {}) == owned_view(before)
        assert job_objects(testbed) == ([], [])
        assert not (tmp_path / "runs").exists()  # refused before the run directory is made
    finally:
        delete_hpas(testbed)


def test_an_existing_hpa_equal_to_the_manifest_as_the_server_stores_it_is_used_as_is(
    testbed: Testbed, tmp_path: Path
) -> None:
    """The config's manifest leaves out minReplicas (the server's default is 1); the live HPA says
    1 explicitly: the dry-run comparison sees them as equal, the run uses the HPA unchanged, says so
    in an event and does not delete it."""
    install_model_server(testbed)
    delete_hpas(testbed)
    manifest = yaml.safe_load((KIT / "hpa-vllm-combined.yaml").read_text())
    del manifest["spec"]["minReplicas"]
    manifest_path = tmp_path / "hpa-without-min-replicas.yaml"
    manifest_path.write_text(yaml.safe_dump(manifest))

    def change(doc: dict) -> None:
        one_job(5)(doc)
        doc["hpa"]["manifest"] = str(manifest_path)

    try:
        before = existing_hpa(testbed)
        done = hpa_exp(testbed, *run_args(testbed, derive_config(SHIPPED, tmp_path, change)), timeout=300)
        assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        events = (only_run_dir(tmp_path) / "events.csv").read_text()
        assert "identical to the manifest: used as is (not changed, kept)" in events, events
        after = read_hpa(testbed)
        assert after is not None and owned_view(after) == owned_view(before)
    finally:
        delete_hpas(testbed)


@pytest.mark.parametrize("stop", ["sigterm", "sigkill-then-cleanup"])
def test_take_over_puts_the_original_back(testbed: Testbed, tmp_path: Path, stop: str) -> None:
    """--take-over: the run replaces the spec (and marks the HPA) while it runs; SIGTERM makes the
    run restore it, and after a SIGKILL `hpa-exp cleanup` does, from the annotation on the HPA."""
    install_model_server(testbed)
    delete_hpas(testbed)
    try:
        before = existing_hpa(testbed, maxReplicas=3)
        proc = start_run(testbed, derive_config(SHIPPED, tmp_path, one_job(300)), "--take-over")
        try:
            wait_for_job_pods(testbed, proc, tmp_path)
            live = read_hpa(testbed) or {}
            assert live["spec"]["maxReplicas"] == 10 and live["metadata"]["labels"]["team"] == "inference"
            assert "hpa-exp/original" in live["metadata"]["annotations"]
            if stop == "sigterm":
                proc.send_signal(signal.SIGTERM)
                out, _ = proc.communicate(timeout=120)
                assert proc.returncode == 130, out[-3000:]
            else:
                proc.kill()
                proc.communicate(timeout=30)
                time.sleep(1)
                assert (read_hpa(testbed) or {})["spec"]["maxReplicas"] == 10  # nothing restored it yet
                done = cleanup(testbed, only_run_dir(tmp_path))
                assert done.returncode == 0, done.stdout + done.stderr
                assert f"restored HPA {NAMESPACE}/{HPA_NAME} (taken over by the run)" in done.stdout, done.stdout
        finally:
            if proc.poll() is None:
                proc.kill()
        after = read_hpa(testbed)
        assert after is not None and owned_view(after) == owned_view(before)
        wait_for("the Jobs and their pods deleted", lambda: job_objects(testbed) == ([], []), 60)
    finally:
        delete_hpas(testbed)
