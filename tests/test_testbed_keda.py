"""`hpa-exp run` with `autoscaler: kind: keda` on the KEDA test bed: a real API server, controller
manager (the HPA KEDA creates, Deployments, Jobs, garbage collector), KEDA's operator and metrics
server built from github.com/kedacore/keda/v2, Prometheus, llm-d-inference-sim pods, and the
Service stand-in as a gateway that holds requests while no pod is Ready.

The real test bed, not the emulator: the claim under test is that KEDA itself scales the
Deployment 0 -> N on load, back down, to 0 after its cooldownPeriod and back on new load, and
that the runner records and cleans up what KEDA made; the emulator can only play KEDA's part
(tests/test_kube_keda.py).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpa_experiments.analysis.kpis import compute_kpis
from hpa_experiments.analysis.load import load_run
from tests.support.testbed import REPO, Testbed
from tests.support.testbed_kit import (
    NAMESPACE,
    derive_config,
    hpa_exp,
    install_model_server,
    job_objects,
    number,
    only_run_dir,
    read_metrics,
    run_args,
    wait_for,
)

pytestmark = pytest.mark.testbed

SHIPPED = REPO / "experiment-configs" / "scale-to-zero-keda.yaml"
SHIPPED_SO = REPO / "manifests" / "keda" / "scaledobject-vllm-scale-to-zero.yaml"
# as tests/test_testbed_run.py: one simulator decodes one request at a time (~0.3 s each), so a
# few req/s build the queue that the num_requests_waiting trigger scales on
SIM_ARGS = {
    "--max-num-seqs": "1",
    "--time-to-first-token": "100",
    "--time-to-first-token-std-dev": "0",
    "--inter-token-latency": "12",
    "--inter-token-latency-std-dev": "0",
}
POLL_S, COOLDOWN_S = 5, 20  # the ScaledObject's pollingInterval and cooldownPeriod (shipped: 15 and 180)
BURST_S, SECOND_BURST_AT = 40, 120


def short_scaled_object(bed: Testbed, path: Path) -> Path:
    """The shipped scale-to-zero ScaledObject with test-bed timings and the test bed's Prometheus."""
    doc: dict[str, Any] = yaml.safe_load(SHIPPED_SO.read_text())
    spec = doc["spec"]
    spec.update(pollingInterval=POLL_S, cooldownPeriod=COOLDOWN_S, maxReplicaCount=4)
    spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] = {
        "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}]},
        "scaleDown": {"stabilizationWindowSeconds": 10, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 5}]},
    }
    for trigger in spec["triggers"]:
        trigger["metadata"]["serverAddress"] = bed.prometheus_url
        if trigger["name"] == "num_requests_waiting":
            trigger["metadata"]["threshold"] = "2"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_keda_scales_to_zero_and_back_on_the_test_bed(testbed_keda: Testbed, tmp_path: Path) -> None:
    """Two bursts 80 s apart (cooldownPeriod 20 s): KEDA takes the Deployment from 0 to N on the
    first, the HPA it made scales down after it, KEDA to 0 in the gap, back up on the second and to
    0 again in the run's cooldown.  Every held request is served; columns, events and cleanup."""
    bed = testbed_keda
    install_model_server(bed, SIM_ARGS)
    manifest = short_scaled_object(bed, tmp_path / "scaledobject.yaml")
    so_name = yaml.safe_load(manifest.read_text())["metadata"]["name"]

    def changes(doc: dict[str, Any]) -> None:
        doc["backend"] = "kubernetes"
        doc["autoscaler"]["manifest"] = str(manifest)
        doc["jobs"] = [
            {"name": "burst-a", "rate": 6, "duration": BURST_S, "start_delay": 0},
            {"name": "burst-b", "rate": 6, "duration": BURST_S, "start_delay": SECOND_BURST_AT},
        ]
        doc["cooldown"]["duration"] = 60
        doc["metrics"].update(interval=2, rate_window="20s")
        doc["values"].update(output_len=16, max_concurrency=64)

    config = derive_config(SHIPPED, tmp_path, changes)
    done = hpa_exp(bed, *run_args(bed, config), timeout=600)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    run_dir = only_run_dir(tmp_path)
    rows = read_metrics(run_dir)

    def ready(r: dict[str, str]) -> int:
        return int(number(r["ready_replicas"]) or 0)

    def between(start: float, end: float) -> list[dict[str, str]]:
        return [r for r in rows if start <= float(r["elapsed_s"]) < end]

    series = [(float(r["elapsed_s"]), ready(r)) for r in rows]
    first, gap = between(0, BURST_S + 10), between(BURST_S + 10, SECOND_BURST_AT)
    second, after = between(SECOND_BURST_AT, SECOND_BURST_AT + BURST_S), rows[-5:]
    assert any(ready(r) == 0 for r in rows[:5]), f"KEDA did not take the idle Deployment to 0 first: {series}"
    assert max(ready(r) for r in first) >= 2, f"no scale-out on the first burst: {series}"
    assert any(ready(r) == 0 for r in gap), f"no scale to zero in the gap: {series}"
    assert max(ready(r) for r in second) >= 1, f"not back from zero on the second burst: {series}"
    assert all(ready(r) == 0 for r in after), f"not back to zero after the run: {series}"

    # the ScaledObject's conditions and KEDA's HPA's metric, in metrics.csv
    assert {r["keda_ready"] for r in rows} >= {"1"}, "the ScaledObject was never Ready"
    active = [r["keda_active"] for r in rows]
    assert "1" in active and "0" in active, f"keda_active never flipped: {active}"
    waiting = [v for v in (number(r.get("num_requests_waiting", "")) for r in rows) if v is not None]
    assert waiting and max(waiting) > 0, "KEDA's HPA never reported the queue (num_requests_waiting)"

    events = (run_dir / "events.csv").read_text()
    assert "scaled_object_applied" in events and "scaled_object_removed" in events
    assert f"{so_name} Active: False -> True" in events, events[-2000:]  # active again: back from zero

    with open(run_dir / "job-results.csv", newline="") as f:
        results = list(csv.DictReader(f))
    assert [r["status"] for r in results] == ["ok", "ok"], results
    # every request was served, those held at the gateway while no pod was Ready included
    assert [r["failed_requests"] for r in results] == ["0", "0"], results
    assert all(int(r["successful_requests"]) == 6 * BURST_S for r in results), results
    client_cold_start_seen_by_both_sides(run_dir, series)

    # cleanup: the ScaledObject gone, KEDA's HPA with it (owner reference), no Job left
    path = f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects/{so_name}"
    assert bed.request("GET", path).status_code == 404
    hpa = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/keda-hpa-{so_name}"
    wait_for("KEDA's HPA deleted with its ScaledObject", lambda: bed.request("GET", hpa).status_code == 404, 30)
    jobs, pods = job_objects(bed)
    assert not jobs and not pods, f"left behind: {[j['metadata']['name'] for j in jobs]}"
    print("ready replicas (elapsed s, n):", series)


