"""`hpa-exp cleanup`: delete what a run left behind and make its run.json tell the truth.

A run that is killed (SIGKILL, a lost node, a closed laptop) cannot clean up after itself:
its Jobs keep sending load, its HPA (or ScaledObject) stays, an object it took over keeps the
run's spec, and run.json still says "running".  Everything is found by label (ownership.py), so
nothing but the run directory (for the run id) is needed: `hpa-exp/run=<id>` for one run, or
everything labelled `app.kubernetes.io/managed-by=hpa-exp` in the namespace with `--all`.
Objects the run created are deleted; objects it took over get their original spec back.
"""

from __future__ import annotations

import csv
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client

from hpa_experiments.backends.kube import jobs
from hpa_experiments.backends.kube.backend import (
    DEFAULT_API_RETRY,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    RUN_LABEL,
    KubeBackend,
    KubeSettings,
    connect,
)
from hpa_experiments.backends.kube.claim import Released, release_by_label
from hpa_experiments.backends.kube.reach import check_reachable
from hpa_experiments.config import K8S_NAME
from hpa_experiments.errors import BackendError, UsageError
from hpa_experiments.rundir import RUN_STATUSES, RunStatus, atomic_write_json, utc_iso
from hpa_experiments.signals import process_alive

T = TypeVar("T")

DEFAULT_NAMESPACE = "hpa-exp"


@dataclass
class CleanupResult:
    """What cleanup did, for printing and for tests."""

    namespace: str | None = None
    selector: str | None = None
    deleted: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)
    status_change: tuple[str, str] | None = None  # (before, after) in run.json
    notes: list[str] = field(default_factory=list)
    released: Released = field(default_factory=Released)  # HPAs and ScaledObjects deleted or restored

    def lines(self) -> list[str]:
        out = list(self.notes)
        if self.selector is not None:
            where = f"namespace {self.namespace}, label {self.selector}"
            if self.deleted:
                out += [f"deleted Job {self.namespace}/{name} (background propagation)" for name in self.deleted]
            else:
                out.append(f"no Jobs found ({where})")
            if self.remaining:
                out.append("still present (terminating): " + ", ".join(self.remaining))
            out += [f"deleted {name} (created by the run)" for name in self.released.deleted]
            out += [f"restored {name} (taken over by the run): original spec back" for name in self.released.restored]
            if not self.released.deleted and not self.released.restored:
                out.append(f"no HPA or ScaledObject found ({where})")
        if self.status_change:
            before, after = self.status_change
            out.append(f"run.json: status {before} -> {after}")
        return out


@dataclass(frozen=True)
class RunToClean:
    """A run directory with what cleanup needs from its run.json."""

    path: Path
    info: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.info["id"])  # checked by open_run

    @property
    def backend(self) -> str:
        return str(self.info.get("backend") or "unknown")

    @property
    def namespace(self) -> str:
        for section in (self.info.get("backend_info"), self.info.get("config")):
            candidate = section.get("namespace") if isinstance(section, dict) else None
            if isinstance(candidate, str) and candidate:
                return candidate
        return DEFAULT_NAMESPACE


def open_run(path: Path) -> RunToClean:
    """The run at `path`; UsageError when it is not a run directory.

    Reads run.json itself rather than through the analysis package: cleanup must work (and start
    fast) with nothing but the run directory and the cluster.
    """
    if not path.is_dir():
        raise UsageError(f"{path}: no such run directory")
    try:
        info = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: not a run directory, run.json is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path / 'run.json'}: cannot read run.json: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("id"), str) or info.get("status") not in RUN_STATUSES:
        raise UsageError(f"{path / 'run.json'}: not written by hpa-exp run (no run id or status)")
    return RunToClean(path, info)


def check_not_alive(run: RunToClean) -> None:
    """Refuse to clean up a run whose process is still running here (it cleans up itself)."""
    pid = run.info.get("pid")
    if run.info.get("status") == RunStatus.RUNNING and isinstance(pid, int) and process_alive(pid):
        raise UsageError(
            f"{run.path}: the run is still in progress (pid {pid}); stop it with Ctrl-C or "
            f"`kill -TERM {pid}` (it then cleans up itself), or pass --force"
        )


def mark_run(run: RunToClean, jobs_deleted: int, now: float | None = None) -> tuple[str, str] | None:
    """Set run.json's status from "running" to "interrupted" (or "failed" after an error event).

    Runs in any other state are left as they are; returns (before, after) when changed.
    """
    status = str(run.info.get("status") or "unknown")
    if status != RunStatus.RUNNING:
        return None
    now = time.time() if now is None else now
    new_status = RunStatus.FAILED if _last_event_kind(run.path) == "error" else RunStatus.INTERRUPTED
    what = f"{jobs_deleted} Job(s) deleted" if jobs_deleted else "Jobs checked"
    info = dict(run.info)
    info.update(
        status=new_status,
        reason=f"process ended without cleanup; {what} by hpa-exp cleanup at {utc_iso(now)}",
        end_utc=info.get("end_utc") or utc_iso(_last_write(run.path)),
    )
    atomic_write_json(run.path / "run.json", info)
    return status, new_status


