"""The three real-cluster defects of issue 13, each as a user meets it: `hpa-exp run` of the shipped
baseline config (shortened) against the kit's scene, refused by the preflight (exit 3) with the cause.

Kubernetes: kmock's emulator (tests/support/kube_emulator.py) with the metrics and access-review
APIs of tests/support/kube_apis.py, because the real control plane of the test bed is not ready
yet; the scene is what `hpa-exp cluster up` builds (namespace hpa-exp, Deployment vllm, the
adapter serving the pod's metrics).  Prometheus: the real server scraping an exporter with the
emulator's metric names and served model name.  Before the fixes each of these runs "completed".
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.kube_emulator import KubeEmulator
from tests.support.prometheus import PrometheusServer
from tests.support.vllm_exporter import VllmExporter, scrape_config

pytestmark = pytest.mark.slow  # every test here takes seconds (benchmarks/README.md: the fast loop)

REPO = Path(__file__).resolve().parents[1]
NS = "hpa-exp"
MODEL = "meta-llama/Llama-3.1-8B"


@pytest.fixture(scope="module")
def kit_prometheus(tmp_path_factory) -> Iterator[PrometheusServer]:
    """Prometheus scraping a model server of the kit: namespace hpa-exp, pod vllm-0, the served model name."""
    exporter = VllmExporter(model_name=MODEL).start()
    server = PrometheusServer(tmp_path_factory.mktemp("prom"), [scrape_config(exporter, NS)]).start()
    try:
        server.wait_for(f'sum(rate(vllm:time_to_first_token_seconds_count{{namespace="{NS}"}}[10s])) > 0')
        yield server
    finally:
        server.stop()
        exporter.stop()


@pytest.fixture
def kit(tmp_path) -> Iterator[KubeEmulator]:
    """The scene `cluster up` leaves: model server and adapter, no HPA (the experiment applies its own)."""
    (tmp_path / "kube").mkdir()
    emulator = KubeEmulator(tmp_path / "kube").start()
    try:
        emulator.add_namespace(NS)
        emulator.add_deployment(NS, "vllm")
        emulator.add_pod(NS, "vllm-0", labels={"app": "vllm"})
        emulator.apis.serve_pod_metric(NS, "num_requests_waiting", {"vllm-0": "0"})
        emulator.apis.serve_pod_metric(NS, "kv_cache_usage_perc", {"vllm-0": "0"})
        yield emulator
    finally:
        emulator.stop()


def baseline(tmp_path: Path, **changes: object) -> Path:
    """experiment-configs/baseline-hpa.yaml on Kubernetes, one 3 s job, 1 s samples."""
    raw = yaml.safe_load((REPO / "experiment-configs" / "baseline-hpa.yaml").read_text())
    raw.update(
        backend="kubernetes",
        jobs=[{"name": "job-1", "rate": 1, "duration": 3}],
        cooldown={"enabled": False},
        metrics={"interval": 1, "rate_window": "10s"},
        **changes,
    )
    raw["hpa"]["manifest"] = str(REPO / "manifests" / "hpa-vllm-combined.yaml")
    raw["output"] = {"base_dir": str(tmp_path / "out")}
    path = tmp_path / "baseline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(config: Path, kube: KubeEmulator, prom: PrometheusServer) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "run",
            str(config),
            "--backend",
            "kubernetes",
            "--kubeconfig",
            str(kube.kubeconfig),
            "--prometheus-url",
            prom.url,
            "--plain",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_the_kit_scene_with_the_shipped_config_passes_the_preflight(kit, kit_prometheus, tmp_path):
    """The control: the same scene without a defect runs (and the run's HPA is applied, then removed)."""
    done = run(baseline(tmp_path), kit, kit_prometheus)
    assert done.returncode == 0, done.stderr
    assert "preflight passed" in done.stderr


def test_defect_1_a_second_hpa_on_the_deployment_is_refused(kit, kit_prometheus, tmp_path):
    """`hpa-exp cluster up --hpa queue` applied vllm-hpa-queue; the config applies vllm-hpa-combined."""
    kit.add_hpa(NS, "vllm-hpa-queue", deployment="vllm")
    done = run(baseline(tmp_path), kit, kit_prometheus)
    assert done.returncode == 3, done.stderr
    assert (
        "HPA vllm-hpa-queue also scales Deployment hpa-exp/vllm, besides the run's HPA vllm-hpa-combined: with "
        "two autoscalers on one Deployment Kubernetes disables both (AmbiguousSelector) and nothing scales. "
        "Fix: kubectl -n hpa-exp delete hpa vllm-hpa-queue"
    ) in done.stderr
    assert not (tmp_path / "out").exists()  # nothing ran


def test_defect_2_series_without_the_configured_labels_are_refused_with_the_labels_prometheus_has(
    kit, kit_prometheus, tmp_path
):
    done = run(baseline(tmp_path, model_name="llama-3.1-8b"), kit, kit_prometheus)
    assert done.returncode == 3, done.stderr
    assert (
        'match {model_name="llama-3.1-8b",namespace="hpa-exp"} (model_name="llama-3.1-8b" matches none of '
        "the values Prometheus has)" in done.stderr
    )
    assert f'Prometheus has these metrics with model_name="{MODEL}"; namespace="hpa-exp"; pod="vllm-0"' in done.stderr
    assert "Fix: set model_name in the config to the served model name" in done.stderr


def test_defect_3_an_hpa_metric_the_adapter_does_not_serve_is_refused(kit, kit_prometheus, tmp_path):
    """The server exports the other KV-cache name, so the adapter serves no kv_cache_usage_perc."""
    kit.apis.pod_metrics[NS].pop("kv_cache_usage_perc")
    done = run(baseline(tmp_path), kit, kit_prometheus)
    assert done.returncode == 3, done.stderr
    assert (
        "HPA hpa-exp/vllm-hpa-combined uses metric kv_cache_usage_perc, which the custom.metrics.k8s.io API does "
        "not serve (it serves for pods: num_requests_waiting): the HPA will not scale."
    ) in done.stderr
