"""KEDA runs on the Kubernetes backend, against kmock's emulator (tests/support/kube_emulator.py).

The emulator, not the test bed: KEDA's operator is not running here, so these tests play it
(create `keda-hpa-<name>` with its External metrics, set the ScaledObject's conditions) and check
the runner's side: applying and deleting the ScaledObject through the API, reading KEDA's HPA and
the ScaledObject's status into columns and events, and the cleanup.
"""

from __future__ import annotations

import copy
import csv
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from hpa_experiments.config import load_config
from hpa_experiments.errors import BackendError
from hpa_experiments.plan import build_plan
from hpa_experiments.runner import Runner
from tests.support import kube_emulator
from tests.support.kube_emulator import HPAS, SCALED_OBJECTS, KubeEmulator

kube_cluster = kube_emulator.kube_cluster  # the shared fixture: namespace "bench", Deployment "vllm"

REPO = Path(__file__).resolve().parents[1]
NS = "bench"
FAST_RETRY = RetryPolicy(max_attempts=5, max_elapsed=10.0, base_delay=0.01, max_delay=0.05)
SO = yaml.safe_load((REPO / "manifests" / "keda" / "scaledobject-vllm-combined.yaml").read_text())
SO["metadata"]["namespace"] = NS
NAME, HPA = SO["metadata"]["name"], "keda-hpa-" + SO["metadata"]["name"]


def make_backend(cluster: KubeEmulator, warnings: list[str] | None = None) -> KubeBackend:
    return KubeBackend(
        KubeSettings(kubeconfig=str(cluster.kubeconfig)),
        None,
        namespace=NS,
        deployment="vllm",
        hpa_name=HPA,
        run_id="r1",
        retry=FAST_RETRY,
        on_warning=warnings.append if warnings is not None else None,
        scaled_object=SO,
    )


def external(metric: str, target: str, current: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {
        "metric": {"name": metric, "selector": {"matchLabels": {"scaledobject.keda.sh/name": NAME}}}
    }
    if current is None:
        block["target"] = {"type": "AverageValue", "averageValue": target}
    else:
        block["current"] = {"averageValue": current}
    return {"type": "External", "external": block}


def play_keda(cluster: KubeEmulator, *, active: bool, replicas: int) -> None:
    """What KEDA's operator and the HPA controller would write."""
    cluster.put(
        HPAS,
        NS,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": HPA},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [external("s0-prometheus", "20"), external("s1-prometheus", "500m")],
            },
            "status": {
                "currentReplicas": replicas,
                "desiredReplicas": replicas,
                "currentMetrics": [external("s0-prometheus", "", "12500m"), external("s1-prometheus", "", "250m")],
            },
        },
    )
    conditions = [
        {"type": "Ready", "status": "True", "reason": "ScaledObjectReady", "message": "ready"},
        {
            "type": "Active",
            "status": "True" if active else "False",
            "reason": "ScalerActive" if active else "ScalerNotActive",
            "message": "m",
        },
        {"type": "Fallback", "status": "False", "reason": "NoFallbackFound", "message": "m"},
        {"type": "Paused", "status": "False", "reason": "ScaledObjectUnpaused", "message": "m"},
    ]
    cluster.patch(
        SCALED_OBJECTS,
        NS,
        NAME,
        {"status": {"hpaName": HPA, "conditions": conditions, "lastActiveTime": "2026-11-23T04:00:00Z"}},
    )


@pytest.fixture
def backend(kube_cluster: KubeEmulator) -> Iterator[KubeBackend]:
    b = make_backend(kube_cluster)
    yield b
    b.close()


def test_apply_read_and_delete_the_scaled_object(kube_cluster: KubeEmulator) -> None:
    warnings: list[str] = []
    backend = make_backend(kube_cluster, warnings)
    try:
        assert backend.scaling_snapshot().scaled_object is None  # not applied yet: no status, no error
        assert backend.apply_scaled_object(SO) is True
        stored = kube_cluster.get(SCALED_OBJECTS, NS, NAME)
        assert stored is not None and stored["spec"]["triggers"] == SO["spec"]["triggers"]
        assert kube_cluster.get(SCALED_OBJECTS, NS, NAME)["metadata"]["labels"]["hpa-exp/run"] == "r1"  # type: ignore[index]
        changed = copy.deepcopy(SO)
        changed["spec"]["cooldownPeriod"] = 60
        with pytest.raises(BackendError, match=r"already exists and differs from the manifest"):
            backend.apply_scaled_object(changed)  # exists and differs: refused, unchanged
        assert kube_cluster.get(SCALED_OBJECTS, NS, NAME)["spec"]["cooldownPeriod"] != 60  # type: ignore[index]
        backend.claims.take_over = True
        assert backend.apply_scaled_object(changed) is False  # taken over: not ours to delete
        assert kube_cluster.get(SCALED_OBJECTS, NS, NAME)["spec"]["cooldownPeriod"] == 60  # type: ignore[index]
        assert warnings[-1].startswith(f"took over ScaledObject {NS}/{NAME} (--take-over)")

        play_keda(kube_cluster, active=True, replicas=0)
        snap = backend.scaling_snapshot()
        assert snap.hpa_found and snap.current_replicas == 0
        assert [(m.name, m.source_type, m.current, m.target) for m in snap.metrics] == [
            ("num_requests_waiting", "External", 12.5, 20.0),  # s0-prometheus under its trigger's name
            ("kv_cache_usage_perc", "External", 0.25, 0.5),
        ]
        assert snap.scaled_object is not None and snap.scaled_object.hpa_name == HPA
        assert {c["type"]: c["status"] for c in snap.scaled_object.conditions} == {
            "Ready": "True",
            "Active": "True",
            "Fallback": "False",
            "Paused": "False",
        }
        assert snap.scaled_object.last_active_time == "2026-11-23T04:00:00Z"
        assert backend.describe()["scaled_object"] == NAME

        backend.delete_scaled_object(NAME)
        assert kube_cluster.get(SCALED_OBJECTS, NS, NAME) is None
        backend.delete_scaled_object(NAME)  # already gone: fine
    finally:
        backend.close()


