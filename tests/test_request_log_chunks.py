"""RequestLog's chunked rows change nothing: the same requests.csv and job tallies however they are cut.

Completed requests are kept and written `CHUNK_ROWS` at a time through csv_columns.py (numpy),
fewer than `SMALL_CHUNK` row by row in Python, and any other outcome's row first writes what is
kept.  One twin scenario, played with the shipped sizes, with every row through Python, with
chunks of 100, and with each completed row written the moment it ends (what the log did before
it kept rows: the file is then in the order the fleet reported the ends), must give byte-identical
files and equal tallies.  The log is watched through the module's `format_rows` (one call per
chunk) and `JobTally.completed_one` (one call per row written one by one), which are looked up at
each call also when request_log.py runs compiled (its classes cannot be subclassed then).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpa_experiments.backends.sim import request_log
from hpa_experiments.backends.sim.csv_columns import Column
from hpa_experiments.backends.sim.fleet import Fleet
from hpa_experiments.backends.sim.job_tally import JobRows, JobTally
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.backends.sim.request_log import RequestLog
from hpa_experiments.backends.sim.serving import Replica, Request
from hpa_experiments.rundir import REQUEST_OUTCOMES
from hpa_experiments.twin_profiles import load_profile
from tests.test_client_results_twin import _rows_from_csv

PROFILE = {
    "pod_pending_s": 2.0,
    "pod_load_mean_s": 15.0,
    "pod_load_spread_s": 5.0,
    "pod_image_cached_share": 0.5,
    "readiness_initial_delay_s": 10.0,
    "readiness_period_s": 2.0,
    "job_start_delay_s": 0.0,
    "kv_capacity_tokens": 20_000,
    "natural_output_len_mean": None,  # output lengths as asked: "huge" never fits, "one" has no ITL
    "gateway_at_zero": "fail",
}
JOBS: list[dict[str, Any]] = [
    {"name": "short", "rate": 400.0, "start_t": 0.0, "seed": 1, "output_len": 4},  # the bulk, stopped busy
    {"name": "one", "rate": 20.0, "start_t": 0.0, "seed": 2, "output_len": 1},  # completed rows with no ITL
    {"name": "long", "rate": 1.0, "start_t": 0.0, "seed": 3, "output_len": 3000},  # in flight at the end
    # rejected, all of them; not before 130 s, so that the first ~54,000 completed rows come in full chunks
    {"name": "huge", "rate": 3.0, "start_t": 130.0, "stop_t": 160.0, "seed": 4, "output_len": 30_000},
]
END = 240.0


@dataclass
class Played:
    text: bytes
    tallies: dict[str, JobRows]
    chunks: list[int] = field(default_factory=list)  # rows of each chunk written through numpy
    rows_one_by_one: int = 0  # completed rows written by Python one at a time


def play(path: Path) -> Played:
    """Scale-down aborts, a Job deleted mid-flight, rejections, a spell at zero Ready pods (failed
    requests), and requests still in flight at the end, among ~60,000 completed ones."""
    played = Played(b"", {})
    format_rows, completed_one = request_log.format_rows, JobTally.completed_one

    def chunk(columns: Sequence[Column], n: int, python_row: Any) -> str:
        played.chunks.append(n)
        return format_rows(columns, n, python_row)

    def one(tally: JobTally, *values: Any) -> None:
        played.rows_one_by_one += 1
        completed_one(tally, *values)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(request_log, "format_rows", chunk)
        patch.setattr(JobTally, "completed_one", one)
        played.text, played.tallies = _play(path)
    return played


def _play(path: Path) -> tuple[bytes, dict[str, JobRows]]:
    profile = load_profile("llama-3.1-8b-h100", PROFILE)
    fleet = Fleet(profile, seed=5, initial_replicas=8)
    log = RequestLog(path, 0.0)
    fleet.request_log = log
    for spec in JOBS:
        fleet.add_job(LoadGenerator(profile=profile, **spec))
    actions = {
        60.0: lambda t: fleet.scale_to(12, t),
        140.0: lambda t: fleet.scale_to(5, t),
        160.0: lambda t: fleet.stop_job("short", t),
        175.0: lambda t: fleet.scale_to(0, t),
        190.0: lambda t: fleet.scale_to(4, t),
    }
    t = 0.0
    while t < END:
        t += 5.0
        if t in actions:
            actions[t](t)
        fleet.advance_to(t)
    tallies = {job: _copied(tally.rows()) for job, tally in log.tallies.items()}  # before the in-flight rows
    log.close(fleet.in_flight(), t)
    return path.read_bytes(), tallies


def _copied(rows: JobRows) -> JobRows:
    """`rows` with arrays of its own (JobTally.rows gives views of the tally's buffers)."""
    arrays = {k: v.copy() for k, v in vars(rows).items() if isinstance(v, np.ndarray)}
    return replace(rows, **arrays)


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Played:
    return play(tmp_path_factory.mktemp("shipped") / "requests.csv")


def _read(text: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(text.decode().splitlines()))


def test_the_scenario_writes_every_outcome_in_chunks_and_small_batches(shipped: Played) -> None:
    """Guards the tests below: every path of the log is taken."""
    rows = _read(shipped.text)
    outcomes = Counter(r["outcome"] for r in rows)
    assert set(outcomes) == set(REQUEST_OUTCOMES), outcomes
    assert outcomes["completed"] > 3 * request_log.CHUNK_ROWS
    assert any(r["outcome"] == "completed" and r["itl_mean_ms"] == "" for r in rows)
    assert shipped.chunks.count(request_log.CHUNK_ROWS) >= 3
    assert any(request_log.SMALL_CHUNK <= n < request_log.CHUNK_ROWS for n in shipped.chunks)
    assert shipped.rows_one_by_one > 0
    assert sum(shipped.chunks) + shipped.rows_one_by_one == outcomes["completed"]


def test_each_replicas_rows_are_in_time_order(shipped: Played) -> None:
    """The fleet reports each replica's ends in time order (between replicas not quite: an engine
    runs on alone until the next send); that kept rows never pass the rows written after them is
    the each-row-when-it-ends case below."""
    rows = _read(shipped.text)
    last: dict[str, float] = {}
    for row in rows:
        if row["end_s"] != "" and row["replica"] != "":
            assert float(row["end_s"]) >= last.get(row["replica"], 0.0), row
            last[row["replica"]] = float(row["end_s"])
    running = [r["outcome"] == "running_at_end" for r in rows]
    assert running == sorted(running)  # those come last, without an end
    assert all(r["end_s"] == "" for r in rows if r["outcome"] == "running_at_end")


@pytest.mark.parametrize(
    "sizes",
    [
        pytest.param({"SMALL_CHUNK": request_log.CHUNK_ROWS + 1}, id="all-rows-by-python"),
        pytest.param({"CHUNK_ROWS": 100}, id="chunks-of-100"),
        pytest.param({"CHUNK_ROWS": 1}, id="each-row-when-it-ends"),
    ],
)
def test_the_file_and_tallies_do_not_depend_on_how_rows_are_cut(
    shipped: Played, sizes: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in sizes.items():
        monkeypatch.setattr(request_log, name, value)
    other = play(tmp_path / "requests.csv")
    if sizes.get("CHUNK_ROWS") == 100:
        assert other.chunks.count(100) > 400
    else:  # every completed row by Python (with chunks of 1, at the moment the fleet reports it)
        assert other.chunks == []
        assert other.rows_one_by_one > 50_000
    assert other.text == shipped.text
    assert other.tallies.keys() == shipped.tallies.keys()
    for job, want in shipped.tallies.items():
        got = other.tallies[job]
        for name in JobRows.__dataclass_fields__:
            a, b = getattr(got, name), getattr(want, name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), (job, name)
            else:
                assert a == b, (job, name)


def test_the_tallies_hold_the_values_of_the_file(shipped: Played) -> None:
    """Each job's tally, taken before the run's in-flight rows, equals its rows read back, bit for bit."""
    rows = [r for r in _read(shipped.text) if r["outcome"] != "running_at_end"]
    assert set(shipped.tallies) == {spec["name"] for spec in JOBS}
    for job, got in shipped.tallies.items():
        want = _rows_from_csv(rows, job)
        for name in JobRows.__dataclass_fields__:
            a, b = getattr(got, name), getattr(want, name)
            if isinstance(a, np.ndarray):
                assert a.tobytes() == b.tobytes(), (job, name)
            else:
                assert a == b, (job, name)


def test_completed_requests_without_a_client_are_written_in_a_chunk(tmp_path: Path) -> None:
    """No client: the job cell is empty in every row of the chunk (a label column of empty cells)."""
    log = RequestLog(tmp_path / "requests.csv", 0.0)
    engine = Replica(load_profile(), pod="vllm-0")
    for uid in range(1, request_log.SMALL_CHUNK + 1):
        req = Request(uid, 10.0 + uid, 200, 300)
        req.scheduled_t, req.first_token_t, req.arrival_t, req.replica = 10.5 + uid, 10.75 + uid, 10.0 + uid, engine
        log.completed(req, 20.0 + uid)
    log.close([], 100.0)
    rows = _read((tmp_path / "requests.csv").read_bytes())
    assert len(rows) == request_log.SMALL_CHUNK
    assert rows[0]["job"] == "" and rows[0]["replica"] == "vllm-0" and rows[0]["e2e_ms"] == "10000.000"
