"""Why the HPA scaled, per scale event: what the metrics said, what limit held, how long pods took.

Reads only the run directory.  A run recorded by hpa-exp has the why columns in metrics.csv
(hpa_reasons, written live); a run without them (imported from the original system, or older)
gets them recomputed here with the same code from its metric values and targets, and what cannot
be recomputed - the limit, when no condition was recorded - stays unknown.

A scale event is a change of the HPA's desired replicas.  Its time is the HPA's lastScaleTime when
the run recorded it (`hpa_last_scale_s`), else the sample that first showed the new desired count.
The ready lag of a scale-up comes from pods.csv: the pods created from that time on, up to the
number the event added, and when each became ready; without pods.csv, from the first sample whose
ready count reaches the new desired count; without either, it is unknown.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hpa_experiments.analysis.load import Run
from hpa_experiments.hpa_reasons import (
    LAST_SCALE_COLUMN,
    LIMITED_BY_COLUMN,
    MAX_REPLICAS,
    METRICS_UNAVAILABLE,
    MIN_REPLICAS,
    NOT_LIMITED,
    SCALE_DOWN_POLICY,
    SCALE_DOWN_WINDOW,
    SCALE_UP_POLICY,
    SCALE_UP_WINDOW,
    SCALING_DISABLED,
    TOLERANCE,
    UNREADY_PODS,
    Tolerances,
    condition_columns,
    pods_proposals,
    target_column,
    tolerances_of,
)
from hpa_experiments.keda_names import display_name
from hpa_experiments.rundir import HPA_APPLIED_FILE, HPA_LIVE_FILE, PODS_FILE, SCALED_OBJECT_APPLIED_FILE

# Pod creation times have one-second resolution on Kubernetes, as has lastScaleTime; a decision seen
# only in a sample may be up to this much older than the sample.
CREATION_SLACK_S = 1.0
SHORT_NAMES = {"num_requests_waiting": "queue", "kv_cache_usage_perc": "KV cache"}
LIMIT_PHRASES = {
    MAX_REPLICAS: "capped by maxReplicas {desired}",
    MIN_REPLICAS: "held at minReplicas {desired}",
    SCALE_UP_POLICY: "limited by the scaleUp rate policy",
    SCALE_DOWN_POLICY: "limited by the scaleDown rate policy",
    SCALE_UP_WINDOW: "held by the scaleUp stabilization window",
    SCALE_DOWN_WINDOW: "held by the scaleDown stabilization window",
    TOLERANCE: "held within the tolerance",
    UNREADY_PODS: "held while new pods are not ready",
    METRICS_UNAVAILABLE: "metrics unavailable",
    SCALING_DISABLED: "scaling disabled",
    NOT_LIMITED: "no limit held it",
}


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The HPA metric columns of metrics.csv: those recorded next to a target column."""
    candidates = ["num_requests_waiting", "kv_cache_usage_perc"]
    candidates += [
        c
        for c in frame.columns
        if c.startswith("hpa_") and c != LAST_SCALE_COLUMN and not c.endswith(("_target", "_ratio", "_proposed"))
    ]
    return [
        c for c in candidates if c in frame.columns and target_column(c) in frame.columns and frame[c].notna().any()
    ]


def hpa_spec(run: Run) -> dict[str, Any] | None:
    """The HPA of the run as applied (hpa-applied.yaml), else as found at the start; None if neither."""
    for name in (HPA_APPLIED_FILE, HPA_LIVE_FILE):
        data = _yaml_mapping(run, name)
        if data is not None:
            return data
    return None


def autoscaler_floor(run: Run) -> int | None:
    """The fewest replicas the run's autoscaler keeps: a ScaledObject's idle/min replica count, else
    the HPA's minReplicas (1 when unset); None when the run recorded neither manifest."""
    scaled_object = _yaml_mapping(run, SCALED_OBJECT_APPLIED_FILE)
    if scaled_object is not None:
        spec = scaled_object.get("spec") or {}
        for key in ("idleReplicaCount", "minReplicaCount"):
            if isinstance(spec.get(key), int):
                return int(spec[key])
        return 0  # KEDA's default minReplicaCount
    hpa = hpa_spec(run)
    if hpa is None:
        return None
    value = (hpa.get("spec") or {}).get("minReplicas", 1)
    return int(value) if isinstance(value, int) else None