@pytest.mark.slow
def test_a_run_applies_records_and_removes_the_scaled_object(kube_cluster: KubeEmulator, tmp_path: Path) -> None:
    (tmp_path / "so.yaml").write_text(yaml.safe_dump(SO))
    doc = {
        "name": "keda-k8s",
        "namespace": NS,
        "backend": "kubernetes",
        "autoscaler": {"kind": "keda", "manifest": "so.yaml", "apply": True, "remove_after": True},
        "jobs": [{"name": "a", "rate": 1, "duration": 4}],
        "metrics": {"interval": 1},
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc))
    config = load_config(tmp_path / "exp.yaml")
    backend = make_backend(kube_cluster)
    stop = threading.Event()

    def keda_operator() -> None:  # creates the HPA once the ScaledObject exists, then turns inactive
        started = None
        while not stop.is_set():
            if kube_cluster.get(SCALED_OBJECTS, NS, NAME) is not None:
                started = started or time.monotonic()
                play_keda(kube_cluster, active=time.monotonic() - started < 2.0, replicas=1)
            time.sleep(0.2)

    thread = threading.Thread(target=keda_operator, daemon=True)
    thread.start()
    try:
        runner = Runner(
            config, build_plan(config), backend, base_dir=tmp_path / "out", handle_signals=False, run_id="r1"
        )
        result = runner.run()
    finally:
        stop.set()
        thread.join(5)
    assert result.status == "completed", result.reason
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    events = list(csv.DictReader((result.run_dir / "events.csv").open()))
    kinds = [e["kind"] for e in events]
    assert "scaled_object_applied" in kinds and "scaled_object_removed" in kinds
    assert kube_cluster.get(SCALED_OBJECTS, NS, NAME) is None  # cleaned up
    assert {"keda_ready", "keda_active", "keda_fallback", "keda_paused"} <= set(rows[0])
    active = [r["keda_active"] for r in rows if r["keda_active"] != ""]
    assert "1" in active and active[-1] == "0"  # seen active, then inactive
    flips = [e["detail"] for e in events if e["kind"] == "scaled_object" and " Active: " in e["detail"]]
    assert any("True -> False" in d for d in flips)
    assert any(r["num_requests_waiting"] == "12.5" for r in rows)  # KEDA's s0-prometheus in the standard column


@pytest.mark.slow
def test_the_preflight_refuses_keda_when_the_scaled_object_crd_is_missing(
    kube_cluster: KubeEmulator, tmp_path: Path
) -> None:
    """Emulator with the ScaledObject resource undeclared (as on a cluster without KEDA's CRD): `hpa-exp
    run` with `autoscaler: kind: keda` exits 3 before applying anything, naming the missing CRD and the fix."""
    kube_cluster.uninstall_keda()
    (tmp_path / "so.yaml").write_text(yaml.safe_dump(SO))
    doc = {
        "name": "keda-no-crd",
        "namespace": NS,
        "backend": "kubernetes",
        "autoscaler": {"kind": "keda", "manifest": "so.yaml", "apply": True},
        "jobs": [{"name": "a", "rate": 1, "duration": 4}],
    }
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(doc))
    argv = [sys.executable, "-m", "hpa_experiments", "run", str(tmp_path / "exp.yaml"), "--backend", "kubernetes"]
    argv += ["--kubeconfig", str(kube_cluster.kubeconfig), "--prometheus-url", "http://127.0.0.1:1", "--plain"]
    done = subprocess.run([*argv, "-o", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "no ScaledObject resource" in done.stderr and "scaledobjects.keda.sh is not installed" in done.stderr
    assert "hpa-exp cluster up --autoscaler keda" in done.stderr
    assert "Traceback" not in done.stderr
    kube_cluster.install_keda()
    assert kube_cluster.get(SCALED_OBJECTS, NS, NAME) is None  # nothing was applied
