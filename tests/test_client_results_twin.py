"""Client-side results on the twin: the result block computed from requests.csv, job-logs/ and
job-results.csv of a short simulated run, the results grace, and a Job that never prints."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from hpa_experiments.backends.factory import BackendOptions, make_backend
from hpa_experiments.backends.sim.bench_client import bench_fields, weighted_percentiles
from hpa_experiments.backends.sim.job_tally import JobRows, JobTally, decimal_round
from hpa_experiments.bench_log import BASE_COLUMNS, JOB_RESULTS_FILE, NO_BLOCK, OK
from hpa_experiments.config import load_config
from hpa_experiments.errors import ConfigError
from hpa_experiments.plan import build_plan
from hpa_experiments.rundir import REQUEST_COLUMNS
from hpa_experiments.runner import Runner

REPO = Path(__file__).resolve().parents[1]
HEADER = ",".join(REQUEST_COLUMNS)


def _tally(completed: list[tuple[float, float, float, int, int]], ended: list[tuple[float, float, str]]) -> JobTally:
    tally = JobTally(t0=0.0)
    if completed:
        sent, first, end, prompt, output = (np.array(column) for column in zip(*completed, strict=True))
        tally.completed(sent, first, end, prompt, output)
    for sent, end, outcome in ended:
        tally.ended(sent, end, outcome)
    return tally


def test_fields_by_hand() -> None:
    """Three completed requests and one rejected; every number worked out below."""
    tally = _tally(
        # sent, first token, end, prompt, output
        [
            (10.0, 10.1, 10.5, 10, 5),  # tokens at 10.1 .. 10.5 every 0.1 s
            (10.7, 10.9, 11.3, 20, 3),  # tokens at 10.9, 11.1, 11.3
            (11.0, 11.3, 11.3, 30, 1),  # one token at 11.3
        ],
        [(11.5, 11.5, "rejected")],
    )
    f = bench_fields(tally.rows(), 2.0, 512, {})
    assert f["successful_requests"] == 3 and f["failed_requests"] == 1
    assert f["max_concurrency"] == 512 and f["request_rate_configured_rps"] == 2.0
    assert f["duration_s"] == pytest.approx(1.5)  # first send 10.0 .. last response 11.5 (the rejection)
    assert (f["total_input_tokens"], f["total_generated_tokens"]) == (60, 9)  # successful requests only
    assert f["request_throughput_rps"] == pytest.approx(3 / 1.5)
    assert f["output_throughput_tok_s"] == pytest.approx(9 / 1.5)
    assert f["total_throughput_tok_s"] == pytest.approx(69 / 1.5)
    # TTFT [100, 200, 300]: P99 at position 0.99 * 2 = 1.98 -> 200 + 0.98 * 100
    assert (f["ttft_mean_ms"], f["ttft_median_ms"], f["ttft_p99_ms"]) == pytest.approx((200, 200, 298))
    # TPOT over requests with >= 2 tokens: [100, 200]
    assert (f["tpot_mean_ms"], f["tpot_median_ms"], f["tpot_p99_ms"]) == pytest.approx((150, 150, 199))
    # ITL gaps: 4 x 100 and 2 x 200; mean (400 + 400) / 6; median position 2.5 -> 100; P99 4.95 -> 200
    assert (f["itl_mean_ms"], f["itl_median_ms"], f["itl_p99_ms"]) == pytest.approx((800 / 6, 100, 200))
    # E2EL [300, 500, 600]
    assert (f["e2el_mean_ms"], f["e2el_median_ms"], f["e2el_p99_ms"]) == pytest.approx((1400 / 3, 500, 598))
    # seconds since 10.0: tokens 5 (req 1) + 1 (req 2) in second 0, 2 + 1 in second 1
    assert f["peak_output_throughput_tok_s"] == 6
    # requests active per whole second: 1 and 2 in second 0, 2 and 3 in second 1
    assert f["peak_concurrent_requests"] == 2


def test_a_job_without_requests_prints_zeros() -> None:
    f = bench_fields(JobTally(t0=0.0).rows(), 2.0, math.inf, {})
    assert f["successful_requests"] == 0 and f["duration_s"] == 0.0 and f["ttft_p99_ms"] == 0.0


def test_decimal_round_is_python_formatting_exactly() -> None:
    """Random values, values one ulp around exact halves (0.0625 at 3 decimals is a tie) and the
    magnitudes of run times (up to 10^4 s at 6 decimals): the same doubles as reading the text back."""
    rng = np.random.default_rng(3)
    for digits, scale in ((3, 1e3), (3, 1e6), (6, 1e4), (6, 1.0)):
        x = rng.random(200_000) * scale
        halves = (np.floor(x[:2000] * 10**digits) + 0.5) / 10**digits
        ties = np.floor(x[:2000]) + 0.0625 * (digits == 3) + 2.0**-21 * (digits == 6)
        x = np.concatenate([x, halves, np.nextafter(halves, 0), np.nextafter(halves, np.inf), ties, -x[:100]])
        expected = np.array([float(f"{v:.{digits}f}") for v in x])
        assert np.array_equal(decimal_round(x, digits), expected), (digits, scale)


def test_weighted_percentiles_equal_numpy_on_the_repeated_values() -> None:
    rng = np.random.default_rng(1)
    values, weights = rng.normal(50, 10, 40), rng.integers(0, 30, 40)
    qs = [0, 1, 50, 90, 99, 99.9, 100]
    expected = [np.percentile(np.repeat(values, weights), q) for q in qs]
    assert weighted_percentiles(values, qs, weights) == pytest.approx(expected)


def _config(folder: Path, grace: str | None = None, rate: float = 4, duration: float = 40) -> Path:
    doc = {
        "name": "client",
        "backend": "simulation",
        "hpa": {"enabled": True, "manifest": str(REPO / "manifests" / "hpa-vllm-combined.yaml")},
        "jobs": [
            {
                "name": "a",
                "rate": rate,
                "duration": duration,
                "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml"),
            }
        ],
        "values": {"max_concurrency": 512, "output_len": 64, "metric_percentiles": "90,99"},
        "simulation": {"seed": 5, "parameters": {"job_start_delay_s": 10.0}},
        **({"output": {"results_grace": grace}} if grace is not None else {}),
    }
    path = folder / "client.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _run(config_path: Path, out: Path) -> Path:
    config = load_config(config_path)
    plan = build_plan(config)
    backend, names = make_backend("simulation", config, plan, "r1", BackendOptions())
    result = Runner(config, plan, backend, base_dir=out, metric_names=names, handle_signals=False, run_id="r1").run()
    assert result.status == "completed", result.reason
    return result.run_dir


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _literal_vllm(rows: list[dict[str, str]]) -> dict[str, float]:
    """The numbers computed the plain way, following vllm's calculate_metrics loop by loop."""
    ok = [r for r in rows if r["outcome"] == "completed"]
    start = [float(r["arrival_s"]) for r in ok]
    ttft = [float(r["ttft_ms"]) for r in ok]
    e2e = [float(r["e2e_ms"]) for r in ok]
    out = [int(r["output_tokens"]) for r in ok]
    tpot = [(e - t) / (n - 1) for e, t, n in zip(e2e, ttft, out, strict=True) if n > 1]
    itl: list[float] = []
    for e, t, n in zip(e2e, ttft, out, strict=True):
        itl += [(e - t) / (n - 1)] * (n - 1) if n > 1 else []
    ends = [float(r["end_s"]) for r in rows]
    duration = max(ends) - min(float(r["arrival_s"]) for r in rows)
    origin = min(start)
    seconds = math.ceil(max(s + e / 1000 for s, e in zip(start, e2e, strict=True)) - origin) + 1
    tokens, active = [0] * seconds, [0] * seconds
    for s, t, e, n in zip(start, ttft, e2e, out, strict=True):
        first = s + t / 1000
        gap = (s + e / 1000 - first) / (n - 1) if n > 1 else 0.0
        for k in range(n):
            tokens[int(first + k * gap - origin)] += 1
        for sec in range(int(s - origin), int(s + e / 1000 - origin) + 1):
            active[sec] += 1
    return {
        "successful_requests": len(ok),
        "failed_requests": sum(r["outcome"] in ("rejected", "aborted_scale_down", "failed_no_replica") for r in rows),
        "duration_s": duration,
        "total_input_tokens": sum(int(r["prompt_tokens"]) for r in ok),
        "total_generated_tokens": sum(out),
        "request_throughput_rps": len(ok) / duration,
        "output_throughput_tok_s": sum(out) / duration,
        "total_throughput_tok_s": (sum(out) + sum(int(r["prompt_tokens"]) for r in ok)) / duration,
        "ttft_mean_ms": float(np.mean(ttft)),
        "ttft_median_ms": float(np.median(ttft)),
        "ttft_p90_ms": float(np.percentile(ttft, 90)),
        "ttft_p99_ms": float(np.percentile(ttft, 99)),
        "tpot_mean_ms": float(np.mean(tpot)),
        "tpot_p99_ms": float(np.percentile(tpot, 99)),
        "itl_mean_ms": float(np.mean(itl)),
        "itl_median_ms": float(np.median(itl)),
        "itl_p99_ms": float(np.percentile(itl, 99)),
        "e2el_mean_ms": float(np.mean(e2e)),
        "e2el_p90_ms": float(np.percentile(e2e, 90)),
        "peak_output_throughput_tok_s": max(tokens),
        "peak_concurrent_requests": max(active),
    }


