"""A KEDA ScaledObject's status in a run: metrics.csv columns and events.csv lines.

Columns `keda_ready`, `keda_active`, `keda_fallback`, `keda_paused`: 1 when the condition is
True, 0 when False, empty when Unknown or not reported.  An event `scaled_object` is written
whenever a condition changes (with its reason and message).
"""

from __future__ import annotations

from typing import Any

from hpa_experiments.backends.base import ScaledObjectState

CONDITIONS = ("Ready", "Active", "Fallback", "Paused")  # in the order of rundir.KEDA_COLUMNS


def condition_cells(state: ScaledObjectState) -> dict[str, Any]:
    """metrics.csv cells of the ScaledObject's conditions."""
    status = {c.get("type"): c.get("status") for c in state.conditions}
    return {f"keda_{kind.lower()}": {"True": 1, "False": 0}.get(str(status.get(kind))) for kind in CONDITIONS}


def condition_changes(
    previous: dict[str, dict[str, str]], state: ScaledObjectState
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The conditions by type now, and a line for each that changed since `previous`."""
    now = {c["type"]: c for c in state.conditions if c.get("type") in CONDITIONS}
    lines = []
    for kind, condition in now.items():
        before = previous.get(kind)
        if before is None or before.get("status") != condition.get("status"):
            was = before.get("status") if before else "none"
            why = ": ".join(p for p in (condition.get("reason"), condition.get("message")) if p)
            lines.append(f"{state.name} {kind}: {was} -> {condition.get('status')}" + (f" ({why})" if why else ""))
    return now, lines
