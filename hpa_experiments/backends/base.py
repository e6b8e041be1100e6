"""The one small interface between the runner/monitor and a place to run experiments.

The runner and the monitor use nothing else, so the Kubernetes backend and the
simulation backend (the digital twin) are interchangeable.  Times are seconds since
the Unix epoch (UTC) on the backend's own clock: the wall clock for Kubernetes, a
virtual clock for the simulation.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Clock(ABC):
    """Time source of a backend."""

    virtual: bool = False

    @abstractmethod
    def now(self) -> float:
        """Current time, seconds since the epoch."""

    @abstractmethod
    def sleep_until(self, t: float) -> None:
        """Block until `t` (a virtual clock advances the simulation to `t` instead)."""


@dataclass(frozen=True)
class HpaMetricReading:
    """One metric of the HPA as its status reports it (values already parsed from quantities)."""

    name: str  # metric name as in the HPA spec, e.g. "num_requests_waiting"
    source_type: str  # "Pods" | "Object" | "External" | "Resource" | "ContainerResource"
    target_type: str  # "AverageValue" | "Value" | "Utilization"
    target: float | None
    current: float | None  # None when the HPA status has no value (e.g. <unknown>)


@dataclass(frozen=True)
class PodTimes:
    """One pod of the scaled Deployment: when it was created, started, became ready, began deleting."""

    name: str
    created_at: float | None
    started_at: float | None = None  # status.startTime (kubelet accepted it; the twin: container start)
    ready_at: float | None = None  # the Ready condition's transition to True; None while not ready
    deleting_at: float | None = None  # metadata.deletionTimestamp


@dataclass(frozen=True)
class ScaledObjectState:
    """A KEDA ScaledObject's status: conditions (Ready, Active, Fallback, Paused) and the HPA it owns."""

    name: str
    hpa_name: str | None = None
    conditions: tuple[dict[str, str], ...] = ()
    last_active_time: str | None = None


@dataclass(frozen=True)
class ScalingSnapshot:
    """HPA spec targets and status, and the scale target's replica counts, at one moment."""

    taken_at: float
    hpa_found: bool
    current_replicas: int | None = None
    desired_replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    metrics: tuple[HpaMetricReading, ...] = ()
    last_scale_time: str | None = None
    conditions: tuple[dict[str, str], ...] = ()
    deployment_replicas: int | None = None  # Deployment spec.replicas
    ready_replicas: int | None = None  # Deployment status.readyReplicas
    limited_by: str | None = None  # what held desired, when the backend knows it (the twin); see hpa_reasons
    pods: tuple[PodTimes, ...] | None = None  # the Deployment's pods now; None if the backend cannot list them
    scaled_object: ScaledObjectState | None = None  # KEDA runs: the ScaledObject behind the HPA
    deployment_found: bool = True  # False when the backend read the Deployment and it was not there


@dataclass(frozen=True)
class JobState:
    """What the backend knows of one Job this run created."""

    name: str
    exists: bool
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    failure: str | None = None  # human-readable reason when the Job or its pod failed


@dataclass(frozen=True)
class InstantSample:
    labels: dict[str, str]
    value: float  # may be NaN, as Prometheus may return it


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float]] = field(default_factory=list)  # (unix time, value)


@dataclass(frozen=True)
class JobLaunch:
    """Everything a backend needs to start one load-generator Job of the plan."""

    job_name: str  # the name in the experiment config, e.g. "phase-1-high-load"
    resource_name: str  # unique Kubernetes name for this run, e.g. "phase-1-high-load-r20261123t0416"
    manifest: dict[str, Any]  # fully rendered batch/v1 Job
    rate: float | None  # offered requests per second, when known
    duration: float  # planned seconds until the runner stops it
    values: dict[str, Any] = field(default_factory=dict)  # template values (max_concurrency, ...)


