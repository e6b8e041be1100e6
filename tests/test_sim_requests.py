"""The twin's requests.csv: rows against the vLLM counters Prometheus scraped, determinism, memory."""

from __future__ import annotations

import csv
import json
import math
import tracemalloc
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpa_experiments.backends.factory import BackendOptions, make_backend
from hpa_experiments.backends.sim.backend import SimBackend
from hpa_experiments.backends.sim.fleet import Fleet
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.backends.sim.request_log import RequestLog
from hpa_experiments.backends.sim.serving import Replica, Request
from hpa_experiments.config import load_config
from hpa_experiments.plan import build_plan
from hpa_experiments.rundir import REQUEST_COLUMNS, REQUEST_OUTCOMES, REQUESTS_FILE
from hpa_experiments.runner import Runner
from hpa_experiments.twin_profiles import load_profile

REPO = Path(__file__).resolve().parents[1]
HIGH_LOAD = REPO / "experiment-configs" / "high-load-hpa.yaml"
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"
COMPLETED_TOTAL = 'sum(vllm:request_success_total{finished_reason!="abort"})'
COUNTERS = ("vllm:request_success_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total")

Scrapes = dict[str, list[tuple[float, dict[str, float]]]]  # pod -> [(time, {counter or reason: value})]


class _InterruptAt:
    """Runner observer that asks the run to stop (as Ctrl-C does) at `elapsed_s`."""

    def __init__(self, elapsed_s: float) -> None:
        self.elapsed_s = elapsed_s
        self.runner: Runner | None = None

    def on_start(self, runner: Runner) -> None:
        self.runner = runner

    def on_row(self, row: dict[str, Any]) -> None:
        if row["elapsed_s"] >= self.elapsed_s and self.runner is not None:
            self.runner.request_stop()

    def on_event(self, elapsed: float, kind: str, detail: str) -> None:
        pass

    def on_finish(self, result: Any) -> None:
        pass


class _Recording:
    """The backend's TSDB with its scrapes seen on the way (a wrapper: a mypyc-compiled TimeSeriesDB's
    methods cannot be replaced on the instance)."""

    def __init__(self, tsdb: Any, append_many: Any) -> None:
        self._tsdb = tsdb
        self.append_many = append_many

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tsdb, name)


def run_twin(config_path: Path, out: Path, interrupt_at: float | None = None) -> tuple[SimBackend, Path, Scrapes]:
    """Run a config on the twin in this process; also returns every scraped counter value per pod.

    With `interrupt_at` the run is interrupted then and its Jobs are kept (`--keep-jobs`)."""
    config = load_config(config_path)
    config.output.results_grace = 0.0  # Jobs are deleted at their planned end, busy or not (aborted_job_stopped)
    plan = build_plan(config)
    backend, names = make_backend("simulation", config, plan, "r1", BackendOptions())
    assert isinstance(backend, SimBackend)
    scrapes: Scrapes = defaultdict(list)
    append_many = backend.tsdb.append_many

    def recording(t: float, samples: list[tuple[dict[str, str], float]], by_handle: Iterable[Any] = ()) -> None:
        handled = [(handles, list(vs)) for handles, vs in by_handle]  # the pods' series, looked up once
        named = [(series.label_map, v) for handles, vs in handled for series, v in zip(handles, vs, strict=True)]
        values: dict[str, dict[str, float]] = defaultdict(dict)
        for labels, value in [*named, *samples]:
            name = labels["__name__"]
            if name == COUNTERS[0]:
                values[labels["pod"]][labels["finished_reason"]] = value
            elif name in COUNTERS:
                values[labels["pod"]][name] = value
        for pod, counters in values.items():
            scrapes[pod].append((t, counters))
        append_many(t, samples, handled)

    backend.tsdb = _Recording(backend.tsdb, recording)  # type: ignore[assignment]
    observer = _InterruptAt(interrupt_at) if interrupt_at is not None else None
    result = Runner(
        config,
        plan,
        backend,
        base_dir=out,
        metric_names=names,
        handle_signals=False,
        keep_jobs=interrupt_at is not None,
        observer=observer,
        run_id="r1",
    ).run()
    assert result.status == ("completed" if interrupt_at is None else "interrupted"), result.reason
    return backend, result.run_dir, scrapes


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    with (run_dir / REQUESTS_FILE).open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == REQUEST_COLUMNS
        return [
            {k: (v if k in ("job", "replica", "outcome") else (float(v) if v != "" else None)) for k, v in row.items()}
            for row in reader
        ]


