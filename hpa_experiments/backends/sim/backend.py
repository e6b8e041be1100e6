"""The digital twin behind the Backend interface: same runner, same monitor, virtual time.

Pieces and how they meet, in virtual-time order:
- `Fleet` (fleet.py): the Deployment's pods, vLLM engines (serving.py) and load generators.
- Prometheus: every `scrape_interval` each serving pod's metrics are appended to an in-memory
  TSDB with `namespace` and `pod` labels (as the kit's scrape config adds them).
- prometheus-adapter: at each HPA sync, per-pod values come from an instant PromQL query
  `avg(vllm:<metric>{namespace=..,pod=~..}) by (pod)`, as the kit's adapter rules do.
- `HpaController` (hpa.py): the real algorithm; its desired replicas scale the Fleet.
- KEDA (keda.py, `autoscaler.kind: keda`): the operator's scale loop every pollingInterval
  (0 <-> 1 replicas, cooldown) and its metrics server, which answers the HPA KEDA created
  instead of the adapter.  The gateway (gateway.py) is scraped too, so triggers see requests
  while no pod exists.
- DCGM exporter: each scrape also appends GPU power and utilization per GPU of every pod
  that holds GPUs (power.py).
- The monitor's PromQL runs on the same TSDB through `PromQLEngine`, so simulated columns
  mean what real ones mean.

Virtual time starts at a fixed epoch so the same config and seed give byte-identical rows.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hpa_experiments.backends.base import (
    Backend,
    Clock,
    InstantSample,
    JobLaunch,
    JobState,
    PodLog,
    PodTimes,
    QueryError,
    RangeSeries,
    ScaledObjectState,
    ScalingSnapshot,
)
from hpa_experiments.backends.sim import twin_core
from hpa_experiments.backends.sim.bench_client import job_log_text
from hpa_experiments.backends.sim.fleet import LOADING, PENDING, READY, TERMINATING, Fleet
from hpa_experiments.backends.sim.gc_pacing import GcPacing
from hpa_experiments.backends.sim.hpa import HpaController, HpaStatus, PodView
from hpa_experiments.backends.sim.keda import KedaOperator
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.backends.sim.power import GpuMeter
from hpa_experiments.backends.sim.promql_engine import PromQLEngine, PromQLError, TimeSeriesDB
from hpa_experiments.backends.sim.promql_engine.tsdb import Series
from hpa_experiments.backends.sim.request_log import RequestLog
from hpa_experiments.column_queries import MetricNames
from hpa_experiments.config import ExperimentConfig
from hpa_experiments.durations import parse_duration
from hpa_experiments.latency_windows import histogram_series
from hpa_experiments.plan import Plan
from hpa_experiments.rundir import REQUESTS_FILE, utc_iso
from hpa_experiments.scaledobject import parse_scaled_object
from hpa_experiments.twin_profiles import Profile, load_profile

VIRTUAL_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: simulated runs are timestamped from here


class VirtualClock(Clock):
    virtual = True

    def __init__(self, twin: SimBackend, start: float):
        self._twin = twin
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        if t > self.t:
            self._twin.advance_to(t)
            self.t = t


class AdapterMetrics:
    """prometheus-adapter as the HPA sees it: per-pod values from an instant query at sync time."""

    def __init__(self, engine: PromQLEngine, namespace: str, now: float):
        self.engine, self.namespace, self.now = engine, namespace, now

    def pods_metric(self, metric_name: str, pods: list[str]) -> dict[str, float]:
        if not pods:
            return {}
        pod_re = "|".join(pods)
        query = f'avg(vllm:{metric_name}{{namespace="{self.namespace}",pod=~"{pod_re}"}}) by (pod)'
        return {s.labels["pod"]: s.value for s in self.engine.instant(query, self.now)}

    def object_metric(self, metric_name: str, described_object: dict[str, Any]) -> float | None:
        return None  # the kit exposes per-pod metrics only

    def external_metric(self, metric_name: str, selector: dict[str, Any] | None) -> list[float] | None:
        return None


# The in-memory TSDB keeps the TTFT/ITL histograms for the whole run, so the end-of-run latency
# queries see it all (latency_windows.py), up to this bound: a day-long run's memory stays flat after it.
MAX_HISTOGRAM_RETENTION_S = 3 * 3600.0


def histogram_retention(plan_total_s: float, retention_s: float) -> float:
    """Seconds of TTFT/ITL histogram samples the twin's Prometheus keeps: the run plus a margin."""
    return max(retention_s, min(plan_total_s + retention_s, MAX_HISTOGRAM_RETENTION_S))


