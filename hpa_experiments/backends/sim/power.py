"""GPU power and utilization of the twin's pods, as NVIDIA's DCGM exporter reports them.

A pod holds `gpus_per_replica` GPUs from the moment its container starts: Loading, Ready and
Terminating pods have them, Pending pods do not.  Each GPU is one series per metric, labelled
`gpu="0"`.. and with the pod and namespace under the label names of `energy:` in the config (as
dcgm-exporter's Kubernetes mapping adds them), so the monitor's PromQL is the one a cluster gets.

Per scrape, the utilization u of a pod's GPUs is the share of the time since its previous scrape
that its engine spent stepping (DCGM averages over its sample period; a loading engine is idle).
`DCGM_FI_DEV_GPU_UTIL` is u in whole percent, as DCGM reports it, and
`DCGM_FI_DEV_POWER_USAGE` = gpu_idle_w + (gpu_busy_w - gpu_idle_w) x u watts, per GPU.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from hpa_experiments.backends.sim.fleet import PENDING, Pod
from hpa_experiments.twin_profiles import Profile

if TYPE_CHECKING:
    from hpa_experiments.config import EnergyConfig

EXPORTER_JOB = "dcgm-exporter"

Sample = tuple[dict[str, str], float]


class GpuMeter:
    """The DCGM exporter of the twin: power and utilization samples of every GPU the pods hold."""

    def __init__(self, profile: Profile, energy: EnergyConfig, namespace: str):
        self.profile = profile
        self.energy = energy
        self.namespace = namespace
        self._previous: dict[str, tuple[float, float]] = {}  # pod -> (time, engine busy seconds) at its last scrape

    def utilization(self, pod: Pod, t: float) -> float:
        """The share of the time since the pod's previous scrape (or its container start) spent stepping."""
        busy = pod.engine.busy_time(t) if pod.engine is not None else 0.0
        since, busy_before = self._previous.get(pod.name, (pod.running_t, 0.0))
        self._previous[pod.name] = (t, busy)
        span = t - since
        return min(1.0, max(0.0, (busy - busy_before) / span)) if span > 0 else 0.0

    def power_w(self, utilization: float) -> float:
        p = self.profile
        return p.gpu_idle_w + (p.gpu_busy_w - p.gpu_idle_w) * utilization

    def scrape(self, t: float, pods: Iterable[Pod]) -> tuple[list[Sample], list[dict[str, str]]]:
        """Samples at `t` (after the fleet advanced to `t`), and the label sets of pods that released
        their GPUs since the previous scrape (their series go stale)."""
        samples: list[Sample] = []
        present = set()
        for pod in pods:
            if pod.state == PENDING:
                continue
            present.add(pod.name)
            u = self.utilization(pod, t)
            power, percent = self.power_w(u), float(round(u * 100))
            for gpu in range(self.profile.gpus_per_replica):
                labels = self._labels(pod.name, gpu)
                samples.append(({"__name__": self.energy.power_metric, **labels}, power))
                samples.append(({"__name__": self.energy.utilization_metric, **labels}, percent))
        gone = [name for name in self._previous if name not in present]
        for name in gone:
            del self._previous[name]
        return samples, [self._pod_labels(name) for name in gone]

    def _pod_labels(self, pod: str) -> dict[str, str]:
        return {self.energy.namespace_label: self.namespace, self.energy.pod_label: pod, "job": EXPORTER_JOB}

    def _labels(self, pod: str, gpu: int) -> dict[str, str]:
        return {"gpu": str(gpu), "container": "vllm", **self._pod_labels(pod)}