def test_short_run_job_results_match_requests_csv(tmp_path: Path) -> None:
    run_dir = _run(_config(tmp_path), tmp_path / "out")
    (row,) = _read(run_dir / JOB_RESULTS_FILE)
    assert (row["job"], row["resource_name"], row["status"], row["source"]) == ("a", "a-r1", OK, "twin requests.csv")
    requests = _read(run_dir / "requests.csv")
    assert {r["outcome"] for r in requests} <= {"completed", "rejected", "aborted_scale_down", "failed_no_replica"}
    expected = _literal_vllm(requests)
    assert expected["successful_requests"] > 100  # 4 req/s for 40 s
    for column, value in expected.items():
        assert float(row[column]) == pytest.approx(value, abs=0.0051), column  # the block prints 2 decimals
    (log,) = list((run_dir / "job-logs").iterdir())
    assert log.name == "a-r1-twin_bench.log"
    assert "============ Serving Benchmark Result ============" in log.read_text()
    events = _read(run_dir / "events.csv")
    kinds = [e["kind"] for e in events]
    assert kinds.index("job_grace") < kinds.index("job_results") < kinds.index("job_stopped")
    (phase,) = _read(run_dir / "phases.csv")
    # deleted once the client had finished: after its planned end, before the end of the grace
    assert 40 < float(phase["actual_end_s"]) < 40 + 120
    ended = max(float(r["end_s"]) for r in requests)
    assert float(phase["actual_end_s"]) - ended <= 5.0 + 1e-6  # noticed at the next 5 s check