class SimBackend(Backend):
    """One simulated experiment: the fleet, the HPA, Prometheus and the adapter, on virtual time."""

    name = "simulation"

    def __init__(self, config: ExperimentConfig, plan: Plan):
        sim = config.simulation
        self._gc = GcPacing()  # fewer collector passes during the run; restored at close()
        self.config = config
        self.seed = sim.seed
        profile = load_profile(sim.profile, sim.parameters)
        self.profile: Profile = dataclasses.replace(profile, model_name=config.model_name)
        self.namespace = config.namespace
        self.scrape_interval = sim.scrape_interval
        phases = np.random.default_rng([sim.seed, 7]).uniform(0.0, 1.0, size=2)
        self.fleet = Fleet(
            self.profile,
            seed=sim.seed,
            start_t=VIRTUAL_EPOCH,
            initial_replicas=sim.initial_replicas,
            pod_prefix=config.deployment,
        )
        retention = max(900.0, 4 * parse_duration(config.metrics.rate_window))
        self.series_retention_s = histogram_retention(plan.total, retention)
        longer = dict.fromkeys(histogram_series(MetricNames()), self.series_retention_s)
        self.tsdb = TimeSeriesDB(retention_seconds=retention, keep_longer=longer)
        self.engine = PromQLEngine(self.tsdb)
        self.clock = VirtualClock(self, VIRTUAL_EPOCH)
        self.next_scrape = VIRTUAL_EPOCH + phases[0] * self.scrape_interval
        self.hpa: HpaController | None = None
        self.hpa_status: HpaStatus | None = None
        self.keda: KedaOperator | None = None
        if config.hpa.enabled and config.hpa_manifest:
            created = VIRTUAL_EPOCH - phases[1] * 15.0  # KEDA creates its HPA when the ScaledObject appears
            self.hpa = HpaController(config.hpa_manifest, created_at=created)
            if config.scaled_object is not None:
                self.keda = KedaOperator(parse_scaled_object(config.scaled_object), self.engine, created_at=created)
        self.jobs: dict[str, LoadGenerator] = {}
        self.job_values: dict[str, dict[str, Any]] = {}  # template values of each Job (bench_client)
        self._scraped_pods: set[str] = set()
        self._scrape_targets: dict[str, tuple[Any, int, list[Series]]] = {}  # pod -> (engine, removals, series)
        self.gpus = GpuMeter(self.profile, config.energy, self.namespace)  # the DCGM exporter

    # -- time ------------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        """Run the fleet, scrapes and HPA syncs in time order up to `t`."""
        while True:
            next_sync = self.hpa.next_sync_at if self.hpa else float("inf")
            next_poll = self.keda.next_poll_at if self.keda else float("inf")
            step = min(self.next_scrape, next_sync, next_poll)
            if step > t:
                break
            self.fleet.advance_to(step)
            if step == self.next_scrape:
                self._scrape(step)
                self.next_scrape += self.scrape_interval
            if step == next_poll:
                self._poll_keda(step)
            if step == next_sync:
                self._sync_hpa(step)
        self.fleet.advance_to(t)

    def _scrape(self, t: float) -> None:
        samples = []
        present = set()
        by_handle = []
        for pod, families in self.fleet.scrape(t):
            present.add(pod.name)
            by_handle.append((self._target_series(pod, families), [value for _, _, value in families]))
        for gone in self._scraped_pods - present:
            del self._scrape_targets[gone]
        sent = sum(job.sent for job in self.fleet.jobs.values())
        in_flight = sum(len(job.in_flight) for job in self.fleet.jobs.values())
        gateway = {"namespace": self.namespace, "job": "gateway"}
        for name, labels, value in self.fleet.gateway.metric_families(sent, in_flight):
            samples.append(({"__name__": name, **labels, **gateway}, value))
        gpu_samples, gpus_released = self.gpus.scrape(t, self.fleet.pods)
        self.tsdb.append_many(t, samples + gpu_samples, by_handle)
        for gone in sorted(self._scraped_pods - present):  # the pod left: Prometheus marks its series stale
            self.tsdb.mark_stale({"namespace": self.namespace, "pod": gone}, t)
        for labels in gpus_released:
            self.tsdb.mark_stale(labels, t)
        self._scraped_pods = present

    def _target_series(self, pod: Any, families: list[tuple[str, Mapping[str, str], float]]) -> list[Series]:
        """The TSDB series of a pod's families, in their order.  An engine's families keep their
        names and labels from scrape to scrape, so they are looked up once (again if the TSDB
        dropped series since)."""
        tsdb = self.tsdb
        target = self._scrape_targets.get(pod.name)
        if target is not None and (target[0], target[1], len(target[2])) == (pod.engine, tsdb.removals, len(families)):
            return target[2]
        extra = {"namespace": self.namespace, "pod": pod.name, "job": "vllm"}
        handles = tsdb.series({"__name__": name, **labels, **extra} for name, labels, _ in families)
        self._scrape_targets[pod.name] = (pod.engine, tsdb.removals, handles)
        return handles

    def _sync_hpa(self, t: float) -> None:
        assert self.hpa is not None
        pods = [_pod_view(p) for p in self.fleet.pods]
        metrics = self.keda.metrics_server(t) if self.keda else AdapterMetrics(self.engine, self.namespace, t)
        self.hpa_status = self.hpa.reconcile(t, self.fleet.replicas, pods, metrics)
        if self.hpa_status.desired_replicas != self.fleet.replicas:
            self.fleet.scale_to(self.hpa_status.desired_replicas, t)

    def _poll_keda(self, t: float) -> None:
        """KEDA's own scaling: to zero (or idle) after the cooldown, and back to its minimum on activation."""
        assert self.keda is not None
        target = self.keda.poll(t, self.fleet.replicas)
        if target is not None:
            self.fleet.scale_to(target, t)

    def _scaled_object_state(self) -> ScaledObjectState | None:
        keda = self.keda
        if keda is None:
            return None
        active = keda.last_active_time
        return ScaledObjectState(
            keda.spec.name, keda.spec.hpa_name, keda.condition_rows(), None if active is None else utc_iso(active)
        )

    # -- Backend ---------------------------------------------------------------------

    def start_job(self, launch: JobLaunch) -> None:
        if launch.resource_name in self.jobs:
            return
        if launch.rate is None:
            raise QueryError(f"job {launch.job_name}: the simulation needs a rate")
        values = launch.values
        now = self.clock.now()
        job_seed = [self.seed, zlib.crc32(launch.job_name.encode())]
        output_len = values.get("output_len", -1)
        generator = LoadGenerator(
            launch.resource_name,
            self.profile,
            launch.rate,
            now + self.profile.job_start_delay_s,
            seed=int(np.random.SeedSequence(job_seed).generate_state(1)[0]),
            max_concurrency=int(values.get("max_concurrency", 512)),
            burstiness=float(values.get("burstiness", 1.0)),
            num_prompts=int(values["num_prompts"]) if "num_prompts" in values else None,
            output_len=int(output_len) if output_len not in (None, -1) else output_len,
            job=launch.job_name,
        )
        self.fleet.add_job(generator)
        self.jobs[launch.resource_name] = generator
        self.job_values[launch.resource_name] = dict(values)

    def stop_job(self, resource_name: str) -> None:
        job = self.jobs.get(resource_name)
        if job is not None and not job.stopped:
            self.fleet.stop_job(resource_name, self.clock.now())

    def job_logs(self, resource_name: str) -> list[PodLog]:
        """The simulated client's log, its result block computed from requests.csv's rows (bench_client.py)."""
        job = self.jobs.get(resource_name)
        if job is None:
            return []
        self.fleet.advance_to(self.clock.now())
        log = self.fleet.request_log
        tally = None if log is None else log.tally(job.job)
        text = job_log_text(job, tally, self.job_values[resource_name])
        return [PodLog(f"{resource_name}-twin", "bench", text, source="twin requests.csv")]

    def job_states(self) -> dict[str, JobState]:
        return {
            name: JobState(
                name=name,
                exists=not job.stopped,
                active=0 if job.stopped or job.finished else 1,
                succeeded=1 if job.finished else 0,
            )
            for name, job in self.jobs.items()
        }

    def scaling_snapshot(self) -> ScalingSnapshot:
        now = self.clock.now()
        fleet = self.fleet
        status = self.hpa_status
        pods = self._pod_times()
        if self.hpa is None:
            return ScalingSnapshot(
                now, False, deployment_replicas=fleet.replicas, ready_replicas=fleet.ready_replicas, pods=pods
            )
        spec = self.hpa.spec
        if status is None:  # before the first sync the status holds only the replica count
            return ScalingSnapshot(
                now,
                True,
                current_replicas=fleet.replicas,
                desired_replicas=fleet.replicas,
                min_replicas=spec.min_replicas,
                max_replicas=spec.max_replicas,
                deployment_replicas=fleet.replicas,
                ready_replicas=fleet.ready_replicas,
                pods=pods,
                scaled_object=self._scaled_object_state(),
            )
        metrics = status.current_metrics
        if self.keda is not None:  # KEDA's s<i>-prometheus metrics are named after their triggers
            metrics = tuple(dataclasses.replace(m, name=self._trigger_label(m.name)) for m in metrics)
        return ScalingSnapshot(
            taken_at=now,
            hpa_found=True,
            current_replicas=status.current_replicas,
            desired_replicas=status.desired_replicas,
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            metrics=metrics,
            last_scale_time=None if status.last_scale_time is None else str(status.last_scale_time),
            conditions=status.conditions,
            deployment_replicas=fleet.replicas,
            ready_replicas=fleet.ready_replicas,
            limited_by=status.limited_by,
            pods=pods,
            scaled_object=self._scaled_object_state(),
        )

    def _pod_times(self) -> tuple[PodTimes, ...]:
        """Live pods and those gone since the last snapshot, with their exact transition times."""
        departed, self.fleet.departed = self.fleet.departed, []
        return tuple(_pod_times(pod) for pod in [*departed, *self.fleet.pods])

    def hpa_object(self) -> dict[str, Any] | None:
        """The manifest as the controller reads it, with the status of its last sync (like a GET)."""
        if self.hpa is None or self.config.hpa_manifest is None:
            return None
        obj = dict(self.config.hpa_manifest)
        status = self.hpa_status
        obj["status"] = (
            {"currentReplicas": self.fleet.replicas, "desiredReplicas": self.fleet.replicas}
            if status is None
            else {
                "currentReplicas": status.current_replicas,
                "desiredReplicas": status.desired_replicas,
                "conditions": [dict(c) for c in status.conditions],
            }
        )
        return obj

    def _trigger_label(self, metric_name: str) -> str:
        assert self.keda is not None
        trigger = self.keda.spec.trigger_for_metric(metric_name)
        return trigger.label if trigger is not None else metric_name

    def query(self, promql: str, at: float | None = None) -> list[InstantSample]:
        try:
            return self.engine.instant(promql, self.clock.now() if at is None else at)
        except PromQLError as exc:
            raise QueryError(str(exc)) from exc

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[RangeSeries]:
        try:
            return self.engine.range(promql, start, end, step)
        except PromQLError as exc:
            raise QueryError(str(exc)) from exc

    def attach_run_directory(self, path: Path, t0: float) -> None:
        """Requests are logged to <run>/requests.csv from here on (request_log.py)."""
        self.fleet.request_log = RequestLog(path / REQUESTS_FILE, t0)

    def close(self) -> None:
        """Requests still in flight go to requests.csv as running_at_end; the file is closed."""
        self._gc.restore()
        log = self.fleet.request_log
        if log is not None:
            now = self.clock.now()
            self.fleet.advance_to(now)
            log.close(self.fleet.in_flight(), now)

    def describe(self) -> dict[str, Any]:
        hpa = self.hpa
        return {
            "backend": self.name,
            "seed": self.seed,
            "virtual_epoch_utc": "2026-01-01T00:00:00Z",
            "profile": dataclasses.asdict(self.profile),
            "kv_cache": self.profile.kv_cache_facts(),
            "prometheus": {"scrape_interval_s": self.scrape_interval, "lookback_s": 300},
            "hpa_controller": None
            if hpa is None
            else {
                "sync_period_s": hpa.sync_period,
                "tolerance": {"scale_up": hpa.tolerances.scale_up, "scale_down": hpa.tolerances.scale_down},
                "downscale_stabilization_s": hpa.downscale_stabilization,
            },
            "adapter": "avg(vllm:<metric>{namespace,pod=~...}) by (pod), instant query at sync time"
            if self.keda is None
            else "KEDA metrics server: each trigger's query at sync time",
            "keda": None if self.keda is None else self.keda.describe(),
            "gateway_at_zero": self.profile.gateway_at_zero,
            "twin_core": twin_core.state(),  # compiled (mypyc) or pure Python, and why
        }


def _pod_times(pod: Any) -> PodTimes:
    first: dict[str, float] = {}
    for t, state in pod.transitions:
        first.setdefault(state, t)
    started = first.get(LOADING, first.get(READY))
    return PodTimes(pod.name, pod.created_t, started, first.get(READY), pod.deleted_t)


def _pod_view(pod: Any) -> PodView:
    if pod.state == PENDING:
        return PodView(pod.name, "Pending", False, created_at=pod.created_t)
    if pod.state == LOADING:
        return PodView(pod.name, "Running", False, created_at=pod.created_t)
    return PodView(pod.name, "Running", True, deleting=pod.state == TERMINATING, created_at=pod.created_t)
