"""`hpa-exp run` on the Kubernetes backend, end to end, with real parts.

The Kubernetes API is kmock's emulator over real HTTP (the official client, a kubeconfig);
Prometheus is the real server scraping an exporter with vLLM's metric names and known
observations.  The test plays the HPA controller by patching status.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.support.kube_emulator import JOBS, KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.support.vllm_exporter import scraped_prometheus

REPO = Path(__file__).resolve().parents[1]
NS = "bench"


@pytest.fixture(scope="module")
def prom(tmp_path_factory) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the exporter every second (module-wide: it takes ~6 s to fill)."""
    with scraped_prometheus(tmp_path_factory.mktemp("prom"), NS) as server:
        yield server


def write_config(folder: Path, jobs: list[dict], **extra) -> Path:
    doc = {
        "name": "e2e",
        "namespace": NS,
        "deployment": "vllm",
        "model_name": "m",
        "backend": "kubernetes",
        "hpa": {"enabled": True, "name": "vllm-hpa", "apply": False},
        "jobs": [{"manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml"), **j} for j in jobs],
        "metrics": {"interval": 1, "rate_window": "10s"},
        **extra,
    }
    path = folder / "e2e.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def hpa_exp(*args: str, kube: KubeEmulator, prom_url: str, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hpa_experiments",
        "run",
        *args,
        "--backend",
        "kubernetes",
        "--kubeconfig",
        str(kube.kubeconfig),
        "--prometheus-url",
        prom_url,
        "-o",
        str(out),
        "--plain",
    ]


def run_dir(out: Path) -> Path:
    (found,) = list(out.iterdir())
    return found


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def wait_for_run_start(out: Path, timeout: float = 30.0) -> None:
    """The run directory appears once config and preflight passed, just before t0."""
    deadline = time.monotonic() + timeout
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def job_posts(kube: KubeEmulator) -> list:
    return [r for r in kube.requests if r.method == "POST" and r.path.endswith("/jobs")]


