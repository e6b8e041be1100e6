"""Preflight: every autoscaler that acts on the Deployment, and whether the HPA under test can act.

Two HPAs on one Deployment make the HPA controller disable both (ScalingActive=False,
reason AmbiguousSelector): nothing scales, yet a run would "complete".  A KEDA ScaledObject
acts through an HPA it creates (`keda-hpa-<name>`, owned by the ScaledObject), so that HPA
is counted as its ScaledObject, not twice.  Pure functions over the objects as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KEDA_GROUP_VERSION = "keda.sh/v1alpha1"

# HPA condition reasons -> what to do about them (the controller's reasons, pkg/controller/podautoscaler)
CONDITION_FIXES = {
    "AmbiguousSelector": "delete the other HPAs of the Deployment (kubectl get hpa shows them)",
    "FailedGetPodsMetric": "the custom metrics API does not serve the metric for the Deployment's pods: "
    "check the adapter rules (manifests/monitoring/adapter-rules.yaml) and that Prometheus has the series",
    "FailedGetObjectMetric": "the custom metrics API does not serve the object metric: check the adapter rules",
    "FailedGetExternalMetric": "the external metrics API does not serve the metric: check its adapter (or KEDA)",
    "FailedGetResourceMetric": "the resource metrics API (metrics-server) has no CPU/memory for the pods",
    "FailedGetContainerResourceMetric": "the resource metrics API (metrics-server) has no container metrics",
    "InvalidSelector": "the Deployment's label selector cannot be used: check spec.selector",
    "ScalingDisabled": "the Deployment has 0 replicas, which turns the HPA off: scale it to at least 1",
    "FailedGetScale": "the HPA controller cannot read the Deployment's scale: check spec.scaleTargetRef",
    "FailedUpdateScale": "the HPA controller cannot update the Deployment's scale: check its events",
}
BLOCKING_CONDITIONS = ("AbleToScale", "ScalingActive")


@dataclass(frozen=True)
class Autoscaler:
    """One object that changes the Deployment's replica count."""

    kind: str  # "HPA" | "ScaledObject"
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def targets(ref: Mapping[str, Any] | None, deployment: str) -> bool:
    """Whether a scaleTargetRef names the Deployment (a ScaledObject's kind defaults to Deployment)."""
    ref = ref or {}
    api = str(ref.get("apiVersion", "apps/v1"))
    return ref.get("name") == deployment and ref.get("kind", "Deployment") == "Deployment" and api.startswith("apps/")


def _owned_by_scaled_object(obj: Mapping[str, Any]) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("kind") == "ScaledObject" for o in owners)


def acting_on(
    hpas: Iterable[Mapping[str, Any]], scaled_objects: Iterable[Mapping[str, Any]], deployment: str
) -> list[Autoscaler]:
    """The HPAs and ScaledObjects whose target is the Deployment (a KEDA-made HPA counts as its ScaledObject)."""
    found = [
        Autoscaler("HPA", h["metadata"]["name"])
        for h in hpas
        if targets((h.get("spec") or {}).get("scaleTargetRef"), deployment) and not _owned_by_scaled_object(h)
    ]
    found += [
        Autoscaler("ScaledObject", s["metadata"]["name"])
        for s in scaled_objects
        if targets((s.get("spec") or {}).get("scaleTargetRef"), deployment)
    ]
    return found


def competing_problems(
    acting: list[Autoscaler], namespace: str, deployment: str, under_test: str | None
) -> tuple[list[str], list[str]]:
    """(problems, warnings) about autoscalers other than the run's HPA `under_test` (None: no HPA).
    The run's own HPA existing already is claim.preflight_findings' business."""
    problems: list[str] = []
    warnings: list[str] = []
    others = [a for a in acting if not (a.kind == "HPA" and a.name == under_test)]
    if under_test is None:
        warnings += [
            f"{a} in {namespace} scales Deployment/{deployment} though the config has no HPA (hpa.enabled: false): "
            "replicas may change during the run"
            for a in others
        ]
        return problems, warnings
    for other in others:
        delete = f"kubectl -n {namespace} delete {'hpa' if other.kind == 'HPA' else 'scaledobject'} {other.name}"
        kit = other.name.startswith("vllm-hpa-")
        cluster_up = " (`hpa-exp cluster up --hpa ...` applies such an HPA)" if kit else ""
        problems.append(
            f"{other} also scales Deployment {namespace}/{deployment}, besides the run's HPA {under_test}: with two "
            "autoscalers on one Deployment Kubernetes disables both (AmbiguousSelector) and nothing scales. "
            f"Fix: {delete}{cluster_up}, or make it the run's HPA (hpa.name: {other.name}, hpa.apply: false)"
        )
    return problems, warnings


def condition_problems(hpa: Mapping[str, Any], namespace: str) -> list[str]:
    """AbleToScale / ScalingActive conditions that say the HPA cannot act, each with its fix."""
    name = (hpa.get("metadata") or {}).get("name", "?")
    problems = []
    for condition in (hpa.get("status") or {}).get("conditions") or []:
        if condition.get("type") in BLOCKING_CONDITIONS and condition.get("status") == "False":
            reason = condition.get("reason") or "?"
            fix = CONDITION_FIXES.get(reason, f"see kubectl -n {namespace} describe hpa {name}")
            problems.append(
                f"HPA {namespace}/{name} cannot act: {condition['type']}=False ({reason}): "
                f"{condition.get('message', '')}. Fix: {fix}"
            )
    return problems