def client_cold_start_seen_by_both_sides(run_dir: Path, series: list[tuple[float, int]]) -> None:
    """The second burst began at 0 replicas (the gap's scale to zero): read with line times (kwok's
    kubelet API), its client waited for its initial request at least from its start to the last
    sample before a Ready pod (the pod became Ready after that sample); so did the first burst's
    when it too began at 0 (KEDA may not have taken the idle Deployment to 0 yet)."""
    client = compute_kpis(load_run(run_dir))["cold_starts"]["client"]
    assert client["measured"], client
    jobs = {job["job"]: job for job in client["jobs"]}
    assert set(jobs) == {"burst-a", "burst-b"} and jobs["burst-b"]["from_zero"], jobs
    cold = [job for job in jobs.values() if job["from_zero"]]
    for job in cold:
        ready_at = next(t for t, n in series if t > job["start_s"] and n >= 1)
        not_ready_yet = max(t for t, _ in series if t < ready_at)  # the pod became Ready after this sample
        assert job["initial_test_s"] >= not_ready_yet - job["start_s"], (job, series)
        assert job["initial_test_s"] < BURST_S, job
    assert client["cold_start_s"]["count"] == len(cold)
    print("client-side cold starts:", [(job["job"], job["initial_test_s"]) for job in cold])
