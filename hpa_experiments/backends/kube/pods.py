"""The scaled Deployment's pods as `PodTimes`: when each was created, started and became ready.

From the pod objects: metadata.creationTimestamp, status.startTime, the Ready condition's
lastTransitionTime while it is True, metadata.deletionTimestamp.  The API gives seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from hpa_experiments.backends.base import PodTimes


def rfc3339_seconds(text: object) -> float | None:
    """'2026-11-23T04:00:00Z' -> Unix seconds; None for anything else."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def deployment_selector(deployment: Mapping[str, Any]) -> str | None:
    """The Deployment's spec.selector.matchLabels as a label selector string (None without labels).

    matchExpressions are not translated: a Deployment selecting only by expressions lists no pods
    here, and the ready lag is then unknown rather than wrong.
    """
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or None


def pod_times(pod: Mapping[str, Any]) -> PodTimes:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ready = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready" and c.get("status") == "True"),
        None,
    )
    return PodTimes(
        name=str(meta.get("name", "")),
        created_at=rfc3339_seconds(meta.get("creationTimestamp")),
        started_at=rfc3339_seconds(status.get("startTime")),
        ready_at=None if ready is None else rfc3339_seconds(ready.get("lastTransitionTime")),
        deleting_at=rfc3339_seconds(meta.get("deletionTimestamp")),
    )
