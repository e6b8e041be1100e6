"""Energy on a cluster: DCGM exporter series in a real Prometheus, read by a real `hpa-exp run`.

The Kubernetes API is kmock's emulator (as in test_run_kubernetes_e2e.py); Prometheus is the real
server, fed by remote-write with a constant 350 W per GPU for the Deployment's two pods, GPUs of
pods that must not count (another Deployment whose name starts the same, another namespace), and
an output-token counter with a known slope.  So the energy KPI has an exact answer: 700 W times
the time the samples cover, and joules per token 700 W / 100 tokens/s.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hpa_experiments.analysis.energy import JOULES_PER_KWH, energy_kpis
from hpa_experiments.analysis.load import load_run
from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.backends.kube.preflight import preflight
from hpa_experiments.backends.kube.prom import PromSettings
from hpa_experiments.backends.kube.retry import RetryPolicy
from hpa_experiments.config import EnergyConfig
from tests.support.kube_emulator import KubeEmulator
from tests.support.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[1]
NS = "bench"
OUR_PODS = ("vllm-7d9f8b6c5-abcde", "vllm-7d9f8b6c5-fghij")
WATTS_PER_GPU = 350.0
TOKENS_PER_S_PER_POD = 50.0


def push_constant_series(prom: PrometheusServer, *, pod_label: str = "pod", namespace_label: str = "namespace") -> None:
    """Samples every second from 2 minutes ago to 3 minutes ahead (Prometheus accepts future samples)."""
    now = round(time.time())
    times = [now - 120 + i for i in range(300)]
    gpus = [(NS, pod) for pod in OUR_PODS] + [
        (NS, "vllm-large-5c6d7e8f9-zzzzz"),  # another Deployment whose name starts with ours
        (NS, "other-5c6d7e8f9-yyyyy"),
        ("elsewhere", "vllm-7d9f8b6c5-xxxxx"),  # our name, another namespace
    ]
    series = []
    for i, (namespace, pod) in enumerate(gpus):
        labels = {namespace_label: namespace, pod_label: pod, "gpu": "0", "job": "dcgm-exporter"}
        series.append(({"__name__": "DCGM_FI_DEV_POWER_USAGE", **labels}, [(t, WATTS_PER_GPU) for t in times]))
        series.append(({"__name__": "DCGM_FI_DEV_GPU_UTIL", **labels}, [(t, 40.0 + 20 * (i % 2)) for t in times]))
    for pod in OUR_PODS:
        labels = {"__name__": "vllm:generation_tokens_total", "model_name": "m", "namespace": NS, "pod": pod}
        series.append((labels, [(t, 1e6 + TOKENS_PER_S_PER_POD * (t - times[0])) for t in times]))
    prom.push(series)
    push_vllm_gauges(prom)


def push_vllm_gauges(prom: PrometheusServer) -> None:
    """The model server's queue and KV gauges (without them the preflight refuses: no queue columns)."""
    now = round(time.time())
    times = [now - 120 + i for i in range(300)]
    prom.push(
        [
            ({"__name__": f"vllm:{name}", "model_name": "m", "namespace": NS, "pod": pod}, [(t, 1.0) for t in times])
            for name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc")
            for pod in OUR_PODS
        ]
    )


def write_config(folder: Path) -> Path:
    doc = {
        "name": "energy-e2e",
        "namespace": NS,
        "deployment": "vllm",
        "model_name": "m",
        "backend": "kubernetes",
        "hpa": {"enabled": True, "name": "vllm-hpa", "apply": False},
        "jobs": [
            {"name": "load", "rate": 1, "duration": 3, "manifest": str(REPO / "workloads" / "vllm-bench-serve.yaml")}
        ],
        "metrics": {"interval": 1, "rate_window": "10s"},
        "cost": {"price_per_gpu_hour": 2.5, "currency": "EUR"},
    }
    path = folder / "energy.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.slow