def fixed_config(folder: Path) -> Path:
    """Two replicas, no HPA: a 200 s job at 12 req/s stopped while busy, then 60 s of quiet."""
    config = {
        "name": "fixed",
        "backend": "simulation",
        "hpa": {"enabled": False},
        "jobs": [{"name": "steady", "rate": 12, "duration": 200, "manifest": str(JOB_TEMPLATE)}],
        "values": {"max_concurrency": 512, "output_len": 1024},
        "cooldown": {"enabled": True, "duration": 60},
        "metrics": {"prometheus": {"completed_total": {"query": COMPLETED_TOTAL}}},
        "simulation": {"seed": 11, "initial_replicas": 2, "parameters": {"job_start_delay_s": 5.0}},
    }
    path = folder / "fixed.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def high_load(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimBackend, Path, Scrapes]:
    return run_twin(HIGH_LOAD, tmp_path_factory.mktemp("high-load"))


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimBackend, Path, Scrapes]:
    folder = tmp_path_factory.mktemp("fixed")
    return run_twin(fixed_config(folder), folder)


def test_completed_rows_between_two_scrapes_equal_the_success_counter_increase(high_load) -> None:
    _, run_dir, scrapes = high_load
    t0 = float(json.loads((run_dir / "run.json").read_text())["t0_unix"])
    rows = read_rows(run_dir)
    ends: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["outcome"] == "completed":
            ends[row["replica"]].append(t0 + row["end_s"])
    assert len(scrapes) >= 5  # the run scaled out, so several pods were scraped
    checked = 0
    for pod, series in scrapes.items():
        previous_t, previous = -math.inf, 0.0  # a new pod's counters start at 0
        for t, counters in series:
            done = counters["stop"] + counters["length"]
            in_window = sum(previous_t < end <= t for end in ends[pod])
            assert done - previous == in_window, (pod, t)
            previous_t, previous = t, done
            checked += 1
        assert previous <= len(ends[pod])  # completions after a pod's last scrape are not counted anywhere
    assert checked > 50


def test_every_request_sent_has_exactly_one_row_and_outcomes_match_the_fleet(high_load) -> None:
    backend, run_dir, _ = high_load
    rows = read_rows(run_dir)
    jobs = backend.fleet.jobs.values()
    assert len(rows) == sum(job.sent for job in jobs)
    assert len({(r["job"], r["request_id"]) for r in rows}) == len(rows)
    by_outcome = {outcome: sum(r["outcome"] == outcome for r in rows) for outcome in REQUEST_OUTCOMES}
    assert by_outcome["completed"] == sum(job.completed for job in jobs)
    assert by_outcome["aborted_scale_down"] == backend.fleet.aborted_by_scale_down > 0
    assert by_outcome["aborted_job_stopped"] == sum(job.aborted for job in jobs) > 0
    assert by_outcome["running_at_end"] == 0  # the runner deleted every Job
    assert {r["job"] for r in rows} == {"phase-1-high-load", "phase-2-peak-load", "phase-3-sustained"}


def test_cells_are_consistent_and_missing_values_are_empty_not_zero(high_load) -> None:
    _, run_dir, _ = high_load
    for row in read_rows(run_dir):
        if row["outcome"] == "completed":
            assert 0 <= row["queue_wait_ms"] <= row["ttft_ms"] <= row["e2e_ms"]
            assert row["end_s"] == pytest.approx(row["arrival_s"] + row["e2e_ms"] / 1000, abs=2e-6)
            if row["output_tokens"] > 1:
                gaps = (row["e2e_ms"] - row["ttft_ms"]) / (row["output_tokens"] - 1)
                assert row["itl_mean_ms"] == pytest.approx(gaps, abs=2e-3)
            else:
                assert row["itl_mean_ms"] is None
        else:
            assert row["e2e_ms"] is None and row["itl_mean_ms"] is None
            assert (row["ttft_ms"] is None) == (row["output_tokens"] == 0)
            if row["queue_wait_ms"] is None:
                assert row["ttft_ms"] is None
        assert row["replica"] != "" or row["queue_wait_ms"] is None


