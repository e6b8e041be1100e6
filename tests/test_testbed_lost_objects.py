"""A run that loses sight of its HPA or of one of its Jobs says so at once and fails (issue 16, item 3).

Real test bed, not the emulator: the HPA and the Job are deleted by an administrator through the
real API server while the real HPA controller, Job controller and garbage collector run, so the
run sees what it would see on a cluster (the Job gone with background propagation, its pod
terminated by the garbage collector).  The Deployment case is in tests/test_reliability_ownership.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import (
    NAMESPACE,
    derive_config,
    install_model_server,
    job_objects,
    only_run_dir,
    run_args,
    wait_for,
)
from tests.test_testbed_ownership import HPA_NAME, HPAS, delete_hpas, read_hpa, wait_for_job_pods

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "high-load-hpa.yaml"


def two_jobs(doc: dict) -> None:
    doc["jobs"] = [
        {"name": "lost-job", "rate": 1, "duration": 40, "start_delay": 0},  # parallel: a start_delay > 0
        {"name": "kept-job", "rate": 1, "duration": 40, "start_delay": 1},
    ]
    doc["cooldown"]["duration"] = 2
    doc["metrics"]["interval"] = 1
    doc["metrics"]["rate_window"] = "10s"
    doc["values"]["output_len"] = 8


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_hpa_and_a_job_deleted_mid_run_are_said_at_once_and_fail_the_run(testbed: Testbed, tmp_path: Path) -> None:
    install_model_server(testbed)
    delete_hpas(testbed)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpa_experiments", *run_args(testbed, derive_config(SHIPPED, tmp_path, two_jobs))],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **testbed.env()},
    )
    try:
        try:
            run_id = wait_for_job_pods(testbed, proc, tmp_path, count=2)
            assert read_hpa(testbed) is not None
        except AssertionError as exc:
            proc.kill()
            out, err = proc.communicate()
            jobs, pods = job_objects(testbed)
            phases = [(p["metadata"]["name"], p["status"].get("phase")) for p in pods]
            raise AssertionError(
                f"{exc}: Jobs {[j['metadata']['name'] for j in jobs]}, pods {phases}\n{out}\n{err}"
            ) from None
        jobs, _ = job_objects(testbed, f"hpa-exp/run={run_id}")
        lost_job = next(j["metadata"]["name"] for j in jobs if j["metadata"]["name"].startswith("lost-job-"))
        deleted_at = time.time()
        assert testbed.request("DELETE", f"{HPAS}/{HPA_NAME}").status_code == 200
        answer = testbed.request(
            "DELETE",
            f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs/{lost_job}",
            {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
        )
        assert answer.status_code == 200, answer.text
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        delete_hpas(testbed)
    assert proc.returncode == 1, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    run = only_run_dir(tmp_path)
    lost = {e["detail"].split(" ")[0]: e for e in read_csv(run / "events.csv") if e["kind"] == "object_lost"}
    assert set(lost) == {"HPA", "lost-job:"}, lost
    assert lost["HPA"]["detail"].startswith(f"HPA {NAMESPACE}/{HPA_NAME} disappeared (not found at ")
    assert lost["lost-job:"]["detail"].startswith(f"lost-job: Job {NAMESPACE}/{lost_job} deleted by someone else")
    for event in lost.values():  # at once: within a few ticks of the deletion (interval 1 s), not at the end
        seen = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
        assert seen - deleted_at < 10, (event, deleted_at)

    phases = {p["job"]: p["outcome"] for p in read_csv(run / "phases.csv")}
    assert phases["lost-job"].startswith(f"lost: Job {NAMESPACE}/{lost_job} deleted by someone else"), phases
    assert phases["kept-job"] == "completed", phases
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["reason"].split(" (")[0]) == ("failed", f"lost sight of HPA {NAMESPACE}/{HPA_NAME}")
    summary = json.loads((run / "summary.json").read_text())
    for event in lost.values():
        alert = f"at {float(event['elapsed_s']):g} s: {event['detail']}"
        assert alert in summary["alerts"] and alert in summary["notes"]
        assert f"warning: {alert}" in err
    wait_for("the kept Job deleted by the run", lambda: job_objects(testbed) == ([], []), 60)
