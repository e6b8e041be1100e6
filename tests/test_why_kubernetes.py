"""The why, recorded on the Kubernetes backend.

Uses the kmock emulator (tests/support/kube_emulator.py), not a real control plane: the test must
play the HPA controller and the kubelet itself - set the HPA's conditions and lastScaleTime, and
create the new pods with chosen creation and Ready times - so that the recorded conditions, the
inferred limit and the ready lag can be compared with known values.  Prometheus is left out
(PromQL cells stay empty, with warnings); nothing here depends on it.
"""

from __future__ import annotations

import csv
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.why import scale_events
from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.config import load_config
from hpa_experiments.plan import build_plan
from hpa_experiments.runner import Runner
from hpa_experiments.workloads import new_run_id
from tests.support.kube_emulator import HPAS, PODS, KubeEmulator

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

REPO = Path(__file__).resolve().parents[1]
NS = "bench"


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_config(folder: Path) -> Path:
    manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "vllm-hpa", "namespace": NS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "num_requests_waiting"},
                        "target": {"type": "AverageValue", "averageValue": "20"},
                    },
                },
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "kv_cache_usage_perc"},
                        "target": {"type": "AverageValue", "averageValue": "500m"},
                    },
                },
            ],
        },
    }
    (folder / "hpa.yaml").write_text(yaml.safe_dump(manifest))
    doc = {
        "name": "why",
        "namespace": NS,
        "deployment": "vllm",
        "model_name": "m",
        "backend": "kubernetes",
        "hpa": {"enabled": True, "manifest": "hpa.yaml", "apply": True, "remove_after": False},
        "jobs": [
            {"name": "load", "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml"), "rate": 5, "duration": 12}
        ],
        "metrics": {"interval": 1},
        # ticks go on for several seconds after the pods' Ready time (decided + 3 s) even on a
        # loaded machine, so every pod is listed once it is ready; no results wait for the Job
        "output": {"results_grace": 0},
    }
    path = folder / "why.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def condition(kind: str, status: str, reason: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": reason,
        "lastTransitionTime": rfc3339(time.time()),
    }


def play_the_controller(kube: KubeEmulator, out: Path, scale_at: list[float]) -> None:
    """Once two rows are written: the HPA scales 1 -> 4, capped by maxReplicas (it proposes 15);
    the ReplicaSet creates 3 pods in that second; the kubelet reports them Ready 3 s later."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        written = list(out.glob("*/metrics.csv"))
        if written and len(written[0].read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    decided = float(int(time.time()))
    scale_at.append(decided)
    kube.patch(
        HPAS,
        NS,
        "vllm-hpa",
        {
            "status": {
                "currentReplicas": 1,
                "desiredReplicas": 4,
                "lastScaleTime": rfc3339(decided),
                "currentMetrics": [
                    {
                        "type": "Pods",
                        "pods": {"metric": {"name": "num_requests_waiting"}, "current": {"averageValue": "300"}},
                    },
                    {
                        "type": "Pods",
                        "pods": {"metric": {"name": "kv_cache_usage_perc"}, "current": {"averageValue": "900m"}},
                    },
                ],
                "conditions": [
                    condition("AbleToScale", "True", "SucceededRescale"),
                    condition("ScalingActive", "True", "ValidMetricFound"),
                    condition("ScalingLimited", "True", "TooManyReplicas"),
                ],
            }
        },
    )
    for n in range(1, 4):
        kube.put(
            PODS,
            NS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"vllm-new-{n}", "labels": {"app": "vllm"}, "creationTimestamp": rfc3339(decided)},
                "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:latest"}]},
                "status": {
                    "phase": "Running",
                    "startTime": rfc3339(decided + 1),
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(decided + 3)}],
                },
            },
        )
    kube.set_deployment_replicas(NS, "vllm", replicas=4, ready_replicas=1)


def test_kubernetes_run_records_the_why(kube_cluster: KubeEmulator, tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path))
    # the scene's HPA, made equal to the manifest: the run uses it as is (a different one is refused)
    kube_cluster.put(HPAS, NS, {**kube_cluster.get(HPAS, NS, "vllm-hpa"), "spec": config.hpa_manifest["spec"]})
    run_id = new_run_id(time.time())
    backend = KubeBackend(
        KubeSettings(kubeconfig=str(kube_cluster.kubeconfig)),
        None,
        namespace=NS,
        deployment="vllm",
        hpa_name="vllm-hpa",
        run_id=run_id,
    )
    out = tmp_path / "out"
    scale_at: list[float] = []
    controller = threading.Thread(target=play_the_controller, args=(kube_cluster, out, scale_at))
    controller.start()
    result = Runner(config, build_plan(config), backend, base_dir=out, handle_signals=False, run_id=run_id).run()
    controller.join()
    run = result.run_dir
    assert result.status == "completed", result.reason

    # the HPA as applied (the manifest) and as the cluster held it at the start (spec and status)
    assert yaml.safe_load((run / "hpa-applied.yaml").read_text()) == config.hpa_manifest
    live = yaml.safe_load((run / "hpa-live-start.yaml").read_text())
    assert live["spec"]["maxReplicas"] == 4 and live["status"]["desiredReplicas"] == 1

    with (run / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    before, after = rows[0], rows[-1]
    # The emulator's starting status has no ScalingLimited condition (no normalization seen): the
    # limit is unknown, though the recorded queue (60.25 / 20 on 1 pod) proposes ceil(3.0125) = 4.
    assert (before["scaling_limited"], before["limited_by"], before["num_requests_waiting_proposed"]) == ("", "", "4")
    assert (after["scaling_limited"], after["scaling_limited_reason"]) == ("True", "TooManyReplicas")
    assert after["limited_by"] == "maxReplicas"  # inferred from the condition's reason
    assert float(after["num_requests_waiting_ratio"]) == 15.0  # 300 / 20
    assert float(after["hpa_last_scale_s"]) == round(scale_at[0] - result_t0(run), 3)
    with (run / "events.csv").open(newline="") as fh:
        details = [e["detail"] for e in csv.DictReader(fh) if e["kind"] == "hpa_condition"]
    assert "ScalingLimited: absent -> True/TooManyReplicas" in details
    assert "AbleToScale: True/ReadyForNewScale -> True/SucceededRescale" in details

    with (run / "pods.csv").open(newline="") as fh:
        pods = {p["pod"]: p for p in csv.DictReader(fh)}
    assert set(pods) == {"vllm-0", "vllm-new-1", "vllm-new-2", "vllm-new-3"}
    assert pods["vllm-0"]["ready_s"] == ""  # the setup's pod has no Ready condition: not ready, not 0

    (event,) = scale_events(load_run(run))
    # 1 -> 4 at lastScaleTime; queue 300/20 = 15.0x on 1 serving pod proposes ceil(15 x 1) = 15;
    # ScalingLimited TooManyReplicas: capped at maxReplicas 4; 3 pods Ready 3 s after the decision.
    assert (event["desired"], event["limited_by"], event["new_pods"], event["ready_pods"]) == (4, "maxReplicas", 3, 3)
    assert event["ready_after_s"] == 3.0 and event["time_basis"] == "lastScaleTime"
    assert event["line"].endswith("queue 15.0x target, proposes 15; capped by maxReplicas 4; 3 ready after 3 s")


def result_t0(run: Path) -> float:
    return float(yaml.safe_load((run / "run.json").read_text())["t0_unix"])