def test_totals_match_the_final_counters_of_each_pod(fixed) -> None:
    """Fixed replicas: every counter of a pod is still there at the end, so totals must agree."""
    backend, run_dir, scrapes = fixed
    rows = read_rows(run_dir)
    assert {r["outcome"] for r in rows} == {"completed", "aborted_job_stopped"}
    for pod, series in scrapes.items():
        last = series[-1][1]
        mine = [r for r in rows if r["replica"] == pod]
        completed = [r for r in mine if r["outcome"] == "completed"]
        aborted = [r for r in mine if r["outcome"] == "aborted_job_stopped"]
        assert last["stop"] + last["length"] == len(completed)
        assert last["abort"] == len(aborted) > 0  # vLLM counts cancelled requests as finished_reason="abort"
        first_tokens = [r for r in mine if r["ttft_ms"] is not None]
        assert last["vllm:prompt_tokens_total"] == sum(r["prompt_tokens"] for r in first_tokens)
        # a cancelled decoding sequence still gets the token of the step in progress when it is cancelled
        extra = last["vllm:generation_tokens_total"] - sum(r["output_tokens"] for r in mine)
        assert 0 <= extra <= sum(r["output_tokens"] > 0 for r in aborted)
    assert len(rows) == sum(job.sent for job in backend.fleet.jobs.values())


def test_the_completed_count_in_metrics_csv_equals_the_rows_completed_by_the_last_scrape(fixed) -> None:
    """Through the monitor: an extra PromQL column of metrics.csv against requests.csv, tick by tick."""
    _, run_dir, scrapes = fixed
    t0 = float(json.loads((run_dir / "run.json").read_text())["t0_unix"])
    scrape_times = sorted({t for series in scrapes.values() for t, _ in series})
    ends = sorted(t0 + r["end_s"] for r in read_rows(run_dir) if r["outcome"] == "completed")
    with (run_dir / "metrics.csv").open(newline="") as fh:
        ticks = [(float(row["elapsed_s"]), row["query_completed_total"]) for row in csv.DictReader(fh)]
    compared = 0
    for elapsed, value in ticks:
        last_scrape = max((t for t in scrape_times if t <= t0 + elapsed), default=None)
        if last_scrape is None:
            assert value == ""
            continue
        assert float(value) == sum(end <= last_scrape for end in ends), elapsed
        compared += 1
    assert compared > 40 and float(ticks[-1][1]) == len(ends)


def test_the_same_seed_gives_a_byte_identical_file(fixed, tmp_path: Path) -> None:
    _, first, _ = fixed
    _, second, _ = run_twin(fixed_config(tmp_path), tmp_path)
    assert (first / REQUESTS_FILE).read_bytes() == (second / REQUESTS_FILE).read_bytes()


def test_requests_in_flight_at_the_end_are_written_as_running_at_end(tmp_path: Path) -> None:
    backend, run_dir, _ = run_twin(fixed_config(tmp_path), tmp_path, interrupt_at=100.0)
    rows = read_rows(run_dir)
    running = [r for r in rows if r["outcome"] == "running_at_end"]
    assert 0 < len(running) == sum(len(job.in_flight) for job in backend.fleet.jobs.values())
    assert all(r["end_s"] is None for r in running)
    assert not [r for r in rows if r["outcome"] == "aborted_job_stopped"]
    assert len(rows) == sum(job.sent for job in backend.fleet.jobs.values())


class _Client:
    job = "steady"


@pytest.mark.slow
def test_the_log_keeps_no_rows_in_memory(tmp_path: Path) -> None:
    """200,000 rows through the writer: the rows' text is not kept; Python memory grows by the job
    tally's 36 bytes per completed request (job_tally.py) and less than the write buffer besides."""
    log = RequestLog(tmp_path / REQUESTS_FILE, 0.0)
    req = Request(1, 10.0, 200, 300, _Client())
    req.scheduled_t, req.first_token_t = 10.01, 10.05
    req.replica = Replica(load_profile(), pod="vllm-0")  # a real one: a compiled Request (twin_core) takes no other
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(200_000):
        req.uid = i
        log.completed(req, 12.0 + i * 1e-3)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    log.close([], 300.0)
    # the 1 MiB buffer lives outside Python's allocator; the tally's arrays over-allocate by up to 1/8
    assert grown < 200_000 * 36 * 9 / 8 + 1024 * 1024  # + the tally's raw buffer (16,384 requests)
    size = (tmp_path / REQUESTS_FILE).stat().st_size
    assert size > 200_000 * 50
    with (tmp_path / REQUESTS_FILE).open() as fh:
        assert sum(1 for _ in fh) == 200_001