@dataclass(frozen=True)
class PodLog:
    """The log of one container of a load Job's pod, as the pods/log API returns it."""

    pod: str
    container: str
    text: str
    source: str = "vllm bench serve log"  # what printed it (the twin says so)
    line_times: dict[str, float] = field(default_factory=dict)  # from timestamped logs (log_times.py)


class QueryError(Exception):
    """A PromQL query failed (server unreachable, bad query, timeout)."""


class Backend(ABC):
    """Where an experiment runs. One instance serves one run."""

    name: str  # "kubernetes" | "simulation"
    clock: Clock
    # How far back the TTFT/ITL histograms can be queried, when the store is bounded (the twin's
    # in-memory TSDB); None: the server's retention, assumed to cover the run.  Longer windows are
    # reported as not measured (latency_windows.py).
    series_retention_s: float | None = None
    _warning_handler: Callable[[str], None] = logging.getLogger(__name__).warning

    def set_warning_handler(self, handler: Callable[[str], None]) -> None:
        """Send the backend's own warnings (retries, adopted objects) to `handler`, e.g. events.csv."""
        self._warning_handler = handler

    def _warn(self, text: str) -> None:
        self._warning_handler(text)

    def tick_reads(self, budget_s: float) -> contextlib.AbstractContextManager[None]:
        """Reads made inside (by this thread) give up after about `budget_s`: a tick's reads, which the
        next tick makes again.  Backends that do not retry have nothing to bound."""
        return contextlib.nullcontext()

    @abstractmethod
    def start_job(self, launch: JobLaunch) -> None:
        """Create the Job. Must not create a second Job if it already exists for this run."""

    @abstractmethod
    def stop_job(self, resource_name: str) -> None:
        """Delete the Job (and its pods, background propagation). Idempotent."""

    @abstractmethod
    def job_states(self) -> dict[str, JobState]:
        """States of the Jobs this run created, keyed by resource name."""

    @abstractmethod
    def scaling_snapshot(self) -> ScalingSnapshot:
        """HPA status and Deployment readiness, now."""

    @abstractmethod
    def query(self, promql: str, at: float | None = None) -> list[InstantSample]:
        """Instant PromQL query at time `at` (now when None). Raises QueryError."""

    @abstractmethod
    def query_range(self, promql: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """Range PromQL query. Raises QueryError."""

    def hpa_object(self) -> dict[str, Any] | None:
        """The HPA as the cluster holds it now (spec and status), None when there is none."""
        return None

    def apply_hpa(self, manifest: dict[str, Any]) -> bool:
        """Make the HPA of `manifest` exist; True if this call created it (so the run removes it)."""
        return False

    def delete_hpa(self, name: str) -> None:  # noqa: B027 - only backends that apply HPAs need it
        """Delete an HPA this run created."""

    def apply_scaled_object(self, manifest: dict[str, Any]) -> bool:
        """Make the KEDA ScaledObject of `manifest` exist; True if this call created it."""
        return False

    def delete_scaled_object(self, name: str) -> None:  # noqa: B027 - only backends that apply them need it
        """Delete a ScaledObject this run created."""

    def restore_taken_over(self) -> list[str]:
        """Put back the objects this run took over (--take-over); one line each for the events."""
        return []

    def job_logs(self, resource_name: str) -> list[PodLog]:
        """Logs of the Job's pods, oldest pod first, read before the Job is deleted.

        Pods are found by the Job's `job-name` label.  Raises HpaExpError when they cannot be read;
        an empty list means the Job has no pods."""
        return []

    def leftover_jobs(self) -> list[str]:
        """Jobs of this run still present (checked by label at the end of a run)."""
        return [name for name, state in self.job_states().items() if state.exists]

    def attach_run_directory(self, path: Path, t0: float) -> None:  # noqa: B027 - optional hook
        """The run writes to `path` from `t0` (backend clock); a backend may write extra files there."""

    def describe(self) -> dict[str, Any]:
        """What run.json records about where the run happened (cluster or model parameters)."""
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections; called once at the end of a run."""
