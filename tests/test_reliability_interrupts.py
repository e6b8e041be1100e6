"""Interrupts at the awkward moments of `hpa-exp run`, driven as a subprocess.

Kubernetes cases use the API emulator (tests/support/kube_emulator.py), because the point is an
API server that answers slowly or refuses a DELETE, which only an emulator can do on demand; the
Prometheus is the real one of test_run_kubernetes_e2e.  The summary case uses the twin, with the
KPI computation slowed down in the child process so that the signal surely lands inside it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.test_run_kubernetes_e2e import NS, REPO, hpa_exp, prom, write_config  # noqa: F401 - `prom` is a fixture

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

LONG_JOB = [{"name": "a", "rate": 1, "duration": 120}]
FAST_METRICS = {"interval": 0.5, "rate_window": "10s"}


def wait_for(condition: Callable[[], object], process: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"hpa-exp ended (exit {process.returncode}) before {what}:\n{out[-1500:]}\n{err[-1500:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_run(kube: KubeEmulator, prom_url: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    config = write_config(tmp_path, LONG_JOB, metrics=FAST_METRICS)
    out = tmp_path / "out"
    command = hpa_exp(str(config), kube=kube, prom_url=prom_url, out=out)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out


def run_json(out: Path) -> dict:
    (path,) = list(out.glob("*/run.json"))
    return json.loads(path.read_text())


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"hpa-exp still running {timeout:g} s after the signal:\n{out[-1500:]}\n{err[-1500:]}")


def test_interrupt_with_an_undeletable_job_exits_1_and_names_it(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """SIGINT, then every DELETE of a Job is refused (403): not 130, the Job named, run.json marked."""
    process, out = start_run(kube_cluster, prom.url, tmp_path)
    wait_for(lambda: kube_cluster.names(JOBS, NS), process, "the Job's creation")
    (job,) = kube_cluster.names(JOBS, NS)
    kube_cluster.fail_next(1000, 403, method="DELETE", path="/jobs/")
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process, timeout=60)

    assert process.returncode == 1, stdout[-1500:] + stderr[-1500:]
    assert "Traceback" not in stderr
    assert f"error: Jobs left in the cluster: {job}; delete them with: hpa-exp cleanup" in stderr
    info = run_json(out)
    assert info["status"] == "interrupted" and info["exit_code"] == 1
    assert info["leftover_jobs"] == [job]
    assert info["reason"].startswith("interrupted by SIGINT; cleanup incomplete: Jobs left in the cluster: " + job)
    assert kube_cluster.names(JOBS, NS) == [job]  # what run.json says is true


def test_second_sigint_stops_waiting_for_a_slow_delete_and_lists_what_is_left(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
) -> None:
    """Deletes take 40 s (past the client's 15 s timeout): a second SIGINT ends the run at once, exit 1."""
    process, out = start_run(kube_cluster, prom.url, tmp_path)
    wait_for(lambda: kube_cluster.names(JOBS, NS), process, "the Job's creation")
    (job,) = kube_cluster.names(JOBS, NS)
    kube_cluster.delay_next(1000, 40, method="DELETE", path="/jobs/")
    process.send_signal(signal.SIGINT)
    wait_for(lambda: kube_cluster.requests_to("DELETE", "/jobs/"), process, "the cleanup's DELETE")
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    second = time.monotonic()
    stdout, stderr = finish(process, timeout=30)
    took = time.monotonic() - second

    assert took < 5.0, f"{took:.1f} s after the second SIGINT\n{stdout}\n{stderr}"  # ~0.2 s expected
    assert process.returncode == 1, stdout[-1500:] + stderr[-1500:]
    assert "Traceback" not in stderr
    assert f"SIGINT again: stopped waiting for the cleanup (deleting {job}" in stdout
    assert f"possibly left in the cluster: {job}" in stdout
    assert f"error: Jobs left in the cluster: {job}" in stderr
    info = run_json(out)
    assert info["status"] == "interrupted" and info["exit_code"] == 1
    assert info["leftover_jobs"] == [job]
    assert "stopped waiting (SIGINT again) for: deleting " + job in info["reason"]
    assert "hpa-exp cleanup " in info["reason"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_slow_preflight_says_nothing_was_applied(
    kube_cluster: KubeEmulator,
    prom: PrometheusServer,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    """The access reviews of the preflight answer after 5 s; the signal lands while one is pending."""
    kube_cluster.delay_next(1000, 5, method="POST", path="selfsubjectaccessreviews")
    process, out = start_run(kube_cluster, prom.url, tmp_path)
    wait_for(lambda: kube_cluster.requests_to("POST", "selfsubjectaccessreviews"), process, "the preflight")
    process.send_signal(sig)
    stdout, stderr = finish(process, timeout=30)

    assert process.returncode == 130, stdout[-1500:] + stderr[-1500:]
    assert f"interrupted by {sig.name} during the preflight; nothing was applied" in stderr
    assert "Traceback" not in stderr
    assert not list(out.glob("*/run.json"))  # no run was started, so no run directory claims one
    assert kube_cluster.requests_to("POST", "/jobs$") == []


SLOW_SUMMARY = """
import pathlib, sys, time
import hpa_experiments.analysis.kpis as kpis
marker, real = pathlib.Path(sys.argv[1]), kpis.compute_kpis
def slow(run):
    marker.write_text("computing")
    time.sleep(60)
    return real(run)
kpis.compute_kpis = slow
from hpa_experiments.cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_the_summary_keeps_the_completed_run(tmp_path: Path, sig: signal.Signals) -> None:
    """The twin runs to completion; the signal lands in the KPI computation (made slow in the child)."""
    marker, out = tmp_path / "summary-started", tmp_path / "out"
    config = REPO / "experiment-configs" / "baseline-hpa.yaml"
    args = ["run", str(config), "--backend", "sim", "-o", str(out), "--plain", "-q"]
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_SUMMARY, str(marker), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(marker.exists, process, "the summary", timeout=120)
    process.send_signal(sig)
    stdout, stderr = finish(process, timeout=30)

    assert process.returncode == 130, stdout[-1500:] + stderr[-1500:]
    assert "Traceback" not in stderr
    (run,) = [p.parent for p in out.glob("*/run.json")]
    assert f"interrupted by {sig.name} while computing the summary" in stderr
    assert f"compute it with: hpa-exp report {run}" in stderr
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["exit_code"] == 0  # the run itself did complete
    assert not (run / "summary.json").exists() and not (run / "summary.json.tmp").exists()
