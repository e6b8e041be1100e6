"""Client-side cold starts: line times of a load Job's log, summary "cold_starts" -> "client", report rows.

The log-reading test uses the API emulator (tests/support/kube_emulator.py, which serves pods/log
with `timestamps=true` as the API server does): what is checked is that the backend asks for line
times and hands bench_log.py the plain text - no kubelet needed.  The analysis tests use
hand-built run directories with known answers (tests/support/synthetic_runs.py).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.report import cold_start_rows
from hpa_experiments.bench_log import JOB_RESULTS_FILE, NO_BLOCK, OK, JobResult, parse_bench_log, write_job_results
from hpa_experiments.log_times import INITIAL_START_COLUMN, INITIAL_TEST_COLUMN, split_stamped
from tests.support import kube_emulator
from tests.support.kube_emulator import KubeEmulator
from tests.support.synthetic_runs import T0, write_run
from tests.test_client_results_kube import NS, _backend
from tests.test_kube_backend import launch

kube_cluster = kube_emulator.kube_cluster  # the shared fixture

REAL_LOG = next(Path("/work/shared/reference-runs/latency-vs-load/runs").glob("*/job-logs/*-g7ngv.log.gz"), None)


def _real_log() -> str:
    if REAL_LOG is None:
        pytest.fail("the reference job logs are missing (/work/shared/reference-runs)")
    with gzip.open(REAL_LOG, "rt", encoding="utf-8") as fh:
        return fh.read()


def _times(text: str, start: float, initial_s: float) -> list[float]:
    """A time per line: `start` up to the initial test's first line, `start + initial_s` from its last."""
    times, t = [], start
    for line in kube_emulator._log_lines(text):
        if line.strip() == "Initial test run completed.":
            t = start + initial_s
        times.append(t)
    return times


def test_a_real_log_with_line_times_gives_the_plain_log_and_the_initial_test_span() -> None:
    text = _real_log()
    lines = kube_emulator._log_lines(text)
    times = _times(text, T0 + 0.123456789, 41.5)
    stamped = "".join(f"{kube_emulator._rfc3339_nano(t)} {line}" for t, line in zip(times, lines, strict=True))
    plain, marks = split_stamped(stamped)
    assert plain == text  # bench_log.py and the saved log see what the container printed
    assert parse_bench_log(plain).status == OK
    assert marks[INITIAL_START_COLUMN] == pytest.approx(T0 + 0.123, abs=1e-3)
    assert marks[INITIAL_TEST_COLUMN] == pytest.approx(41.5, abs=1e-3)
    assert split_stamped(text) == (text, {})  # no line times: nothing measured, the text untouched
    cut = "".join(f"2026-12-04T10:00:00Z {line}" for line in lines[:9])  # before "Initial test run completed."
    assert split_stamped(cut)[1] == {}


@pytest.mark.slow  # seconds: the emulator starts (benchmarks/README.md: the fast loop)
def test_the_kube_backend_reads_job_logs_with_line_times(kube_cluster: KubeEmulator) -> None:
    text = "Starting initial single prompt test run...\nWaiting for endpoint\nInitial test run completed.\nrest\n"
    backend = _backend(kube_cluster)
    try:
        backend.start_job(launch("load"))
        pod = kube_cluster.add_job_pod(NS, "load-r1")
        kube_cluster.set_pod_log(NS, pod, text, line_times=[T0 + 1.5, T0 + 1.5, T0 + 38.25, T0 + 38.3])
        logs = backend.job_logs("load-r1")
    finally:
        backend.close()
    assert [(log.text, log.line_times) for log in logs] == [
        (text, {INITIAL_START_COLUMN: T0 + 1.5, INITIAL_TEST_COLUMN: 36.75})
    ]
    asked = [r.params for r in kube_cluster.requests if r.path.endswith("/log")]
    assert asked and all(params.get("timestamps") == "true" for params in asked)


def _run(folder: Path, results: list[JobResult], backend: str = "kubernetes") -> Path:
    # replicas: 1 until 10 s, 0 from 10 s to 60 s, 1 after
    rows = [{"elapsed_s": float(t), "replicas": 1 if t < 10 or t >= 60 else 0} for t in range(0, 100, 5)]
    run = write_run(folder, rows, backend=backend, interval=5.0)
    write_job_results(run / JOB_RESULTS_FILE, results)
    return run


def _result(job: str, start_s: float | None, initial_s: float | None, ttft_p99: float) -> JobResult:
    fields: dict[str, float | int] = {"successful_requests": 100, "ttft_p99_ms": ttft_p99}
    if start_s is not None and initial_s is not None:
        fields |= {INITIAL_START_COLUMN: T0 + start_s, INITIAL_TEST_COLUMN: initial_s}
    return JobResult(job, f"{job}-r1", f"{job}-pod", "vllm bench serve log", OK, "", fields)


def test_client_cold_starts_are_the_initial_tests_of_jobs_that_started_at_zero(tmp_path: Path) -> None:
    results = [
        _result("warm", 2.0, 0.2, 80.0),  # replicas 1 at 2 s
        _result("cold", 22.0, 41.25, 9000.0),  # replicas 0 at 22 s (sample at 20 s)
        _result("colder", 55.0, 6.5, 4000.0),  # still 0 at 55 s
        _result("untimed", None, None, 70.0),  # a log without line times: not in the list
        JobResult("broken", "broken-r1", "p", "vllm bench serve log", NO_BLOCK, "no result block"),
    ]
    summary = compute_kpis(load_run(_run(tmp_path / "run", results)))
    cold = summary["cold_starts"]
    assert cold["source"] is None  # no requests.csv: no server side
    client = cold["client"]
    assert client["measured"] is True
    assert [(j["job"], j["start_s"], j["replicas_at_start"], j["from_zero"]) for j in client["jobs"]] == [
        ("warm", 2.0, 1, False),
        ("cold", 22.0, 0, True),
        ("colder", 55.0, 0, True),
    ]
    assert client["jobs"][1]["initial_test_s"] == 41.25 and client["jobs"][1]["ttft_p99_ms"] == 9000.0
    assert client["cold_start_s"] == {"count": 2, "mean": 23.875, "min": 6.5, "max": 41.25}
    rows = {(what, value) for _, what, value in cold_start_rows(cold)}
    assert ("client: initial request at 0 replicas, sent to completed mean / min / max", "23.9 s / 6.5 s / 41.2 s") in (
        rows
    )
    assert ("client: job cold", "initial request 41.2 s, then TTFT p99 9,000 ms") in rows


def test_without_line_times_the_client_side_says_not_measured(tmp_path: Path) -> None:
    run = _run(tmp_path / "run", [_result("untimed", None, None, 70.0)], backend="simulation")
    client = compute_kpis(load_run(run))["cold_starts"]["client"]
    assert client["measured"] is False and client["cold_start_s"] is None
    assert client["reason"] == "the twin's simulated client log has no line times"
    server_saw_some = {"episodes": 1, "cold_start_s": {"count": 0}, "failed_no_replica": 0}
    rows = cold_start_rows(
        server_saw_some | {"requests_at_zero": 1, "zero_replicas_s": 50.0, "source": "requests.csv", "client": client}
    )
    assert rows[-1] == (
        "cold starts",
        "client: initial request at 0 replicas, sent to completed",
        "not measured (the twin's simulated client log has no line times)",
    )