def metric_labels(run: Run, columns: list[str]) -> dict[str, str]:
    """What tables and legends call each metric column: KEDA's by their trigger (keda_names.py)."""
    scaled_object = _yaml_mapping(run, SCALED_OBJECT_APPLIED_FILE)
    return {c: display_name(c, scaled_object, SHORT_NAMES) for c in columns}


def _yaml_mapping(run: Run, name: str) -> dict[str, Any] | None:
    path = run.path / name
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class WhyData:
    """Per sample: ratio and proposal of each metric and limited_by; `recomputed` when derived here."""

    frame: pd.DataFrame  # elapsed_s, <metric>_ratio, <metric>_proposed, limited_by
    metrics: list[str]
    recomputed: bool
    has_conditions: bool


def why_data(run: Run) -> WhyData:
    """The why columns of the run: as recorded, or recomputed from the metric values and targets.

    A run without them recorded no conditions either: only what the recomputation proves is said
    (the metrics propose exactly the desired count: "none", or held by the tolerance or unready pods)."""
    frame = run.metrics
    metrics = metric_columns(frame)
    recorded = LIMITED_BY_COLUMN in frame.columns and all(f"{m}_ratio" in frame.columns for m in metrics)
    conditions = [c for c in condition_columns() if c in frame.columns]
    has_conditions = bool(conditions) and bool(frame[conditions].notna().any().any())
    if recorded:
        return WhyData(frame, metrics, False, has_conditions)
    spec = hpa_spec(run)
    tolerances = tolerances_of(spec) if spec else Tolerances()

    def column(name: str) -> np.ndarray:
        if name not in frame.columns:
            return np.full(len(frame), np.nan)
        return frame[name].to_numpy(dtype=float, na_value=np.nan)

    derived: dict[str, Any] = {}
    best = np.full(len(frame), -np.inf)
    best_held = np.full(len(frame), "", dtype=object)
    replicas, ready = column("replicas"), column("ready_replicas")
    for metric in metrics:  # the original system's metrics were Pods metrics
        ratio, proposed, held = pods_proposals(
            column(metric), column(target_column(metric)), replicas, ready, tolerances
        )
        derived[f"{metric}_ratio"], derived[f"{metric}_proposed"] = ratio, proposed
        higher = np.nan_to_num(proposed, nan=-np.inf) > best  # the first of equal proposals wins
        best, best_held = np.where(higher, proposed, best), np.where(higher, held, best_held)
    proven = best == column("desired_replicas")
    unproven = np.full(len(frame), None, dtype=object)
    derived[LIMITED_BY_COLUMN] = np.where(proven, np.where(best_held == "", NOT_LIMITED, best_held), unproven)
    merged = frame.drop(columns=[c for c in derived if c in frame.columns]).assign(**derived)
    return WhyData(merged, metrics, True, has_conditions)