def test_energy_from_a_constant_power_series_is_power_times_time(
    kube_cluster: KubeEmulator, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    push_constant_series(prometheus)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "run",
            str(write_config(tmp_path)),
            "--backend",
            "kubernetes",
            "--kubeconfig",
            str(kube_cluster.kubeconfig),
            "--prometheus-url",
            prometheus.url,
            "-o",
            str(tmp_path / "out"),
            "--plain",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "no DCGM power series" not in done.stderr
    (run_dir,) = list((tmp_path / "out").iterdir())
    with (run_dir / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    for row in rows:
        assert float(row["gpu_power_w"]) == 2 * WATTS_PER_GPU
        assert float(row["gpu_count"]) == 2
        assert float(row["gpu_utilization_pct"]) == 50.0
        assert float(row["generation_tokens_per_s"]) == pytest.approx(2 * TOKENS_PER_S_PER_POD, rel=1e-9)

    energy = energy_kpis(load_run(run_dir))
    covered_s = len(rows) * 1.0  # each sample holds for one interval (the last one too)
    whole = energy["run"]
    assert whole["energy_kwh"] == pytest.approx(2 * WATTS_PER_GPU * covered_s / JOULES_PER_KWH, rel=1e-12)
    assert whole["power_coverage"] == 1.0
    assert whole["mean_power_w"] == pytest.approx(700.0, rel=1e-12)
    assert whole["joules_per_token"] == pytest.approx(700.0 / 100.0, rel=1e-9)
    assert whole["gpu_hours"] == pytest.approx(2 * covered_s / 3600, rel=1e-12)
    assert whole["gpu_hours_basis"] == "measured (gpu_count)"
    assert whole["cost"] == pytest.approx(whole["gpu_hours"] * 2.5, rel=1e-12)
    assert energy["currency"] == "EUR"
    assert sum(p["energy_kwh"] for p in energy["phases"]) == pytest.approx(whole["energy_kwh"], rel=1e-12)
    assert energy["notes"] == []


FAST_RETRY = RetryPolicy(max_attempts=2, max_elapsed=2.0, base_delay=0.01, max_delay=0.05)


def backend(cluster: KubeEmulator, prom: PrometheusServer) -> KubeBackend:
    return KubeBackend(
        KubeSettings(kubeconfig=str(cluster.kubeconfig)),
        PromSettings(url=prom.url),
        namespace=NS,
        deployment="vllm",
        hpa_name="vllm-hpa",
        run_id="r1",
        retry=FAST_RETRY,
    )


def test_preflight_warns_when_prometheus_has_no_dcgm_series(kube_cluster, prometheus) -> None:
    push_vllm_gauges(prometheus)
    report = preflight(backend(kube_cluster, prometheus), energy=EnergyConfig())
    assert report.ok, report.problems
    [warning] = [w for w in report.warnings if "DCGM" in w]
    assert warning.startswith("no DCGM power series for pods bench/vllm-")
    assert "no DCGM_FI_DEV_POWER_USAGE at all" in warning and "energy will not be measured" in warning


def test_preflight_warns_when_the_series_carry_other_pod_labels(kube_cluster, prometheus) -> None:
    """Behind a ServiceMonitor the pod arrives as exported_pod: found only with the configured labels."""
    push_constant_series(prometheus, pod_label="exported_pod", namespace_label="exported_namespace")
    report = preflight(backend(kube_cluster, prometheus), energy=EnergyConfig())
    assert report.ok, report.problems
    [warning] = [w for w in report.warnings if "DCGM" in w]
    assert "energy will not be measured" in warning and "exported_pod" in warning
    configured = EnergyConfig(pod_label="exported_pod", namespace_label="exported_namespace")
    report = preflight(backend(kube_cluster, prometheus), energy=configured)
    assert report.ok, report.problems
    assert not [w for w in report.warnings if "DCGM" in w]