def _rows_from_csv(rows: list[dict[str, str]], job: str) -> JobRows:
    """The job's rows of requests.csv read back, as the result block used to get them."""
    mine = [r for r in rows if r["job"] == job]
    ok = [r for r in mine if r["outcome"] == "completed"]
    ends = [float(r["end_s"]) for r in mine if r["end_s"]]

    def column(name: str, rows: list[dict[str, str]]) -> np.ndarray:
        return np.array([float(r[name]) for r in rows], dtype=np.float64)

    return JobRows(
        first_send_s=min(float(r["arrival_s"]) for r in mine) if mine else None,
        last_end_s=max(ends) if ends else None,
        failed=sum(r["outcome"] in ("rejected", "aborted_scale_down", "failed_no_replica") for r in mine),
        prompt_tokens=sum(int(r["prompt_tokens"]) for r in ok),
        arrival_s=column("arrival_s", ok),
        ttft_ms=column("ttft_ms", ok),
        e2e_ms=column("e2e_ms", ok),
        output_tokens=column("output_tokens", ok),
        tpot_ms=column("itl_mean_ms", [r for r in ok if int(r["output_tokens"]) > 1]),
    )


def test_the_tally_holds_exactly_the_values_of_requests_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs, one deleted at its planned end with requests in flight (aborted rows): each job's
    tally, kept while the run goes (rounded in chunks of 100 requests here), equals its rows read
    back from requests.csv, bit for bit."""
    monkeypatch.setattr(JobTally, "_FOLD", 100)
    path = _config(tmp_path, rate=30, duration=30)
    doc = yaml.safe_load(path.read_text())
    doc["jobs"].append({**doc["jobs"][0], "name": "b", "rate": 5, "results_grace": "0s"})
    doc["values"]["max_concurrency"] = 64
    path.write_text(yaml.safe_dump(doc))
    config = load_config(path)
    plan = build_plan(config)
    backend, names = make_backend("simulation", config, plan, "r1", BackendOptions())
    result = Runner(config, plan, backend, base_dir=tmp_path / "out", metric_names=names, run_id="r1").run()
    requests = _read(result.run_dir / "requests.csv")
    tallies = backend.fleet.request_log.tallies  # type: ignore[attr-defined]
    assert set(tallies) == {"a", "b"}
    assert {(r["job"], r["outcome"]) for r in requests} == {
        ("a", "completed"),
        ("b", "completed"),
        ("b", "aborted_job_stopped"),
    }
    for job in ("a", "b"):
        got, want = tallies[job].rows(), _rows_from_csv(requests, job)
        assert len(want.ttft_ms) > 100
        for name in JobRows.__dataclass_fields__:
            a, b = getattr(got, name), getattr(want, name)
            assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, (job, name)
        assert bench_fields(got, 30, 64, {}) == bench_fields(want, 30, 64, {})


def test_a_job_that_never_prints_is_said_so(tmp_path: Path) -> None:
    """A grace shorter than the client's start-up: the Job is deleted still sending, and the run says so."""
    run_dir = _run(_config(tmp_path, grace="2s"), tmp_path / "out")
    (row,) = _read(run_dir / JOB_RESULTS_FILE)
    assert row["status"] == NO_BLOCK and set(row) == set(BASE_COLUMNS)  # no number, not zeros
    assert "still running 2 s after its planned end (jobs[].results_grace)" in row["note"]
    warnings = [e["detail"] for e in _read(run_dir / "events.csv") if e["kind"] == "warning"]
    assert any(w.startswith("a: no vllm bench serve results (no_result_block)") for w in warnings)
    (phase,) = _read(run_dir / "phases.csv")
    assert float(phase["actual_end_s"]) == pytest.approx(42.0)