@pytest.mark.slow
def test_parallel_run_records_everything(kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        [
            {"name": "load-a", "rate": 5, "duration": 3},
            {"name": "load-b", "rate": 7, "duration": 3, "start_delay": 1},
        ],
        cooldown={"enabled": True, "duration": 2},
    )

    def play_the_hpa_controller() -> None:
        """Scale to 3 once three rows are on disk, so those rows must still show 1 replica."""
        wait_for_run_start(tmp_path / "out")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            written = list((tmp_path / "out").glob("*/metrics.csv"))
            if written and len(written[0].read_text().splitlines()) >= 4:
                break
            time.sleep(0.02)
        kube_cluster.set_hpa_status(NS, "vllm-hpa", current_replicas=3, desired_replicas=3)
        kube_cluster.set_deployment_replicas(NS, "vllm", replicas=3, ready_replicas=2)

    controller = threading.Thread(target=play_the_hpa_controller)
    controller.start()
    done = subprocess.run(
        hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    controller.join()
    assert done.returncode == 0, done.stderr + done.stdout
    run = run_dir(tmp_path / "out")
    assert {p.name for p in run.iterdir()} >= {
        "run.json",
        "metrics.csv",
        "phases.csv",
        "events.csv",
        "experiment-config.yaml",
    }
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "completed" and info["backend"] == "kubernetes"
    assert info["backend_info"]["context"] == "emulator"

    # Jobs: created once each at the planned time, unique names, run labels, deleted in the background.
    posts = job_posts(kube_cluster)
    names = [p.data["metadata"]["name"] for p in posts]
    assert len(names) == 2 and len(set(names)) == 2
    for post in posts:
        labels = post.data["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "hpa-exp"
        assert labels["hpa-exp/run"] == info["id"]
    deletes = [r for r in kube_cluster.requests if r.method == "DELETE" and "/jobs/" in r.path]
    assert sorted(d.path.rsplit("/", 1)[1] for d in deletes) == sorted(names)
    assert all(d.params.get("propagationPolicy") == "Background" for d in deletes)
    assert kube_cluster.names(JOBS, NS) == []
    phases = read_csv(run / "phases.csv")
    for phase in phases:
        assert abs(float(phase["actual_start_s"]) - float(phase["planned_start_s"])) < 0.5
        assert abs(float(phase["actual_end_s"]) - float(phase["planned_end_s"])) < 0.5
        assert phase["outcome"] == "completed"

    # metrics.csv: one row per second of the 6 s plan, on the exact grid.
    rows = read_csv(run / "metrics.csv")
    assert [float(r["elapsed_s"]) for r in rows] == [float(k) for k in range(7)]
    first, last = rows[0], rows[-1]
    # HPA status as reported, quantities parsed exactly ("60250m" -> 60.25, "312m" -> 0.312)
    assert float(first["num_requests_waiting"]) == 60.25
    assert float(first["num_requests_waiting_target"]) == 20
    assert float(first["kv_cache_usage_perc"]) == 0.312
    assert float(first["kv_cache_usage_target"]) == 0.5
    assert first["replicas"] == "1" and last["replicas"] == "3" and last["ready_replicas"] == "2"
    # PromQL columns: the values the observations imply
    for row in rows:
        assert float(row["ttft_ms"]) == pytest.approx(200.0, rel=1e-6)
        assert float(row["itl_ms"]) == pytest.approx(20.0, rel=1e-6)
        assert float(row["ttft_p50_ms"]) == pytest.approx(175.0, rel=1e-6)  # 100 + 150 * 0.5 in (0.1, 0.25]
        assert float(row["ttft_p90_ms"]) == pytest.approx(235.0, rel=1e-6)
        assert float(row["ttft_p99_ms"]) == pytest.approx(248.5, rel=1e-6)
        assert float(row["itl_p50_ms"]) == pytest.approx(17.5, rel=1e-6)  # 10 + 15 * 0.5 in (0.01, 0.025]
        # completions per minute: what Prometheus itself says at that instant (the exporter's loop
        # runs somewhat slower than its nominal 100 per second)
        at = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00")).timestamp()
        expected = float(
            prom.query('sum(rate(vllm:request_success_total{namespace="bench"}[10s])) * 60', at)[0]["value"][1]
        )
        assert float(row["request_rate_per_min"]) == pytest.approx(expected, rel=1e-9)
        assert 1000 < expected <= 6000
        assert float(row["prom_requests_running"]) == 12
        assert float(row["prom_requests_waiting"]) == 3
        assert float(row["prom_kv_cache_usage_avg"]) == pytest.approx(0.42)
    assert [r["phase"] for r in rows[:5]] == ["load-a", "load-a+load-b", "load-a+load-b", "load-b", "cooldown"]
    events = read_csv(run / "events.csv")
    kinds = [e["kind"] for e in events]
    assert kinds.count("job_started") == 2 and kinds.count("job_stopped") == 2
    assert any(e["kind"] == "scale_up" and e["detail"].startswith("1 -> 3") for e in events)


@pytest.mark.slow
def test_sequential_run_starts_jobs_after_gaps(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        [{"name": "first", "rate": 2, "duration": 1.5}, {"name": "second", "rate": 2, "duration": 1.5}],
        gap=1,
    )
    done = subprocess.run(
        hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    phases = read_csv(run_dir(tmp_path / "out") / "phases.csv")
    assert [(p["job"], float(p["planned_start_s"])) for p in phases] == [("first", 0.0), ("second", 2.5)]
    for phase in phases:
        assert abs(float(phase["actual_start_s"]) - float(phase["planned_start_s"])) < 0.5
    assert kube_cluster.names(JOBS, NS) == []


@pytest.mark.slow
def test_same_manifest_twice_at_once_gets_two_jobs(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path
) -> None:
    """The original system applied one manifest twice under one name; the second never ran."""
    config = write_config(
        tmp_path,
        [
            {"name": "twin-a", "rate": 20, "duration": 2},
            {"name": "twin-b", "rate": 20, "duration": 2, "start_delay": 0.5},
        ],
    )
    done = subprocess.run(
        hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    names = [p.data["metadata"]["name"] for p in job_posts(kube_cluster)]
    assert len(names) == len(set(names)) == 2


def test_invalid_config_exits_2_and_applies_nothing(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, [{"name": "a", "rate": 1, "duration": 1, "start_dealy": 3}])
    before = len(kube_cluster.requests)
    done = subprocess.run(
        hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "jobs[0].start_dealy: unknown key; did you mean 'start_delay'?" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(kube_cluster.requests) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_failed_preflight_exits_3_listing_every_problem(kube_cluster: KubeEmulator, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"name": "a", "rate": 1, "duration": 1}])
    done = subprocess.run(
        hpa_exp(str(config), "-n", "nowhere", kube=kube_cluster, prom_url="http://127.0.0.1:9", out=tmp_path / "o"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    assert "namespace 'nowhere' does not exist" in done.stderr
    assert "Prometheus is not usable" in done.stderr
    assert "Traceback" not in done.stderr
    assert job_posts(kube_cluster) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("delay", "sig"),
    [
        (0.4, signal.SIGINT),
        (1.1, signal.SIGTERM),
        (1.9, signal.SIGINT),
        (2.6, signal.SIGTERM),
        (3.4, signal.SIGINT),
        (4.2, signal.SIGTERM),
    ],
)
def test_interrupt_cleans_up_and_keeps_the_run(
    kube_cluster: KubeEmulator, prom: PrometheusServer, tmp_path: Path, delay: float, sig: signal.Signals
) -> None:
    config = write_config(
        tmp_path,
        [{"name": "a", "rate": 1, "duration": 3}, {"name": "b", "rate": 1, "duration": 3, "start_delay": 1}],
        cooldown={"enabled": True, "duration": 3},
    )
    process = subprocess.Popen(
        hpa_exp(str(config), kube=kube_cluster, prom_url=prom.url, out=tmp_path / "out"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_run_start(tmp_path / "out")
    time.sleep(delay)
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert kube_cluster.names(JOBS, NS) == []
    run = run_dir(tmp_path / "out")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert info["reason"] == f"interrupted by {sig.name}"
    rows = read_csv(run / "metrics.csv")
    assert rows and all(r["timestamp"] and r["elapsed_s"] for r in rows)
    for phase in read_csv(run / "phases.csv"):
        assert phase["outcome"] in ("interrupted", "completed")
