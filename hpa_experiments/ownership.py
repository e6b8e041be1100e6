"""What marks a cluster object as a run's, and the rules that keep a run to its own objects.

Every object a run creates (load Jobs and their pods, the HPA, the KEDA ScaledObject) carries
`run_labels` and `run_annotations`, so `hpa-exp cleanup` finds all of them by label after a
SIGKILL.  An object that existed before the run is never changed for good: the run refuses it
(the diff is shown), uses it as is when it already equals the manifest, or, when asked to
(`--take-over`), replaces its spec and keeps the original in `ORIGINAL_ANNOTATION`, from which
the run (or `hpa-exp cleanup`) restores it.  Pure functions over objects as JSON.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Mapping
from typing import Any

import yaml

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "hpa-exp"
RUN_LABEL = "hpa-exp/run"
JOB_LABEL = "hpa-exp/job"
RUN_ID_ANNOTATION = "hpa-exp/run-id"
# JSON {"labels", "annotations", "spec"} of an object as it was before a run took it over
ORIGINAL_ANNOTATION = "hpa-exp/original"
OWN_LABELS = (MANAGED_BY_LABEL, RUN_LABEL, JOB_LABEL)


def run_labels(run_id: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY, RUN_LABEL: run_id}


def run_annotations(run_id: str) -> dict[str, str]:
    return {RUN_ID_ANNOTATION: run_id}


def stamp(manifest: Mapping[str, Any], run_id: str, extra_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A copy of `manifest` with the run's labels and annotations added (they win over the manifest's)."""
    doc = copy.deepcopy(dict(manifest))
    meta = doc.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **run_labels(run_id), **(extra_labels or {})}
    meta["annotations"] = {**(meta.get("annotations") or {}), **run_annotations(run_id)}
    return doc


def owner_run(obj: Mapping[str, Any]) -> str | None:
    """The id of the run that created or took over `obj`, if one did."""
    meta = obj.get("metadata") or {}
    return (meta.get("annotations") or {}).get(RUN_ID_ANNOTATION) or (meta.get("labels") or {}).get(RUN_LABEL)


def original_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What a take-over must restore: the record an earlier take-over left, else `obj` as it is."""
    meta = obj.get("metadata") or {}
    recorded = (meta.get("annotations") or {}).get(ORIGINAL_ANNOTATION)
    if recorded:
        try:
            parsed = json.loads(recorded)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "spec" in parsed:
            return parsed
    return {
        "labels": dict(meta.get("labels") or {}),
        "annotations": dict(meta.get("annotations") or {}),
        "spec": copy.deepcopy(obj.get("spec")),
    }


def taken_over(live: Mapping[str, Any], manifest: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """`live` with the manifest's spec and the run's marks, its original kept in an annotation (a PUT body)."""
    original = original_of(live)
    body = copy.deepcopy(dict(live))
    body["spec"] = copy.deepcopy(manifest.get("spec"))
    meta = body.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **run_labels(run_id)}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        **run_annotations(run_id),
        ORIGINAL_ANNOTATION: json.dumps(original, sort_keys=True, separators=(",", ":")),
    }
    body.pop("status", None)
    return body


def restored(live: Mapping[str, Any]) -> dict[str, Any] | None:
    """`live` put back as it was before the take-over (a PUT body); None when it was not taken over."""
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if ORIGINAL_ANNOTATION not in annotations:
        return None
    original = original_of(live)
    body = copy.deepcopy(dict(live))
    body["spec"] = original.get("spec")
    meta = body.setdefault("metadata", {})
    for key in ("labels", "annotations"):  # an object without labels gets none back, not {}
        if original.get(key):
            meta[key] = original[key]
        else:
            meta.pop(key, None)
    body.pop("status", None)
    return body


def spec_diff(live_spec: Any, wanted_spec: Any, what: str) -> str:
    """A unified diff, as YAML, from the live spec to the one the manifest asks for ("" when equal)."""

    def lines(spec: Any) -> list[str]:
        return yaml.safe_dump(spec, sort_keys=True, default_flow_style=False).splitlines()

    return "\n".join(
        difflib.unified_diff(lines(live_spec), lines(wanted_spec), f"{what} (live spec)", "manifest", lineterm="")
    )


# --- what a Job template may say --------------------------------------------------------------

_REFUSED_JOB_KEYS = {
    ("metadata", "ownerReferences"): "ties the Job to another object's life (its deletion would take the Job)",
    ("metadata", "finalizers"): "would keep the Job from being deleted by the run and by hpa-exp cleanup",
    ("spec", "selector"): "would let the Job take pods that are not its own",
    ("spec", "manualSelector"): "would let the Job take pods that are not its own",
    ("spec", "ttlSecondsAfterFinished"): "would delete the Job (and its logs) before the run has read them; "
    "the run deletes its Jobs itself",
}


def job_template_problems(doc: Mapping[str, Any], namespace: str) -> list[str]:
    """Why a rendered Job template may not be applied as written, each with its key path.

    The run sets metadata.name, the namespace and its labels on the Job and its pod template; a
    template must not set those labels itself, nor anything that reaches outside the run: another
    namespace for its pods, owners, finalizers, a selector of its own, a TTL."""
    problems = []
    for (section, key), why in _REFUSED_JOB_KEYS.items():
        if key in (doc.get(section) or {}):
            problems.append(f"{section}.{key}: {why}; remove it")
    pod_meta = ((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}
    for where, meta in (("metadata", doc.get("metadata") or {}), ("spec.template.metadata", pod_meta)):
        for label in OWN_LABELS:
            if label in (meta.get("labels") or {}):
                problems.append(f"{where}.labels.{label}: set by hpa-exp for every run; remove it from the template")
        if RUN_ID_ANNOTATION in (meta.get("annotations") or {}):
            problems.append(f"{where}.annotations.{RUN_ID_ANNOTATION}: set by hpa-exp; remove it from the template")
    pod_namespace = pod_meta.get("namespace")
    if pod_namespace not in (None, namespace):
        problems.append(
            f"spec.template.metadata.namespace: {pod_namespace!r} is not the run's namespace {namespace!r}; remove it"
        )
    return problems