def gateway_fleet(tmp_path: Path) -> tuple[Fleet, LoadGenerator, RequestLog]:
    """No pod at first: requests wait at the gateway until the one pod created at 0 s is Ready."""
    profile = load_profile(overrides={"job_start_delay_s": 0.0})
    fleet = Fleet(profile, seed=4, initial_replicas=0)
    log = RequestLog(tmp_path / REQUESTS_FILE, 0.0)
    fleet.request_log = log
    job = LoadGenerator("only-r1", profile, rate=4.0, start_t=0.0, seed=9, job="only")
    fleet.add_job(job)
    fleet.scale_to(1, 0.0)
    return fleet, job, log


def test_requests_waiting_at_the_gateway_count_that_wait_in_queue_wait_and_ttft(tmp_path: Path) -> None:
    fleet, job, log = gateway_fleet(tmp_path)
    ready_t = fleet.pods[0].ready_t
    fleet.advance_to(ready_t + 60.0)
    fleet.stop_job("only-r1", ready_t + 60.0)
    log.close(fleet.in_flight(), ready_t + 60.0)
    rows = read_rows(tmp_path)
    early = [r for r in rows if r["arrival_s"] < ready_t]
    assert len(early) > 100 and all(r["replica"] == "vllm-0" for r in rows)
    for row in early:
        if row["outcome"] == "completed":
            assert row["queue_wait_ms"] >= (ready_t - row["arrival_s"]) * 1000 - 1e-3
            assert row["ttft_ms"] > row["queue_wait_ms"]
    assert len(rows) == job.sent


def test_requests_cancelled_at_the_gateway_have_no_replica_wait_or_tokens(tmp_path: Path) -> None:
    fleet, job, log = gateway_fleet(tmp_path)
    fleet.advance_to(30.0)
    fleet.stop_job("only-r1", 30.0)
    log.close(fleet.in_flight(), 30.0)
    rows = read_rows(tmp_path)
    assert len(rows) == job.sent > 100
    for row in rows:
        assert row["outcome"] == "aborted_job_stopped" and row["end_s"] == 30.0
        assert row["replica"] == "" and row["queue_wait_ms"] is None and row["ttft_ms"] is None
        assert row["output_tokens"] == 0


@pytest.mark.parametrize("read_metrics", [False, True])
def test_tokens_by_counts_the_decode_steps_ended_by_then(read_metrics: bool) -> None:
    """One sequence decoding alone: token k+1 comes k decode steps after the first; reads must not shift it."""
    profile = load_profile(overrides={"job_start_delay_s": 0.0})
    engine = Replica(profile)
    req = Request(1, 0.0, 100, 500)
    engine.submit(req, 0.0)
    engine.advance_to(0.5)
    assert req.first_token_t is not None
    step = max(profile.step_floor_s, profile.step_base_s + profile.step_per_decode_seq_s)  # the roofline
    for t in (0.5, 0.731, 1.2, 2.0):
        if read_metrics:
            engine.metric_families(t)  # applies the decode step in progress to the counters
        engine.advance_to(t)
        assert engine.tokens_by(req, t) == 1 + math.floor((t - req.first_token_t) / step + 1e-9)
    (taken,) = engine.take_all(2.5)
    assert taken is req and req.generated == 1 + math.floor((2.5 - req.first_token_t) / step + 1e-9)


def test_requests_that_can_never_fit_the_kv_cache_are_rejected_rows(tmp_path: Path) -> None:
    profile = load_profile(
        overrides={
            "job_start_delay_s": 0.0,
            "kv_capacity_tokens": 1024,  # < prompt + 1024
            "natural_output_len_mean": None,
        }
    )
    fleet = Fleet(profile, seed=4, initial_replicas=1)
    log = RequestLog(tmp_path / REQUESTS_FILE, 0.0)
    fleet.request_log = log
    job = LoadGenerator("only-r1", profile, rate=4.0, start_t=0.0, seed=9, job="only", output_len=1024)
    fleet.add_job(job)
    fleet.advance_to(20.0)
    log.close(fleet.in_flight(), 20.0)
    rows = read_rows(tmp_path)
    assert len(rows) == job.sent == job.failed > 50
    for row in rows:
        assert row["outcome"] == "rejected" and row["replica"] == "vllm-0" and row["end_s"] == row["arrival_s"]
        assert row["queue_wait_ms"] is None and row["ttft_ms"] is None and row["output_tokens"] == 0
