"""Load-Job pod logs on the Kubernetes backend: the pods/log API, the results grace, job-results.csv.

All tests use the API emulator (tests/support/kube_emulator.py, which serves pods/log as the API
server does): what is checked is the client side of the standard API - pods found by the Job's
`job-name` label, logs read with GET .../pods/<pod>/log before the Job is deleted, and the runner's
timing around a Job's end - which needs no kubelet.  The test plays the Job controller and the
pod's container (status and the text it has printed).
"""

from __future__ import annotations

import csv
import gzip
import threading
import time
from pathlib import Path

import pytest
import yaml

from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from hpa_experiments.bench_log import JOB_RESULTS_FILE, NO_BLOCK, OK, parse_bench_log
from hpa_experiments.config import load_config
from hpa_experiments.plan import build_plan
from hpa_experiments.runner import Runner
from tests.support import kube_emulator
from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.test_kube_backend import launch

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

kube_cluster = kube_emulator.kube_cluster  # the shared fixture

NS = "bench"
REPO = Path(__file__).resolve().parents[1]
FAST_RETRY = RetryPolicy(max_attempts=3, max_elapsed=5.0, base_delay=0.01, max_delay=0.05)
REAL_LOG = next(Path("/work/shared/reference-runs/latency-vs-load/runs").glob("*/job-logs/*-g7ngv.log.gz"), None)


def _backend(cluster: KubeEmulator) -> KubeBackend:
    return KubeBackend(
        KubeSettings(kubeconfig=str(cluster.kubeconfig)),
        None,
        namespace=NS,
        deployment="vllm",
        hpa_name="vllm-hpa",
        run_id="r1",
        retry=FAST_RETRY,
    )


def _real_log() -> str:
    if REAL_LOG is None:
        pytest.fail("the reference job logs are missing (/work/shared/reference-runs)")
    with gzip.open(REAL_LOG, "rt", encoding="utf-8") as fh:
        return fh.read()


def test_job_logs_reads_every_pod_of_the_job_by_its_label(kube_cluster: KubeEmulator) -> None:
    backend = _backend(kube_cluster)
    try:
        backend.start_job(launch("load"))
        assert backend.job_logs("load-r1") == []  # no pod yet
        first = kube_cluster.add_job_pod(NS, "load-r1")
        kube_cluster.set_pod_log(NS, first, "attempt 1: crashed\n")
        waiting = kube_cluster.add_job_pod(NS, "load-r1")  # container not started: no log yet (400)
        kube_cluster.add_job_pod(NS, "other-r1")  # another Job's pod
        logs = backend.job_logs("load-r1")
    finally:
        backend.close()
    assert sorted((log.pod, log.container, log.text) for log in logs) == sorted(
        [(first, "main", "attempt 1: crashed\n"), (waiting, "main", "")]
    )
    paths = {r.path for r in kube_cluster.requests if r.path.endswith("/log")}
    assert paths == {f"/api/v1/namespaces/{NS}/pods/{first}/log", f"/api/v1/namespaces/{NS}/pods/{waiting}/log"}


def _config(folder: Path, **output: object) -> Path:
    doc = {
        "name": "logs",
        "namespace": NS,
        "deployment": "vllm",
        "backend": "kubernetes",
        "hpa": {"enabled": True, "name": "vllm-hpa", "apply": False},
        "jobs": [
            {"name": "load", "rate": 2, "duration": 2, "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml")}
        ],
        "metrics": {"interval": 1, "rate_window": "10s"},
        "output": output,
    }
    path = folder / "logs.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _run(cluster: KubeEmulator, config_path: Path, out: Path) -> tuple[Path, str]:
    config = load_config(config_path)
    backend = _backend(cluster)
    result = Runner(config, build_plan(config), backend, base_dir=out, handle_signals=False, run_id="r1").run()
    return result.run_dir, result.status


