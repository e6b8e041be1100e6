"""The autoscaling/v2 HorizontalPodAutoscaler manifest as the controller reads it: validation and parsing.

Validation follows pkg/apis/autoscaling/validation/validation.go (sim-model.md §1.2 "Target types
allowed", §1.5 limits) for the fields the twin uses; every problem names its field path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from hpa_experiments.quantity import parse_quantity_decimal, to_milli

SELECT_POLICIES = ("Max", "Min", "Disabled")
POLICY_TYPES = ("Pods", "Percent")

DEFAULT_DOWNSCALE_STABILIZATION = 300.0
SOURCE_KEYS = {
    "Pods": "pods",
    "Object": "object",
    "External": "external",
    "Resource": "resource",
    "ContainerResource": "containerResource",
}
RESOURCE_SOURCE_TYPES = ("Resource", "ContainerResource")
TARGET_TYPES = ("Utilization", "Value", "AverageValue")
MAX_POLICY_PERIOD_SECONDS = 1800
MAX_STABILIZATION_WINDOW_SECONDS = 3600
# SetDefaults_HorizontalPodAutoscaler: an HPA without metrics gets a CPU utilization target of 80 %.
DEFAULT_METRICS = (
    {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    },
)


@dataclass(frozen=True)
class MetricSpec:
    """One entry of spec.metrics, reduced to what the replica calculation needs."""

    index: int
    source_type: str  # "Pods" | "Object" | "External" | "Resource" | "ContainerResource"
    name: str  # metric name (the resource name for Resource metrics)
    target_type: str  # the target the controller uses: "AverageValue" | "Value" | "Utilization" | ""
    target_milli: int | None  # target in milli-units (Quantity.MilliValue, rounded up; percent for Utilization)
    described_object: dict[str, Any] | None = None  # Object metrics
    selector: dict[str, Any] | None = None  # metric.selector (label selector) if set


@dataclass(frozen=True)
class HpaSpec:
    name: str
    namespace: str
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: dict[str, Any] | None


def scale_down_stabilization_seconds(
    manifest: Mapping[str, Any], default: float = DEFAULT_DOWNSCALE_STABILIZATION
) -> float:
    """behavior.scaleDown.stabilizationWindowSeconds if set, else the controller default (300 s).

    Without `behavior` the legacy path applies the same controller default window. Tolerates
    unvalidated manifests: anything malformed yields the default.
    """
    spec = manifest.get("spec") if isinstance(manifest, Mapping) else None
    behavior = spec.get("behavior") if isinstance(spec, Mapping) else None
    scale_down = behavior.get("scaleDown") if isinstance(behavior, Mapping) else None
    window = scale_down.get("stabilizationWindowSeconds") if isinstance(scale_down, Mapping) else None
    if isinstance(window, bool) or not isinstance(window, (int, float)):
        return default
    return float(window)


def _positive_quantity_problem(value: Any, path: str) -> str | None:
    try:
        parsed = parse_quantity_decimal(value)
    except ValueError as error:
        return f"{path}: {error}"
    return None if parsed > 0 else f"{path} must be positive, got {value!r}"


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _metric_problems(metric: Any, path: str) -> list[str]:
    if not isinstance(metric, Mapping):
        return [f"{path} must be a mapping"]
    source_type = metric.get("type")
    if source_type not in SOURCE_KEYS:
        return [f"{path}.type must be one of {', '.join(SOURCE_KEYS)}, got {source_type!r}"]
    key = SOURCE_KEYS[source_type]
    source = metric.get(key)
    if not isinstance(source, Mapping):
        return [f"{path}.{key} is required for a {source_type} metric"]
    path = f"{path}.{key}"
    problems: list[str] = []
    if source_type in RESOURCE_SOURCE_TYPES:
        name_field, name = "name", source.get("name")
    else:
        identifier = source.get("metric")
        name_field, name = "metric.name", identifier.get("name") if isinstance(identifier, Mapping) else None
    if not name:
        problems.append(f"{path}.{name_field} is required")
    target = source.get("target")
    if not isinstance(target, Mapping):
        return [*problems, f"{path}.target is required"]
    target_type = target.get("type")
    if target_type not in TARGET_TYPES:
        problems.append(f"{path}.target.type must be one of {', '.join(TARGET_TYPES)}, got {target_type!r}")
    quantities = [field for field in ("value", "averageValue") if target.get(field) is not None]
    problems += [p for f in quantities if (p := _positive_quantity_problem(target[f], f"{path}.target.{f}"))]
    if source_type == "Pods":
        if target.get("averageValue") is None:
            problems.append(f"{path}.target.averageValue is required for a Pods metric")
        elif target_type != "AverageValue":
            problems.append(f"{path}.target.type must be AverageValue for a Pods metric, got {target_type!r}")
    if source_type in ("Object", "External") and target_type == "Utilization":
        problems.append(f"{path}.target.type must be Value or AverageValue for an {source_type} metric")
    if source_type == "Object":
        described = source.get("describedObject")
        if not isinstance(described, Mapping) or not described.get("kind") or not described.get("name"):
            problems.append(f"{path}.describedObject.kind and .name are required for an Object metric")
        if target_type == "Value" and target.get("value") is None:
            problems.append(f"{path}.target.value is required when target.type is Value")
        if target_type == "AverageValue" and target.get("averageValue") is None:
            problems.append(f"{path}.target.averageValue is required when target.type is AverageValue")
    elif source_type == "External" and len(quantities) != 1:
        problems.append(f"{path}.target must set exactly one of value and averageValue")
    return problems


def rules_problems(rules: Any, path: str) -> list[str]:
    if rules is None:
        return []
    if not isinstance(rules, Mapping):
        return [f"{path} must be a mapping"]
    problems: list[str] = []
    window = rules.get("stabilizationWindowSeconds")
    if window is not None and not (_is_int(window) and 0 <= window <= MAX_STABILIZATION_WINDOW_SECONDS):
        problems.append(
            f"{path}.stabilizationWindowSeconds must be an integer from 0 to "
            f"{MAX_STABILIZATION_WINDOW_SECONDS}, got {window!r}"
        )
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        problems.append(f"{path}.selectPolicy must be one of {', '.join(SELECT_POLICIES)}, got {select!r}")
    if "tolerance" in rules:
        try:
            if parse_quantity_decimal(rules["tolerance"]) < 0:
                problems.append(f"{path}.tolerance must not be negative, got {rules['tolerance']!r}")
        except ValueError as error:
            problems.append(f"{path}.tolerance: {error}")
    policies = rules.get("policies")
    if policies is None:
        return problems
    if not isinstance(policies, list) or not policies:
        return [*problems, f"{path}.policies must specify at least one policy"]
    for i, policy in enumerate(policies):
        where = f"{path}.policies[{i}]"
        if not isinstance(policy, Mapping):
            problems.append(f"{where} must be a mapping")
            continue
        if policy.get("type") not in POLICY_TYPES:
            problems.append(f"{where}.type must be one of {', '.join(POLICY_TYPES)}, got {policy.get('type')!r}")
        if not (_is_int(policy.get("value")) and policy["value"] > 0):
            problems.append(f"{where}.value must be a positive integer, got {policy.get('value')!r}")
        period = policy.get("periodSeconds")
        if not (_is_int(period) and 0 < period <= MAX_POLICY_PERIOD_SECONDS):
            problems.append(
                f"{where}.periodSeconds must be an integer from 1 to {MAX_POLICY_PERIOD_SECONDS}, got {period!r}"
            )
    return problems


def validate_hpa_manifest(manifest: Any) -> list[str]:
    """Problems that would make the API server reject the HPA, each naming its field path.

    Resource (CPU/memory) metrics are valid here; the twin accepts them but cannot compute them
    (see hpa.py).
    """
    if not isinstance(manifest, Mapping):
        return ["the HPA manifest must be a mapping"]
    problems: list[str] = []
    if manifest.get("apiVersion") != "autoscaling/v2":
        problems.append(f"apiVersion must be autoscaling/v2, got {manifest.get('apiVersion')!r}")
    if manifest.get("kind") != "HorizontalPodAutoscaler":
        problems.append(f"kind must be HorizontalPodAutoscaler, got {manifest.get('kind')!r}")
    if not (manifest.get("metadata") or {}).get("name"):
        problems.append("metadata.name is required")
    spec = manifest.get("spec")
    if not isinstance(spec, Mapping):
        return [*problems, "spec is required"]
    target_ref = spec.get("scaleTargetRef")
    if not isinstance(target_ref, Mapping) or not target_ref.get("kind") or not target_ref.get("name"):
        problems.append("spec.scaleTargetRef.kind and spec.scaleTargetRef.name are required")
    max_replicas = spec.get("maxReplicas")
    min_replicas = spec.get("minReplicas", 1)
    if not (_is_int(max_replicas) and max_replicas >= 1):
        problems.append(f"spec.maxReplicas is required and must be an integer of at least 1, got {max_replicas!r}")
    if not (_is_int(min_replicas) and min_replicas >= 1):
        problems.append(f"spec.minReplicas must be an integer of at least 1, got {min_replicas!r}")
    elif _is_int(max_replicas) and min_replicas > max_replicas:
        problems.append(
            f"spec.minReplicas ({min_replicas}) must be less than or equal to spec.maxReplicas ({max_replicas})"
        )
    metrics = spec.get("metrics")
    if metrics is not None and not isinstance(metrics, list):
        problems.append("spec.metrics must be a list")
    for i, metric in enumerate(metrics if isinstance(metrics, list) else []):
        problems += _metric_problems(metric, f"spec.metrics[{i}]")
    behavior = spec.get("behavior")
    if behavior is not None and not isinstance(behavior, Mapping):
        problems.append("spec.behavior must be a mapping")
    elif behavior is not None:
        for direction in ("scaleUp", "scaleDown"):
            problems += rules_problems(behavior.get(direction), f"spec.behavior.{direction}")
    return problems


def _metric_spec(index: int, metric: Mapping[str, Any]) -> MetricSpec:
    source_type = metric["type"]
    source = metric[SOURCE_KEYS[source_type]]
    target = source["target"]
    if source_type in RESOURCE_SOURCE_TYPES:  # reported only; the twin does not compute them
        target_milli = None
        if target.get("averageUtilization") is not None:
            target_milli = int(target["averageUtilization"]) * 1000
        elif target.get("averageValue") is not None:
            target_milli = to_milli(target["averageValue"])
        return MetricSpec(index, source_type, source["name"], target["type"], target_milli)
    identifier = source["metric"]
    if source_type == "External":  # computeStatusForExternalMetric checks averageValue first
        target_type = "AverageValue" if target.get("averageValue") is not None else "Value"
    else:
        target_type = target["type"]
    quantity = target.get("averageValue" if target_type == "AverageValue" else "value")
    return MetricSpec(
        index=index,
        source_type=source_type,
        name=identifier["name"],
        target_type=target_type,
        target_milli=None if quantity is None else to_milli(quantity),
        described_object=dict(source["describedObject"]) if source_type == "Object" else None,
        selector=identifier.get("selector"),
    )


def parse_hpa_spec(manifest: Mapping[str, Any]) -> HpaSpec:
    """The typed spec of a manifest; raises ValueError listing every problem if it is invalid."""
    problems = validate_hpa_manifest(manifest)
    if problems:
        raise ValueError("invalid HorizontalPodAutoscaler manifest: " + "; ".join(problems))
    spec = manifest["spec"]
    metrics = spec.get("metrics") or list(DEFAULT_METRICS)
    return HpaSpec(
        name=manifest["metadata"]["name"],
        namespace=manifest["metadata"].get("namespace") or "default",
        min_replicas=spec.get("minReplicas", 1),
        max_replicas=spec["maxReplicas"],
        metrics=tuple(_metric_spec(i, metric) for i, metric in enumerate(metrics)),
        behavior=spec.get("behavior"),
    )