def test_without_pod_logs_jobs_end_on_plan_and_nothing_is_written(tmp_path: Path) -> None:
    path = _config(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["output"] = {"include_pod_logs": False}
    path.write_text(yaml.safe_dump(doc))
    run_dir = _run(path, tmp_path / "out")
    assert not (run_dir / JOB_RESULTS_FILE).exists() and not (run_dir / "job-logs").exists()
    (phase,) = _read(run_dir / "phases.csv")
    assert float(phase["actual_end_s"]) == pytest.approx(40.0)


def test_results_grace_settings(tmp_path: Path) -> None:
    path = _config(tmp_path, grace="2m")
    doc = yaml.safe_load(path.read_text())
    doc["jobs"].append({**doc["jobs"][0], "name": "b", "results_grace": "0s"})
    path.write_text(yaml.safe_dump(doc))
    config = load_config(path)
    assert [config.results_grace(job) for job in config.jobs] == [120.0, 0.0]
    config.output.include_pod_logs = False
    assert [config.results_grace(job) for job in config.jobs] == [0.0, 0.0]  # no logs kept: no reason to wait
    doc["jobs"][1]["results_grace"] = -1
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "jobs[1].results_grace: must be >= 0 (got -1)" in str(error.value)


class _StopAt:
    """An observer that asks the run to stop at its first row at or after `at` seconds."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.runner: Runner | None = None

    def on_start(self, runner: Runner) -> None:
        self.runner = runner

    def on_row(self, row: dict) -> None:
        if row["elapsed_s"] >= self.at and self.runner is not None:
            self.runner.request_stop("interrupted by SIGINT")

    def on_event(self, elapsed: float, kind: str, detail: str) -> None: ...

    def on_finish(self, result: object) -> None: ...


def test_an_interrupted_run_saves_the_log_and_says_why_there_are_no_results(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path))
    plan = build_plan(config)
    backend, names = make_backend("simulation", config, plan, "r1", BackendOptions())
    runner = Runner(
        config,
        plan,
        backend,
        base_dir=tmp_path / "out",
        metric_names=names,
        handle_signals=False,
        run_id="r1",
        observer=_StopAt(20.0),
    )
    result = runner.run()
    assert result.status == "interrupted"
    (row,) = _read(result.run_dir / JOB_RESULTS_FILE)
    assert row["status"] == NO_BLOCK
    assert row["note"].endswith("; deleted before it finished: the run was interrupted")
    (log,) = list((result.run_dir / "job-logs").iterdir())
    assert log.read_text().endswith("Maximum request concurrency: 512\n")  # started, no result block