def _last_write(directory: Path) -> float:
    """When the run last wrote a sample or event (its end, as far as anyone can know)."""
    times = [p.stat().st_mtime for p in (directory / "metrics.csv", directory / "events.csv") if p.exists()]
    return max(times) if times else (directory / "run.json").stat().st_mtime


def _last_event_kind(directory: Path) -> str | None:
    """The kind of the last complete row of events.csv (a killed run may leave a partial line)."""
    path = directory / "events.csv"
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")
    complete = text[: text.rfind("\n") + 1]
    rows = [r for r in csv.DictReader(complete.splitlines()) if r.get("kind")]
    return rows[-1]["kind"] if rows else None


def first_contact(settings: KubeSettings, on_warning: Callable[[str], None]) -> None:
    """Fail in seconds, naming the server, when no API server answers (not after the run's retry budget)."""
    api_client, context = connect(settings)
    try:
        check_reachable(api_client, context, on_retry=on_warning)
    finally:
        api_client.close()


def delete_jobs(
    settings: KubeSettings, namespace: str, selector: str, on_warning: Callable[[str], None]
) -> tuple[list[str], list[str]]:
    """Delete every Job matching `selector` in `namespace` (background propagation, so their pods go
    too); returns (deleted, still present afterwards).  API calls are retried like a run's."""
    api_client, _ = connect(settings)
    batch = client.BatchV1Api(api_client)
    call = functools.partial(
        jobs.call_json, timeout=settings.request_timeout, policy=DEFAULT_API_RETRY, on_retry=on_warning
    )

    def names() -> list[str]:
        listed = jobs.list_jobs(call, batch, namespace, selector, f"list Jobs ({selector}) in {namespace}")
        return sorted(job["metadata"]["name"] for job in listed)

    try:
        found = names()
        for name in found:
            jobs.delete_job(call, batch, namespace, name)
        return found, names()
    finally:
        api_client.close()


def release_autoscalers(
    settings: KubeSettings, namespace: str, selector: str, notes: list[str], on_warning: Callable[[str], None]
) -> Released:
    """Delete the HPAs and ScaledObjects with the label `selector` that a run created; restore the ones it
    took over.  ScaledObjects first: deleting one deletes the HPA KEDA made for it."""
    backend = KubeBackend(
        settings, None, namespace=namespace, deployment="", hpa_name="", run_id="cleanup", on_warning=on_warning
    )
    try:
        try:
            done = release_by_label([backend.scaled_object_kind], selector)
        except BackendError as exc:
            done = Released()
            notes.append(f"ScaledObjects not checked: {exc}")
        hpas = release_by_label([backend.hpa_kind], selector)
        return Released(done.deleted + hpas.deleted, done.restored + hpas.restored)
    finally:
        backend.close()


def cleanup(
    run_path: Path | None,
    *,
    all_jobs: bool,
    settings: KubeSettings,
    namespace: str | None = None,
    force: bool = False,
    on_warning: Callable[[str], None] = lambda _: None,
) -> CleanupResult:
    """Delete the Jobs, HPA and ScaledObject of the run at `run_path` (or, with `all_jobs`, every
    hpa-exp object in the namespace), restore what it took over, and mark the run's run.json.  A
    simulated run has no cluster objects: it is only marked."""
    if namespace is not None and (not K8S_NAME.match(namespace) or len(namespace) > 63):
        raise UsageError(f"--namespace {namespace!r}: must be a Kubernetes name: lower-case letters, digits and '-'")
    if run_path is None and not all_jobs:
        raise UsageError("give a run directory, or --all to delete every Job hpa-exp created in the namespace")
    run = open_run(run_path) if run_path is not None else None
    if run is not None and not force:
        check_not_alive(run)
    result = CleanupResult()
    if all_jobs:
        result.selector = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    elif run is not None and run.backend == "kubernetes":
        result.selector = f"{RUN_LABEL}={run.run_id}"
    elif run is not None:
        result.notes.append(f"{run.path.name}: ran on the {run.backend} backend, no cluster objects to delete")
    if result.selector is not None:
        result.namespace = namespace or (run.namespace if run is not None else DEFAULT_NAMESPACE)
        first_contact(settings, on_warning)
        result.deleted, result.remaining = delete_jobs(settings, result.namespace, result.selector, on_warning)
        result.released = release_autoscalers(settings, result.namespace, result.selector, result.notes, on_warning)
    if run is not None:
        result.status_change = mark_run(run, len(result.deleted))
        if result.status_change is None:
            result.notes.append(f"{run.path.name}: status {run.info.get('status')!r} kept")
    return result
