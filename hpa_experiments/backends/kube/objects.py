"""Reading Kubernetes objects (as plain JSON dicts) into the backend's value types.

Pure functions, no API calls: HPA spec/status -> ScalingSnapshot fields, Job + Pods -> JobState.
Quantities are parsed exactly ("60250m" -> 60.25), never by stripping a suffix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hpa_experiments.backends.base import HpaMetricReading, JobState
from hpa_experiments.quantity import parse_quantity

# Container states that mean the Job's pod will not make progress without intervention.
STUCK_CONTAINER_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")

# metric source type -> the key of its block in spec.metrics[] / status.currentMetrics[]
_SOURCE_KEYS = {
    "Pods": "pods",
    "Object": "object",
    "External": "external",
    "Resource": "resource",
    "ContainerResource": "containerResource",
}


def _quantity(text: Any) -> float | None:
    if text is None:
        return None
    return parse_quantity(text)


def _metric_name(source_type: str, block: Mapping[str, Any]) -> str:
    if source_type in ("Resource", "ContainerResource"):
        return str(block.get("name", ""))
    return str(block.get("metric", {}).get("name", ""))


def _target(target: Mapping[str, Any]) -> tuple[str, float | None]:
    kind = str(target.get("type", ""))
    if kind == "Utilization":
        value = target.get("averageUtilization")
        return kind, None if value is None else float(value)
    if kind == "AverageValue":
        return kind, _quantity(target.get("averageValue"))
    return kind, _quantity(target.get("value"))


def _current(current: Mapping[str, Any], target_type: str) -> float | None:
    if target_type == "Utilization" and current.get("averageUtilization") is not None:
        return float(current["averageUtilization"])
    if target_type == "Value" and current.get("value") is not None:
        return _quantity(current["value"])
    for key in ("averageValue", "value"):
        if current.get(key) is not None:
            return _quantity(current[key])
    if current.get("averageUtilization") is not None:
        return float(current["averageUtilization"])
    return None


def hpa_metric_readings(hpa: Mapping[str, Any]) -> tuple[HpaMetricReading, ...]:
    """One reading per metric of the HPA spec (plus any status-only metric), in spec order."""
    currents: dict[tuple[str, str], Mapping[str, Any]] = {}
    for entry in hpa.get("status", {}).get("currentMetrics") or []:
        source_type = str(entry.get("type", ""))
        block = entry.get(_SOURCE_KEYS.get(source_type, ""), {}) or {}
        currents[(source_type, _metric_name(source_type, block))] = block.get("current", {}) or {}
    readings = []
    for entry in hpa.get("spec", {}).get("metrics") or []:
        source_type = str(entry.get("type", ""))
        block = entry.get(_SOURCE_KEYS.get(source_type, ""), {}) or {}
        name = _metric_name(source_type, block)
        target_type, target = _target(block.get("target", {}) or {})
        current = currents.pop((source_type, name), None)
        value = None if current is None else _current(current, target_type)
        readings.append(HpaMetricReading(name, source_type, target_type, target, value))
    for (source_type, name), current in currents.items():
        readings.append(HpaMetricReading(name, source_type, "", None, _current(current, "")))
    return tuple(readings)


def hpa_conditions(hpa: Mapping[str, Any]) -> tuple[dict[str, str], ...]:
    keys = ("type", "status", "reason", "message")
    return tuple(
        {key: str(c[key]) for key in keys if c.get(key) is not None}
        for c in hpa.get("status", {}).get("conditions") or []
    )


def replica_count(status: Mapping[str, Any], key: str) -> int | None:
    """A replica count from a status; the API omits zeros, so absent means 0 once status is populated."""
    if not status:
        return None
    return int(status.get(key) or 0)


def job_failure(job: Mapping[str, Any]) -> str | None:
    """Reason and message of a Job's Failed condition, if it has one."""
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            reason = condition.get("reason") or "Failed"
            message = condition.get("message")
            return f"{reason}: {message}" if message else str(reason)
    return None


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """Why a pod is stuck (image pull failure, crash loop...), if it is."""
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status", {})
    for statuses in (status.get("initContainerStatuses"), status.get("containerStatuses")):
        for container in statuses or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in STUCK_CONTAINER_REASONS:
                message = waiting.get("message")
                detail = f": {message}" if message else ""
                return f"pod {name} container {container.get('name', '?')}: {reason}{detail}"
    return None


def job_name_of_pod(pod: Mapping[str, Any]) -> str | None:
    labels = pod.get("metadata", {}).get("labels") or {}
    return next((labels[key] for key in JOB_NAME_LABELS if key in labels), None)


def job_state(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> JobState:
    status = job.get("status", {}) or {}
    failure = job_failure(job)
    if failure is None:
        failure = next((problem for pod in pods if (problem := pod_problem(pod))), None)
    return JobState(
        name=job.get("metadata", {}).get("name", ""),
        exists=True,
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        failure=failure,
    )


def job_finished(job: Mapping[str, Any]) -> bool:
    for condition in job.get("status", {}).get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            return True
    return False
