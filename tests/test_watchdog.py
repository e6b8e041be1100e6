"""The watchdog: an empty column or an HPA that cannot act is an event at once and a note in the summary.

Unit tests on rows; a twin run (virtual clock: a 150 s run in seconds) for the runner hook,
summary.json and the printed headline; the emulator + real Prometheus for an HPA whose
condition turns False mid-run (the test plays the HPA controller, which the emulator lacks).
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time

import pytest
import yaml

from hpa_experiments.backends.base import ScalingSnapshot
from hpa_experiments.watchdog import Watchdog
from tests.support import kube_emulator
from tests.support.kube_emulator import HPAS, KubeEmulator
from tests.test_run_kubernetes_e2e import NS, hpa_exp, prom, run_dir, wait_for_run_start, write_config  # noqa: F401
from tests.test_sim_run import REPO, small_config

kube_cluster = kube_emulator.kube_cluster


def row(t: float, offered: float = 5.0, **values: float | None) -> dict:
    return {"elapsed_s": t, "offered_rps": offered, **values}


HPA = ScalingSnapshot(taken_at=0, hpa_found=True)


def test_a_gauge_empty_for_a_minute_is_said_once_then_its_return():
    dog = Watchdog(["prom_requests_waiting"])
    said = []
    for t in range(0, 100, 5):
        value = None if 10 <= t < 85 else 3.0
        said += [(t, *e) for e in dog.check(row(t, prom_requests_waiting=value), HPA)]
    assert said == [
        (
            70,
            "data_missing",
            "prom_requests_waiting: no value for 60 s (since 10 s); the cells stay empty: "
            "check the query's series in Prometheus",
        ),
        (85, "data_back", "prom_requests_waiting: values again at 85 s after 75 s without"),
    ]


def test_latency_counts_only_while_load_is_offered():
    dog = Watchdog(["ttft_ms"])
    quiet = [dog.check(row(t, offered=0.0, ttft_ms=None), HPA) for t in range(0, 300, 5)]
    assert not any(quiet)
    starting = [dog.check(row(t, ttft_ms=None, request_rate_per_min=0.0), HPA) for t in range(0, 300, 5)]
    assert not any(starting)  # offered, but no request completed yet: the load generator is starting
    loaded = [e for t in range(300, 400, 5) for e in dog.check(row(t, ttft_ms=None, request_rate_per_min=6.0), HPA)]
    assert loaded == [
        (
            "data_missing",
            "ttft_ms: no value for 60 s (since 300 s while load was offered); "
            "the cells stay empty: check the query's series in Prometheus",
        )
    ]


def test_hpa_metrics_count_only_while_the_hpa_exists():
    dog = Watchdog(["num_requests_waiting"])
    no_hpa = ScalingSnapshot(taken_at=0, hpa_found=False)
    assert not any(dog.check(row(t, num_requests_waiting=None), no_hpa) for t in range(0, 200, 5))


def test_a_condition_turning_false_is_said_at_once():
    dog = Watchdog([])

    def snap(status: str, reason: str) -> ScalingSnapshot:
        return ScalingSnapshot(
            taken_at=0,
            hpa_found=True,
            conditions=(
                {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
                {"type": "ScalingActive", "status": status, "reason": reason, "message": "m"},
            ),
        )

    assert dog.check(row(0), snap("True", "ValidMetricFound")) == []
    assert dog.check(row(5), snap("False", "FailedGetPodsMetric")) == [
        ("hpa_blocked", "HPA condition ScalingActive is False (FailedGetPodsMetric): m; the HPA cannot scale")
    ]
    assert dog.check(row(10), snap("False", "FailedGetPodsMetric")) == []
    assert dog.check(row(15), snap("True", "ValidMetricFound")) == [
        ("hpa_unblocked", "HPA condition ScalingActive is True again (was FailedGetPodsMetric)")
    ]


def test_a_new_hpa_without_metrics_yet_is_said_only_after_a_minute():
    dog = Watchdog([])
    unknown = ScalingSnapshot(
        taken_at=0,
        hpa_found=True,
        conditions=({"type": "ScalingActive", "status": "False", "reason": "FailedGetPodsMetric", "message": "m"},),
    )
    said = [(t, *e) for t in range(0, 100, 5) for e in dog.check(row(t), unknown)]
    assert said == [
        (
            60,
            "hpa_blocked",
            "HPA condition ScalingActive is False since 0 s (FailedGetPodsMetric): m; the HPA cannot scale",
        )
    ]


@pytest.mark.slow
def test_a_twin_run_with_an_empty_column_warns_and_notes_it_in_the_summary(tmp_path):
    path = small_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["metrics"] = {"prometheus": {"typo": {"query": "sum(vllm:num_request_waiting)"}}}
    path.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "run",
            str(path),
            "--backend",
            "sim",
            "--output-dir",
            str(tmp_path / "out"),
            "--plain",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    (run,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    with (run / "events.csv").open(newline="") as fh:
        events = [e for e in csv.DictReader(fh) if e["kind"] == "data_missing"]
    expected = "query_typo: no value for 60 s (since 0 s); the cells stay empty: check the query's series in Prometheus"
    assert [(e["elapsed_s"], e["detail"]) for e in events] == [("60", expected)]
    assert f"data_missing: {expected}" in done.stdout  # said at once, as the run goes
    summary = json.loads((run / "summary.json").read_text())
    assert summary["alerts"] == [f"at 60 s: {expected}"]
    assert f"at 60 s: {expected}" in summary["notes"]
    assert f"warning: at 60 s: {expected}" in done.stderr  # the headline repeats it


@pytest.mark.slow
def test_an_hpa_condition_turning_false_mid_run_is_an_event_and_a_note(
    kube_cluster: KubeEmulator,
    prom,  # noqa: F811 - the imported fixture
    tmp_path,
):
    config = write_config(tmp_path, [{"name": "load", "rate": 5, "duration": 4}])

    def break_the_hpa() -> None:
        wait_for_run_start(tmp_path / "out")
        time.sleep(1.5)
        kube_cluster.patch(
            HPAS,
            NS,
            "vllm-hpa",
            {
                "status": {
                    "conditions": [
                        {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale", "message": "ok"},
                        {
                            "type": "ScalingActive",
                            "status": "False",
                            "reason": "AmbiguousSelector",
                            "message": "pods by selector app=vllm are controlled by multiple HPAs",
                        },
                    ]
                }
            },
        )

    controller = threading.Thread(target=break_the_hpa)
    controller.start()
    done = subprocess.run(
        hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=90,
    )
    controller.join()
    assert done.returncode == 0, done.stderr + done.stdout
    run = run_dir(tmp_path / "out")
    with (run / "events.csv").open(newline="") as fh:
        blocked = [e for e in csv.DictReader(fh) if e["kind"] == "hpa_blocked"]
    detail = (
        "HPA condition ScalingActive is False (AmbiguousSelector): pods by selector app=vllm are controlled "
        "by multiple HPAs; the HPA cannot scale"
    )
    assert [e["detail"] for e in blocked] == [detail]
    assert 1 <= float(blocked[0]["elapsed_s"]) <= 4
    alerts = json.loads((run / "summary.json").read_text())["alerts"]
    assert alerts == [f"at {float(blocked[0]['elapsed_s']):g} s: {detail}"]