def _play_the_job(cluster: KubeEmulator, printed: list[tuple[float, str, bool]]) -> tuple[threading.Thread, list[str]]:
    """When the runner has created the Job: one pod, active; at each (seconds, text, done) the
    container has printed `text` and, if done, the Job has succeeded."""
    pods: list[str] = []

    def play() -> None:
        deadline = time.monotonic() + 20
        while "load-r1" not in cluster.names(JOBS, NS) and time.monotonic() < deadline:
            time.sleep(0.02)
        began = time.monotonic()
        pods.append(cluster.add_job_pod(NS, "load-r1"))
        cluster.set_job_status(NS, "load-r1", active=1)
        for at, text, done in printed:
            time.sleep(max(0.0, began + at - time.monotonic()))
            cluster.set_pod_log(NS, pods[0], text)
            if done:
                cluster.set_job_status(NS, "load-r1", active=0, succeeded=1, condition=("Complete", "", ""))

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread, pods


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_job_still_sending_at_its_end_is_kept_until_it_prints_then_its_results_are_saved(
    kube_cluster: KubeEmulator, tmp_path: Path
) -> None:
    text = _real_log()
    sending = text[: text.index("tip: install termplotlib")]
    thread, pods = _play_the_job(kube_cluster, [(0.2, sending, False), (4.0, text, True)])
    run_dir, status = _run(kube_cluster, _config(tmp_path, results_grace="60s"), tmp_path / "out")
    thread.join(5)
    assert status == "completed"
    (phase,) = _read(run_dir / "phases.csv")
    # planned end at 2 s; the Job printed and succeeded at ~4 s; deleted at the next check (1 s steps)
    assert 3.5 < float(phase["actual_end_s"]) < 30
    assert "load-r1" not in kube_cluster.names(JOBS, NS)
    (row,) = _read(run_dir / JOB_RESULTS_FILE)
    assert (row["job"], row["resource_name"], row["pod"], row["status"]) == ("load", "load-r1", pods[0], OK)
    for column, value in parse_bench_log(text).fields.items():
        assert float(row[column]) == value, column
    assert row["successful_requests"] == "17984" and row["ttft_p99_ms"] == "18768.45"
    assert (run_dir / "job-logs" / f"{pods[0]}_main.log").read_text(encoding="utf-8") == text
    kinds = [e["kind"] for e in _read(run_dir / "events.csv")]
    assert kinds.index("job_grace") < kinds.index("job_results") < kinds.index("job_stopped")


def test_a_job_that_never_prints_its_results_is_said_so(kube_cluster: KubeEmulator, tmp_path: Path) -> None:
    text = _real_log()
    sending = text[: text.index("tip: install termplotlib")]
    thread, _ = _play_the_job(kube_cluster, [(0.2, sending, False)])
    run_dir, status = _run(kube_cluster, _config(tmp_path, results_grace="2s"), tmp_path / "out")
    thread.join(5)
    assert status == "completed"
    (phase,) = _read(run_dir / "phases.csv")
    assert 4.0 <= float(phase["actual_end_s"]) < 10  # planned end 2 s + 2 s of grace
    (row,) = _read(run_dir / JOB_RESULTS_FILE)
    assert row["status"] == NO_BLOCK
    assert row["note"] == (
        "no result block; the log ends with: Maximum request concurrency: 512; "
        "still running 2 s after its planned end (jobs[].results_grace)"
    )
    warnings = [e["detail"] for e in _read(run_dir / "events.csv") if e["kind"] == "warning"]
    assert any(w.startswith("load: no vllm bench serve results (no_result_block)") for w in warnings)


def test_a_finished_job_is_deleted_at_its_planned_end_without_waiting(
    kube_cluster: KubeEmulator, tmp_path: Path
) -> None:
    text = _real_log()
    thread, _ = _play_the_job(kube_cluster, [(0.2, text, True)])
    run_dir, status = _run(kube_cluster, _config(tmp_path, results_grace="60s"), tmp_path / "out")
    thread.join(5)
    assert status == "completed"
    (phase,) = _read(run_dir / "phases.csv")
    assert float(phase["actual_end_s"]) < 2.5
    assert "job_grace" not in {e["kind"] for e in _read(run_dir / "events.csv")}
    assert _read(run_dir / JOB_RESULTS_FILE)[0]["status"] == OK
