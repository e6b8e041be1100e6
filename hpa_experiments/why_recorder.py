"""Records why the HPA did what it did, during a run: the runner's hooks for hpa_reasons.

- metrics.csv: the HPA conditions, lastScaleTime, each metric's ratio to its target and the replica
  count it alone proposes, and `limited_by` (the twin's controller says it; otherwise inferred).
- events.csv: one `hpa_condition` event per change of a condition's status or reason.
- pods.csv: every pod of the scaled Deployment seen during the run, with its creation, start,
  ready and deletion times (seconds since t0), rewritten when something new is seen.
- hpa-applied.yaml / hpa-live-start.yaml: the manifest as applied and the object at the start.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from hpa_experiments.backends.base import Backend, PodTimes, ScalingSnapshot
from hpa_experiments.backends.kube.objects import hpa_metric_readings
from hpa_experiments.errors import HpaExpError
from hpa_experiments.hpa_reasons import (
    LAST_SCALE_COLUMN,
    MetricKind,
    condition_cells,
    condition_changes,
    tolerances_of,
    why_cells,
    why_columns,
)
from hpa_experiments.monitor import hpa_metric_column
from hpa_experiments.rundir import (
    HPA_APPLIED_FILE,
    HPA_LIVE_FILE,
    POD_COLUMNS,
    PODS_FILE,
    format_cell,
)

CONDITION_EVENT = "hpa_condition"


def metric_kinds(snapshot: ScalingSnapshot | None, manifest: Mapping[str, Any] | None) -> list[MetricKind]:
    """The HPA's metrics (column, source and target type): from the live HPA, else from the manifest."""
    readings = snapshot.metrics if snapshot is not None and snapshot.metrics else ()
    if not readings and manifest:
        readings = hpa_metric_readings(manifest)
    kinds: dict[str, MetricKind] = {}
    for reading in readings:
        column = hpa_metric_column(reading.name)
        kinds.setdefault(column, MetricKind(column, reading.source_type, reading.target_type))
    return list(kinds.values())


def _seconds(text: str | None) -> float | None:
    """lastScaleTime: RFC 3339 from Kubernetes, Unix seconds as text from the twin."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class WhyRecorder:
    """Per run: call `columns` before the writer exists, `attach` once it does, `fill` per row."""

    def __init__(self, manifest: Mapping[str, Any] | None, first: ScalingSnapshot | None):
        self.manifest = manifest
        self.kinds = metric_kinds(first, manifest)
        self.tolerances = tolerances_of(manifest)
        spec = (manifest or {}).get("spec") or {}
        self.min_replicas = spec.get("minReplicas", 1) if manifest else None
        self.max_replicas = spec.get("maxReplicas")
        self._conditions: dict[str, str | None] = {}
        self._last_scale: float | None = None
        self._ready: int | None = None
        self._pods: dict[str, dict[str, float | None]] = {}
        self._dir: Path | None = None
        self._t0 = 0.0

    def columns(self) -> list[str]:
        return why_columns(kind.column for kind in self.kinds)

    def attach(self, run_dir: Path, t0: float) -> None:
        self._dir, self._t0 = run_dir, t0

    def _since_t0(self, t: float | None) -> float | None:
        return None if t is None else round(t - self._t0, 3)

    def fill(self, row: dict[str, Any], snapshot: ScalingSnapshot | None) -> list[tuple[str, str]]:
        """Add the why cells to `row`; returns (event kind, text) for the condition changes."""
        if snapshot is None:
            return []
        if snapshot.pods is not None:
            self._note_pods(snapshot.pods)
        if not snapshot.hpa_found:
            return []
        conditions = condition_cells(snapshot.conditions)
        row.update(conditions)
        row[LAST_SCALE_COLUMN] = self._since_t0(_seconds(snapshot.last_scale_time))
        # The status is from the HPA's last sync; the ready count is from now.  A rescale since the
        # previous row changes the pods right after that sync, so the count before it is the one
        # the controller saw.
        basis = row
        if row[LAST_SCALE_COLUMN] != self._last_scale and self._ready is not None:
            basis = {**row, "ready_replicas": self._ready}
        self._last_scale, self._ready = row[LAST_SCALE_COLUMN], row.get("ready_replicas")
        row.update(
            why_cells(
                basis,
                self.kinds,
                self.tolerances,
                conditions,
                min_replicas=snapshot.min_replicas if snapshot.min_replicas is not None else self.min_replicas,
                max_replicas=snapshot.max_replicas if snapshot.max_replicas is not None else self.max_replicas,
                limited_by=snapshot.limited_by,
            )
        )
        changes = condition_changes(self._conditions, conditions)
        self._conditions = conditions
        return [(CONDITION_EVENT, text) for _, text in changes]

    # -- pods.csv ---------------------------------------------------------------------

    def _note_pods(self, pods: tuple[PodTimes, ...]) -> None:
        changed = False
        for pod in pods:
            seen = self._pods.setdefault(pod.name, dict.fromkeys(POD_COLUMNS[1:]))
            for column, value in (
                ("created_s", pod.created_at),
                ("started_s", pod.started_at),
                ("ready_s", pod.ready_at),
                ("deleting_s", pod.deleting_at),
            ):
                if seen[column] is None and value is not None:  # the first time seen is kept
                    seen[column] = self._since_t0(value)
                    changed = True
        if changed and self._dir is not None:
            self._write_pods(self._dir / PODS_FILE)

    def _write_pods(self, path: Path) -> None:
        rows = sorted(self._pods.items(), key=lambda item: (item[1]["created_s"] is None, item[1]["created_s"] or 0))
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(POD_COLUMNS)
            for name, times in rows:
                writer.writerow([name, *(format_cell(times[c]) for c in POD_COLUMNS[1:])])
        os.replace(tmp, path)

    # -- the HPA as applied and at the start ------------------------------------------

    def write_hpa_files(self, backend: Backend, applied: Mapping[str, Any] | None) -> list[str]:
        """hpa-applied.yaml (when the run applied a manifest) and hpa-live-start.yaml; returns what
        could not be recorded (said in events.csv by the caller)."""
        assert self._dir is not None
        problems: list[str] = []
        if applied is not None:
            _write_yaml(self._dir / HPA_APPLIED_FILE, applied)
        try:
            live = backend.hpa_object()
        except HpaExpError as exc:
            return [*problems, f"{HPA_LIVE_FILE} not written: {exc}"]
        if live is None:
            problems.append(f"{HPA_LIVE_FILE} not written: no HPA found at the start of the run")
        else:
            live = dict(live)
            live["metadata"] = {k: v for k, v in (live.get("metadata") or {}).items() if k != "managedFields"}
            _write_yaml(self._dir / HPA_LIVE_FILE, live)
        return problems


def _write_yaml(path: Path, data: Mapping[str, Any]) -> None:
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=False), encoding="utf-8")
