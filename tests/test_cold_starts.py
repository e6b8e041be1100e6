"""Cold-start KPIs from a hand-written requests.csv: episodes, first-request TTFT, refused requests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from hpa_experiments.analysis.cold_starts import cold_start_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.rundir import REQUEST_COLUMNS

# (arrival_s, replica, ttft_ms, outcome, gateway_wait_ms)
WAIT_ROWS = [
    (10.0, "vllm-1", 40_100.0, "completed", 40_000.0),  # episode 1: pod Ready at 50 s
    (12.0, "vllm-1", 38_200.0, "completed", 38_000.0),
    (60.0, "vllm-1", 30.0, "completed", 0.0),  # a pod is Ready
    (200.0, "vllm-2", 45_050.0, "completed", 45_000.0),  # episode 2: Ready at 245 s, no request in between
    (201.0, "", None, "aborted_job_stopped", 19_000.0),  # held, its Job stopped at 220 s before any pod
    (250.0, "vllm-2", 25.0, "completed", 0.0),
]


def make_run(folder: Path, rows: list[tuple], columns: tuple[str, ...] = REQUEST_COLUMNS) -> Path:
    folder.mkdir(parents=True)
    info = {"id": "r", "name": "t", "backend": "simulation", "status": "completed", "interval_s": 5, "config": {}}
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.csv").write_text("elapsed_s,replicas\n0,1\n5,0\n10,0\n15,1\n")
    with (folder / "requests.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for i, (arrival, replica, ttft, outcome, wait) in enumerate(rows):
            cells = {
                "request_id": i + 1,
                "job": "a",
                "replica": replica,
                "arrival_s": arrival,
                "end_s": arrival + 60,
                "queue_wait_ms": "",
                "ttft_ms": "" if ttft is None else ttft,
                "itl_mean_ms": "",
                "e2e_ms": "",
                "prompt_tokens": 10,
                "output_tokens": 5,
                "outcome": outcome,
                "gateway_wait_ms": wait,
            }
            writer.writerow([cells[c] for c in columns])
    return folder


def test_episodes_are_split_where_a_request_reached_a_pod(tmp_path: Path) -> None:
    kpis = cold_start_kpis(load_run(make_run(tmp_path / "run", WAIT_ROWS)))
    assert kpis is not None
    assert kpis["episodes"] == 2 and kpis["requests_at_zero"] == 4 and kpis["failed_no_replica"] == 0
    first, second = kpis["list"]
    # episode 1: first request at 10 s, its TTFT 40.1 s; the first token of any request since then is the same
    assert first == {
        "start_s": 10.0,
        "requests": 2,
        "failed_no_replica": 0,
        "cold_start_s": 40.1,
        "first_token_after_s": 40.1,
    }
    # episode 2: split from episode 1 by the release at 50 s although no request came in between
    assert second == {
        "start_s": 200.0,
        "requests": 2,
        "failed_no_replica": 0,
        "cold_start_s": 45.05,
        "first_token_after_s": 45.05,
    }
    assert kpis["cold_start_s"] == {"count": 2, "mean": 42.575, "min": 40.1, "max": 45.05}
    assert kpis["zero_replicas_s"] == 10.0  # samples at 5 s and 10 s hold 5 s each


def test_refused_requests_have_no_cold_start_but_a_first_token_after(tmp_path: Path) -> None:
    rows = [
        (10.0, "", None, "failed_no_replica", 0.0),
        (11.0, "", None, "failed_no_replica", 0.0),
        (70.0, "vllm-1", 300.0, "completed", 0.0),  # the pod is Ready: first token at 70.3 s
    ]
    kpis = cold_start_kpis(load_run(make_run(tmp_path / "run", rows)))
    assert kpis is not None and kpis["episodes"] == 1 and kpis["failed_no_replica"] == 2
    assert kpis["list"][0]["cold_start_s"] is None and kpis["list"][0]["first_token_after_s"] == 60.3
    assert kpis["cold_start_s"] == {"count": 0, "mean": None, "min": None, "max": None}


def test_no_data_without_the_gateway_column(tmp_path: Path) -> None:
    old = tuple(c for c in REQUEST_COLUMNS if c != "gateway_wait_ms")
    run = load_run(make_run(tmp_path / "run", WAIT_ROWS, old))
    assert cold_start_kpis(run) is None