def _number(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _read_pods(run: Run) -> pd.DataFrame | None:
    path = run.path / PODS_FILE
    if not path.exists():
        return None
    try:
        pods = pd.read_csv(path, dtype={"pod": "string"}, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError):
        return None
    return pods if {"pod", "created_s", "ready_s"} <= set(pods.columns) else None


def _decision_times(frame: pd.DataFrame) -> list[tuple[int, float, str, int]]:
    """(row index, decision time, basis, desired before) for each change of desired replicas."""
    if "desired_replicas" not in frame.columns:
        return []
    desired = frame["desired_replicas"].to_numpy(dtype=float, na_value=np.nan)
    rows = np.flatnonzero(~np.isnan(desired))
    values = desired[rows]
    changed = np.flatnonzero(values[1:] != values[:-1]) + 1
    if LAST_SCALE_COLUMN in frame.columns:
        scales = frame[LAST_SCALE_COLUMN].astype(float)
        scale_now, scale_before = scales.to_numpy(na_value=np.nan), scales.ffill().shift(1).to_numpy(na_value=np.nan)
    else:
        scale_now = scale_before = np.full(len(frame), np.nan)
    elapsed = frame["elapsed_s"].to_numpy(dtype=float)
    found = []
    for k in changed:
        row, before = int(rows[k]), int(values[k - 1])
        scale = scale_now[row]
        if not np.isnan(scale) and scale != scale_before[row]:  # lastScaleTime moved: the exact decision
            found.append((int(frame.index[row]), float(scale), "lastScaleTime", before))
        else:
            found.append((int(frame.index[row]), float(elapsed[row]), "sample", before))
    return found


def _ready_lag_from_pods(pods: pd.DataFrame, at_s: float, added: int, taken: set[str], basis: str) -> dict[str, Any]:
    # lastScaleTime and creationTimestamp are both whole seconds, so the decision's pods are created
    # at or after it; a decision first seen in a sample happened up to a second before that sample
    slack = 0.0 if basis == "lastScaleTime" else CREATION_SLACK_S
    new = pods[(pods["created_s"] >= at_s - slack) & ~pods["pod"].isin(list(taken))]
    new = new.sort_values("created_s", kind="stable").head(added)
    taken.update(str(p) for p in new["pod"])
    ready = new["ready_s"].dropna().to_numpy(dtype=float) - at_s
    deleted = new["ready_s"].isna() & new["deleting_s"].notna() if "deleting_s" in new.columns else None
    return {
        "new_pods": len(new),
        "ready_pods": len(ready),
        "deleted_before_ready": int(deleted.sum()) if deleted is not None else 0,
        "first_ready_after_s": float(ready.min()) if len(ready) else None,
        "ready_after_s": float(ready.max()) if len(ready) else None,
        "ready_basis": "pods.csv",
    }


def _ready_lag_from_samples(
    t: np.ndarray, ready: np.ndarray, at_s: float, desired: int, until_s: float
) -> dict[str, Any]:
    """From the ready_replicas column: the first sample after the decision with `desired` ready."""
    unknown = {
        "new_pods": None,
        "ready_pods": None,
        "first_ready_after_s": None,
        "ready_after_s": None,
        "ready_basis": "unknown",
    }
    if np.isnan(ready).all():
        return unknown
    window = slice(int(np.searchsorted(t, at_s)), int(np.searchsorted(t, until_s)))
    counts = ready[window]
    if len(counts) == 0 or np.isnan(counts).all():
        return unknown
    reached = np.flatnonzero(counts >= desired)
    return {
        "new_pods": None,
        "ready_pods": int(np.nanmax(counts)),
        "first_ready_after_s": None,
        "ready_after_s": float(t[window][reached[0]] - at_s) if len(reached) else None,
        "ready_basis": "ready_replicas samples",
    }


def scale_events(run: Run, why: WhyData | None = None) -> list[dict[str, Any]]:
    """One entry per change of desired replicas, with its metrics, limit, ready lag and `line`."""
    why = why or why_data(run)
    frame = why.frame
    pods = _read_pods(run)
    decisions = _decision_times(frame)
    times = frame["elapsed_s"].to_numpy(dtype=float)
    ready_counts = (
        frame["ready_replicas"].to_numpy(dtype=float, na_value=np.nan)
        if "ready_replicas" in frame.columns
        else np.full(len(frame), np.nan)
    )
    taken: set[str] = set()
    events = []
    labels = metric_labels(run, why.metrics)
    for n, (i, at_s, basis, was) in enumerate(decisions):
        row = frame.loc[i]
        assert isinstance(row, pd.Series)  # the samples' index is unique: one label, one row
        desired = int(row["desired_replicas"])
        replicas = _number(row.get("replicas"))
        metrics = []
        for column in why.metrics:  # "metric": the metrics.csv column, "name": what the user knows it by
            metrics.append(
                {
                    "metric": column,
                    "name": labels[column],
                    "value": _number(row.get(column)),
                    "target": _number(row.get(target_column(column))),
                    "ratio": _number(row.get(f"{column}_ratio")),
                    "proposed": _number(row.get(f"{column}_proposed")),
                }
            )
        limited = row.get(LIMITED_BY_COLUMN)
        limited_by = (
            None
            if limited is None or limited is pd.NA or (isinstance(limited, float) and math.isnan(limited))
            else str(limited)
        )
        event: dict[str, Any] = {
            "at_s": round(at_s, 3),
            "time_basis": basis,
            "direction": "up" if desired > was else "down",
            "from_desired": was,
            "replicas": replicas,
            "desired": desired,
            "metrics": metrics,
            "limited_by": limited_by,
            "limit_basis": _limit_basis(run, why),
        }
        if event["direction"] == "up":
            until = decisions[n + 1][1] if n + 1 < len(decisions) else float(frame["elapsed_s"].max()) + 1
            size_before = replicas if replicas is not None and replicas < desired else was
            added = desired - int(size_before or 0)
            if pods is not None:
                event.update(_ready_lag_from_pods(pods, at_s, max(added, 0), taken, basis))
            else:
                event.update(_ready_lag_from_samples(times, ready_counts, at_s, desired, until))
        event["line"] = event_line(event)
        events.append(event)
    return events


def _limit_basis(run: Run, why: WhyData) -> str:
    if why.recomputed:
        return "recomputed from the recorded metrics (no HPA conditions recorded)"
    if run.backend == "simulation":
        return "the twin's HPA controller"
    return "HPA conditions and recomputed proposals"


def _driver(event: dict[str, Any]) -> dict[str, Any] | None:
    known = [m for m in event["metrics"] if m["proposed"] is not None]
    if known:
        return max(known, key=lambda m: m["proposed"])
    with_ratio = [m for m in event["metrics"] if m["ratio"] is not None]
    return max(with_ratio, key=lambda m: m["ratio"]) if with_ratio else None


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


def event_line(event: dict[str, Any]) -> str:
    """ "at 255 s: desired 10 (queue 14.6x target; capped by maxReplicas 10); 8 ready after 165 s" """
    desired = event["desired"]
    reasons = []
    driver = _driver(event)
    if driver is None:
        reasons.append("metric values unknown")
    else:
        text = (
            f"{driver['name']} {driver['ratio']:.1f}x target"
            if driver["ratio"] is not None
            else (f"{driver['name']} unknown")
        )
        if driver["proposed"] is not None and driver["proposed"] != desired:
            text += f", proposes {driver['proposed']:.0f}"
        reasons.append(text)
    limit = event["limited_by"]
    if limit is None:
        reasons.append(
            "limit unknown" + (" (no HPA conditions recorded)" if "recomputed" in event["limit_basis"] else "")
        )
    else:
        reasons.append(LIMIT_PHRASES.get(limit, limit).format(desired=desired))
    was = f" (was {event['from_desired']})"
    line = f"at {_seconds(event['at_s'])}: desired {desired}{was}; {'; '.join(reasons)}"
    if event["direction"] == "up":
        line += "; " + _ready_text(event)
    return line


def _ready_text(event: dict[str, Any]) -> str:
    basis = event.get("ready_basis")
    if basis == "unknown" or basis is None:
        return "ready lag unknown (no pod or ready-replica data)"
    lag = event["ready_after_s"]
    if basis == "pods.csv":
        new, ready = event["new_pods"], event["ready_pods"]
        if new == 0:
            return "no new pod seen"
        if ready == new:
            return f"{ready} ready after {_seconds(lag)}"
        if ready == 0:
            return f"none of {new} new pods became ready"
        deleted = event.get("deleted_before_ready") or 0
        gone = [f"{deleted} deleted before ready"] if deleted else []
        gone += [f"{new - ready - deleted} not ready by the end"] if new - ready - deleted else []
        return f"{ready} of {new} ready after {_seconds(lag)} ({', '.join(gone)})"
    if lag is None:
        return f"ready count never reached {event['desired']} (at most {event['ready_pods']})"
    return f"{event['desired']} ready after {_seconds(lag)} (sample resolution)"


def event_lines(summary: dict[str, Any]) -> list[str]:
    """The per-event lines of a summary (empty for summaries written before scale events)."""
    return [event["line"] for event in summary.get("scale_events") or []]


def why_html(summary: dict[str, Any]) -> str:
    """The report's section: one numbered line per scale event (numbers as in plots/why.png)."""
    events = summary.get("scale_events")
    if events is None:
        return ""
    if not events:
        return "<h2>Why the HPA scaled</h2><p>No scale event: the desired replica count never changed.</p>"
    items = "".join(f"<li>{html.escape(e['line'])}</li>" for e in events)
    basis = html.escape(events[0]["limit_basis"])
    return (
        f'<h2>Why the HPA scaled</h2><p class="sub">What held the desired count: {basis}. '
        f"Ready lag: from the decision until the new pods were Ready.</p><ol>{items}</ol>"
    )
