"""A load Job that fails during `hpa-exp run` (Kubernetes backend), and `--keep-jobs`.

The test plays the Job controller: once the runner has created a Job, the test marks it
failed (backoff limit) or gives it a pod stuck in ImagePullBackOff.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.test_run_kubernetes_e2e import NS, hpa_exp, prom, read_csv, run_dir, write_config  # noqa: F401

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)


def fail_first_job_when_created(kube: KubeEmulator, how: str) -> threading.Thread:
    def controller() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = [n for n in kube.names(JOBS, NS) if n.startswith("load-a-")]
            if names:
                if how == "backoff":
                    kube.set_job_status(
                        NS,
                        names[0],
                        failed=3,
                        condition=("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
                    )
                else:
                    kube.add_job_pod(NS, names[0], waiting_reason="ImagePullBackOff")
                return
            time.sleep(0.02)

    thread = threading.Thread(target=controller)
    thread.start()
    return thread


def two_jobs(tmp_path: Path, on_failure: str) -> Path:
    return write_config(
        tmp_path,
        [{"name": "load-a", "rate": 1, "duration": 3}, {"name": "load-b", "rate": 1, "duration": 3, "start_delay": 1}],
        on_job_failure=on_failure,
    )


def run_with_a_failing_job(
    kube: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    on_failure: str,
    how: str,
) -> tuple[Path, dict]:
    """Run two jobs while the first one fails; the run exits 1. Returns its folder and run.json."""
    controller = fail_first_job_when_created(kube, how)
    done = subprocess.run(
        hpa_exp(str(two_jobs(tmp_path, on_failure)), kube=kube, prom_url=prom.url, out=tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    controller.join()
    assert done.returncode == 1, done.stderr
    run = run_dir(tmp_path / "out")
    return run, json.loads((run / "run.json").read_text())


def test_failed_job_aborts_the_run(kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path) -> None:  # noqa: F811
    run, info = run_with_a_failing_job(kube_cluster, prom, tmp_path, "abort", "backoff")
    assert info["status"] == "failed"
    assert info["reason"].startswith("job load-a failed: ")
    assert "BackoffLimitExceeded" in info["reason"]
    events = read_csv(run / "events.csv")
    assert [e["kind"] for e in events].count("job_failed") == 1
    assert kube_cluster.names(JOBS, NS) == []  # both Jobs deleted, the failed one too
    phases = {p["job"]: p for p in read_csv(run / "phases.csv")}
    assert phases["load-a"]["outcome"].startswith("failed: ")
    # aborted at the tick that saw the failure: the plan runs to 4 s
    assert float(read_csv(run / "metrics.csv")[-1]["elapsed_s"]) < 3


def test_failed_job_with_continue_runs_the_plan_to_the_end(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    run, info = run_with_a_failing_job(kube_cluster, prom, tmp_path, "continue", "image")
    assert info["status"] == "failed"
    assert info["reason"] == "job(s) failed (on_job_failure: continue): load-a"
    phases = {p["job"]: p for p in read_csv(run / "phases.csv")}
    assert "ImagePullBackOff" in phases["load-a"]["outcome"]
    assert phases["load-b"]["outcome"] == "completed"
    assert [float(r["elapsed_s"]) for r in read_csv(run / "metrics.csv")] == [float(k) for k in range(5)]
    assert kube_cluster.names(JOBS, NS) == []


def test_keep_jobs_leaves_running_jobs_after_an_interrupt(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Jobs still running when the run stops are left for debugging; run.json says so."""
    config = write_config(tmp_path, [{"name": "kept", "rate": 1, "duration": 30}])
    process = subprocess.Popen(
        hpa_exp(str(config), "--keep-jobs", kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not [n for n in kube_cluster.names(JOBS, NS) if n.startswith("kept-")] and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert [n for n in kube_cluster.names(JOBS, NS) if n.startswith("kept-")]
    run = run_dir(tmp_path / "out")
    assert read_csv(run / "phases.csv")[0]["outcome"] == "kept (interrupted)"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"
