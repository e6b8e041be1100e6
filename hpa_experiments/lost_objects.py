"""During a run: say at once when an object the run watches disappears.

An HPA deleted mid-run leaves the replica columns empty; a deleted Deployment leaves nothing to
scale; a load Job deleted by someone else stops its load early.  A run that lost sight of one of
them must not end as "completed": each loss is an `object_lost` event at the tick that first sees
it (`object_back` if it reappears), the runner marks a lost Job's phase `lost: ...` and ends the
run as failed (exit 1) with `reason()`; analysis/kpis.py turns the events into alerts.

Only objects seen before count (an HPA that KEDA has not made yet is not lost).  A Job counts from
the first tick whose listing began after its creation returned, until the run deletes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hpa_experiments.backends.base import JobState, ScalingSnapshot

LOST, BACK = "object_lost", "object_back"


@dataclass
class _Watched:
    seen: bool = False
    lost_at: float | None = None


class LostSight:
    """Feed it each tick (in order) with `check`; tell it when the run starts and deletes Jobs."""

    def __init__(self, namespace: str, deployment: str, hpa: str | None, scaled_object: str | None = None):
        self.namespace = namespace
        self._names = {"HPA": hpa, "Deployment": deployment, "ScaledObject": scaled_object}
        self._watched = {kind: _Watched() for kind, name in self._names.items() if name}
        self._jobs: dict[str, tuple[str, float]] = {}  # resource -> (job name, elapsed when created)
        self._lost_jobs: dict[str, str] = {}  # resource -> what happened
        self._losses: list[str] = []

    def job_started(self, resource: str, job: str, elapsed: float) -> None:
        self._jobs[resource] = (job, elapsed)

    def job_stopped(self, resource: str) -> None:
        """The run deletes it now: its absence from here on is expected."""
        self._jobs.pop(resource, None)

    def job_lost(self, resource: str) -> str | None:
        """Why the Job's phase is not "completed" (None when it was not lost)."""
        return self._lost_jobs.get(resource)

    def reason(self) -> str | None:
        """The run's failure reason when it lost sight of anything."""
        return "lost sight of " + "; ".join(self._losses) if self._losses else None

    def check(
        self, elapsed: float, snapshot: ScalingSnapshot | None, job_states: Mapping[str, JobState] | None
    ) -> list[tuple[str, str]]:
        """Events for this tick; `None` for a part that could not be read (no conclusion from it)."""
        events: list[tuple[str, str]] = []
        if snapshot is not None:
            present = {
                "HPA": snapshot.hpa_found,
                "Deployment": snapshot.deployment_found,
                "ScaledObject": snapshot.scaled_object is not None,
            }
            for kind, watched in self._watched.items():
                events += self._object(kind, watched, present[kind], elapsed)
        if job_states is not None:
            events += self._check_jobs(elapsed, job_states)
        return events

    def _object(self, kind: str, watched: _Watched, present: bool, elapsed: float) -> list[tuple[str, str]]:
        label = f"{kind} {self.namespace}/{self._names[kind]}"
        if present:
            watched.seen = True
            if watched.lost_at is None:
                return []
            since, watched.lost_at = watched.lost_at, None
            return [(BACK, f"{label} is back at {elapsed:g} s (missing since {since:g} s); the run stays failed")]
        if not watched.seen or watched.lost_at is not None:
            return []
        watched.lost_at = elapsed
        self._losses.append(f"{label} (gone at {elapsed:g} s)")
        what = {
            "HPA": "no replica or HPA metric values from now on",
            "Deployment": "nothing left to scale",
            "ScaledObject": "KEDA no longer scales the Deployment",
        }[kind]
        return [(LOST, f"{label} disappeared (not found at {elapsed:g} s): {what}; the run will end as failed")]

    def _check_jobs(self, elapsed: float, states: Mapping[str, JobState]) -> list[tuple[str, str]]:
        events = []
        for resource, (job, created) in list(self._jobs.items()):
            state = states.get(resource)
            if elapsed < created or resource in self._lost_jobs or (state is not None and state.exists):
                continue  # listed before it was created, already said, or there
            text = f"Job {self.namespace}/{resource} deleted by someone else (not found at {elapsed:g} s)"
            self._lost_jobs[resource] = text
            self._losses.append(f"{job}: {text}")
            events.append((LOST, f"{job}: {text}: its load stopped early; the run will end as failed"))
        return events
