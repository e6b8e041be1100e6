"""Stopping a run on the test bed: SIGTERM mid-run, and SIGKILL followed by `hpa-exp cleanup`.

These use the real test bed, not the emulator: whether Jobs *and their pods* go away depends on
the real garbage collector (background propagation) and the real Job controller, which the
emulator leaves to the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import derive_config, install_model_server, job_objects, only_run_dir, run_args, wait_for

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "high-load-hpa.yaml"


def long_low_load(doc: dict) -> None:
    """The shipped high-load config at 1 req/s per job, long enough to be stopped mid-run, no HPA."""
    for job in doc["jobs"]:
        job["duration"] = 300
        job["start_delay"] = job["start_delay"] // 20
        job["rate"] = 1
    doc["hpa"]["enabled"] = False
    doc["values"]["output_len"] = 8


def start_run(bed: Testbed, config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hpa_experiments", *run_args(bed, config)],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **bed.env()},
    )


def wait_for_running_jobs(bed: Testbed, proc: subprocess.Popen[str], count: int) -> None:
    def running() -> bool:
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[0][-3000:]}"
        _, pods = job_objects(bed)
        return sum(p["status"].get("phase") == "Running" for p in pods) >= count

    wait_for(f"{count} Job pods Running", running, 120)


def wait_for_nothing_left(bed: Testbed) -> None:
    def empty() -> bool:
        jobs, pods = job_objects(bed)
        return not jobs and not pods

    try:
        wait_for("0 Jobs and 0 Job pods", empty, 60)
    except AssertionError:
        jobs, pods = job_objects(bed)
        raise AssertionError(
            f"left: Jobs {[j['metadata']['name'] for j in jobs]}, "
            f"pods {[(p['metadata']['name'], p['status'].get('phase')) for p in pods]}"
        ) from None


def test_sigterm_mid_run_leaves_no_job_and_no_pod(testbed: Testbed, tmp_path: Path) -> None:
    """SIGTERM while two Jobs run: exit 130, the run cleans up, and the real garbage collector
    removes every Job pod (kwok deletes pods once they are marked for deletion)."""
    install_model_server(testbed)
    proc = start_run(testbed, derive_config(SHIPPED, tmp_path, long_low_load))
    try:
        wait_for_running_jobs(testbed, proc, 2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out[-3000:]
    wait_for_nothing_left(testbed)


def test_sigkill_then_cleanup_leaves_no_job_and_no_pod(testbed: Testbed, tmp_path: Path) -> None:
    """SIGKILL leaves the Jobs running; `hpa-exp cleanup RUN_DIR` deletes them and their pods go."""
    install_model_server(testbed)
    proc = start_run(testbed, derive_config(SHIPPED, tmp_path, long_low_load))
    try:
        wait_for_running_jobs(testbed, proc, 2)
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(2)
    jobs, _ = job_objects(testbed)
    assert jobs, "SIGKILL should leave the Jobs behind (nothing could clean up)"
    run_dir = only_run_dir(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "cleanup", str(run_dir), "--kubeconfig", str(testbed.kubeconfig)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env={**os.environ, **testbed.env()},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for_nothing_left(testbed)
