"""KEDA ScaledObjects (keda.sh/v1alpha1) with Prometheus triggers: validation, parsing, and the
HorizontalPodAutoscaler KEDA creates for one.

Only the fields the twin and the runner use are interpreted; the semantics (defaults, what KEDA
does and what its HPA does) are written down in docs/keda.md.  Every problem names its key path
inside the manifest (`spec.triggers[0].metadata.threshold: ...`); config.py prefixes the config
key.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from hpa_experiments.hpa_spec import rules_problems

API_VERSION = "keda.sh/v1alpha1"
KIND = "ScaledObject"
DEFAULT_POLLING_INTERVAL_S = 30
DEFAULT_COOLDOWN_PERIOD_S = 300
DEFAULT_INITIAL_COOLDOWN_PERIOD_S = 0
DEFAULT_MIN_REPLICAS = 0
DEFAULT_MAX_REPLICAS = 100
METRIC_TYPES = ("AverageValue", "Value")
# The label KEDA puts in the External metric's selector of the HPA it creates.
SCALED_OBJECT_LABEL = "scaledobject.keda.sh/name"
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")

SPEC_KEYS = (
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "minReplicaCount",
    "maxReplicaCount",
    "idleReplicaCount",
    "fallback",
    "advanced",
    "triggers",
)
TRIGGER_KEYS = ("type", "name", "metadata", "metricType", "useCachedMetrics", "authenticationRef")
PROMETHEUS_METADATA = (
    "serverAddress",
    "query",
    "threshold",
    "activationThreshold",
    "ignoreNullValues",
    "namespace",
    "customHeaders",
    "queryParameters",
    "unsafeSsl",
    "authModes",
    "timeout",
)
UNSUPPORTED = {
    "advanced.scalingModifiers": "scaling modifiers (formula over triggers) are not modelled by hpa-exp",
    "fallback.behavior": "fallback behaviors other than the default (static) are not modelled by hpa-exp",
}


@dataclass(frozen=True)
class PrometheusTrigger:
    """One `prometheus` trigger; `metric_name` is the External metric KEDA's HPA asks for."""

    index: int
    name: str | None
    query: str
    threshold: float
    activation_threshold: float
    metric_type: str  # AverageValue | Value
    ignore_null_values: bool
    use_cached_metrics: bool

    @property
    def metric_name(self) -> str:
        return f"s{self.index}-prometheus"

    @property
    def label(self) -> str:
        """How the run names this trigger's HPA metric (columns): the trigger name, else s<i>_prometheus."""
        return self.name or f"s{self.index}_prometheus"

    @property
    def threshold_milli(self) -> int:
        """The HPA target: KEDA's `resource.NewMilliQuantity(int64(threshold * 1000))`."""
        return int(self.threshold * 1000)


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int
    replicas: int


@dataclass(frozen=True)
class ScaledObjectSpec:
    name: str
    namespace: str
    target_kind: str
    target_name: str
    target_api_version: str
    polling_interval: int
    cooldown_period: int
    initial_cooldown_period: int
    min_replicas: int
    max_replicas: int
    idle_replicas: int | None
    fallback: Fallback | None
    behavior: dict[str, Any] | None
    hpa_name: str
    triggers: tuple[PrometheusTrigger, ...]

    @property
    def hpa_min_replicas(self) -> int:
        """KEDA's HPA cannot go below 1: minReplicas = minReplicaCount, or 1 when that is 0."""
        return max(self.min_replicas, 1)

    def trigger_for_metric(self, metric_name: str) -> PrometheusTrigger | None:
        return next((t for t in self.triggers if t.metric_name == metric_name), None)


# --- validation ---------------------------------------------------------------------------


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown_keys(section: Mapping[str, Any], known: tuple[str, ...], path: str) -> list[str]:
    problems = []
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{path}.{key}: unknown key{hint}")
    return problems


def _int_problem(spec: Mapping[str, Any], key: str, minimum: int) -> str | None:
    value = spec.get(key)
    if value is None or (_is_int(value) and value >= minimum):
        return None
    return f"spec.{key}: must be an integer >= {minimum} (got {value!r})"


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _metadata_problems(metadata: Any, path: str) -> list[str]:
    if not isinstance(metadata, Mapping):
        return [f"{path}: is required (serverAddress, query, threshold)"]
    problems = []
    for key, value in metadata.items():
        if not isinstance(value, str):
            problems.append(
                f"{path}.{key}: must be a string (KEDA's metadata is a map of strings): write '{value}' in quotes"
            )
        if key not in PROMETHEUS_METADATA:
            close = difflib.get_close_matches(str(key), PROMETHEUS_METADATA, n=1, cutoff=0.75)
            if close:
                problems.append(f"{path}.{key}: unknown key; did you mean '{close[0]}'?")
    for key in ("serverAddress", "query", "threshold"):
        if not metadata.get(key):
            problems.append(f"{path}.{key}: is required")
    query = metadata.get("query")
    if isinstance(query, str) and query:
        problems += [f"{path}.query: {p}" for p in promql_syntax_problems(query)]
    threshold = metadata.get("threshold")
    if isinstance(threshold, str) and threshold:
        value = _float(threshold)
        if value is None or value * 1000 < 1:
            problems.append(f"{path}.threshold: must be a number >= 0.001 (got {threshold!r})")
    activation = metadata.get("activationThreshold")
    if isinstance(activation, str) and _float(activation) is None:
        problems.append(f"{path}.activationThreshold: must be a number (got {activation!r})")
    ignore = metadata.get("ignoreNullValues")
    if isinstance(ignore, str) and ignore.lower() not in ("true", "false"):
        problems.append(f"{path}.ignoreNullValues: must be 'true' or 'false' (got {ignore!r})")
    return problems


def promql_syntax_problems(query: str) -> list[str]:
    """Empty when `query` parses as PromQL (the parser the twin's engine uses)."""
    import promql_parser

    try:
        promql_parser.parse(query)
    except Exception as exc:  # the parser raises ValueError/RuntimeError subclasses
        return [f"not valid PromQL: {exc}"]
    return []


def _trigger_problems(trigger: Any, path: str) -> list[str]:
    if not isinstance(trigger, Mapping):
        return [f"{path}: must be a mapping (type, metadata, ...)"]
    problems = _unknown_keys(trigger, TRIGGER_KEYS, path)
    if trigger.get("type") != "prometheus":
        problems.append(f"{path}.type: only 'prometheus' triggers are supported (got {trigger.get('type')!r})")
    metric_type = trigger.get("metricType", "AverageValue")
    if metric_type not in METRIC_TYPES:
        problems.append(f"{path}.metricType: must be AverageValue or Value (got {metric_type!r})")
    name = trigger.get("name")
    if name is not None and not (isinstance(name, str) and re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", name)):
        problems.append(f"{path}.name: must be letters, digits and '_' (it names a metrics.csv column; got {name!r})")
    cached = trigger.get("useCachedMetrics")
    if cached is not None and not isinstance(cached, bool):
        problems.append(f"{path}.useCachedMetrics: must be true or false (got {cached!r})")
    return problems + _metadata_problems(trigger.get("metadata"), f"{path}.metadata")


def _fallback_problems(fallback: Any, triggers: list[Any]) -> list[str]:
    if fallback is None:
        return []
    if not isinstance(fallback, Mapping):
        return ["spec.fallback: must be a mapping (failureThreshold, replicas)"]
    problems = _unknown_keys(fallback, ("failureThreshold", "replicas", "behavior"), "spec.fallback")
    if "behavior" in fallback:
        problems.append(f"spec.fallback.behavior: {UNSUPPORTED['fallback.behavior']}")
    for key in ("failureThreshold", "replicas"):
        value = fallback.get(key)
        if not (_is_int(value) and value >= 0):
            problems.append(f"spec.fallback.{key}: is required, an integer >= 0 (got {value!r})")
    for i, trigger in enumerate(triggers):
        if isinstance(trigger, Mapping) and trigger.get("metricType", "AverageValue") != "AverageValue":
            problems.append(
                f"spec.triggers[{i}].metricType: fallback works only with AverageValue triggers "
                f"(got {trigger.get('metricType')!r})"
            )
    return problems


def _advanced_problems(advanced: Any) -> list[str]:
    if advanced is None:
        return []
    if not isinstance(advanced, Mapping):
        return ["spec.advanced: must be a mapping"]
    known = ("horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount", "scalingModifiers")
    problems = _unknown_keys(advanced, known, "spec.advanced")
    if "scalingModifiers" in advanced:
        problems.append(f"spec.advanced.scalingModifiers: {UNSUPPORTED['advanced.scalingModifiers']}")
    config = advanced.get("horizontalPodAutoscalerConfig")
    if config is None:
        return problems
    path = "spec.advanced.horizontalPodAutoscalerConfig"
    if not isinstance(config, Mapping):
        return [*problems, f"{path}: must be a mapping (name, behavior)"]
    problems += _unknown_keys(config, ("name", "behavior"), path)
    name = config.get("name")
    if name is not None and not (isinstance(name, str) and _K8S_NAME.match(name)):
        problems.append(f"{path}.name: must be a Kubernetes name (got {name!r})")
    behavior = config.get("behavior")
    if behavior is not None and not isinstance(behavior, Mapping):
        problems.append(f"{path}.behavior: must be a mapping (scaleUp, scaleDown)")
    elif behavior is not None:
        problems += _unknown_keys(behavior, ("scaleUp", "scaleDown"), f"{path}.behavior")
        for direction in ("scaleUp", "scaleDown"):
            problems += rules_problems(behavior.get(direction), f"{path}.behavior.{direction}")
    return problems


def scaled_object_problems(doc: Any, deployment: str | None = None) -> list[str]:
    """What makes `doc` unusable as the experiment's ScaledObject (empty when fine)."""
    if not isinstance(doc, Mapping):
        return ["must be a ScaledObject mapping"]
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        return [f"must be a {API_VERSION} {KIND} (found {doc.get('apiVersion') or '?'} {doc.get('kind') or '?'})"]
    problems = []
    name = (doc.get("metadata") or {}).get("name")
    if not (isinstance(name, str) and _K8S_NAME.match(name)):
        problems.append(f"metadata.name: is required, a Kubernetes name (got {name!r})")
    spec = doc.get("spec")
    if not isinstance(spec, Mapping):
        return [*problems, "spec: is required"]
    problems += _unknown_keys(spec, SPEC_KEYS, "spec")
    target = spec.get("scaleTargetRef") or {}
    kind = target.get("kind", "Deployment")
    if not target.get("name"):
        problems.append("spec.scaleTargetRef.name: is required")
    elif deployment is not None and (kind != "Deployment" or target.get("name") != deployment):
        problems.append(
            f"spec.scaleTargetRef: must be the Deployment '{deployment}' (found {kind} '{target.get('name')}')"
        )
    problems += [
        p
        for p in (
            _int_problem(spec, "pollingInterval", 1),
            _int_problem(spec, "cooldownPeriod", 0),
            _int_problem(spec, "initialCooldownPeriod", 0),
            _int_problem(spec, "minReplicaCount", 0),
            _int_problem(spec, "maxReplicaCount", 1),
            _int_problem(spec, "idleReplicaCount", 0),
        )
        if p
    ]
    lo, hi = spec.get("minReplicaCount", DEFAULT_MIN_REPLICAS), spec.get("maxReplicaCount", DEFAULT_MAX_REPLICAS)
    if _is_int(lo) and _is_int(hi) and lo > hi:
        problems.append(f"spec.minReplicaCount: {lo} must not be greater than maxReplicaCount ({hi})")
    idle = spec.get("idleReplicaCount")
    if _is_int(idle):
        if idle != 0:
            problems.append(f"spec.idleReplicaCount: KEDA supports only 0 (got {idle})")
        elif _is_int(lo) and idle >= lo:
            problems.append(f"spec.idleReplicaCount: must be less than minReplicaCount ({lo})")
    triggers = spec.get("triggers")
    if not isinstance(triggers, list) or not triggers:
        problems.append("spec.triggers: must be a non-empty list")
        triggers = []
    for i, trigger in enumerate(triggers):
        problems += _trigger_problems(trigger, f"spec.triggers[{i}]")
    labels = [t.get("name") or f"s{i}_prometheus" for i, t in enumerate(triggers) if isinstance(t, Mapping)]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        problems.append(f"spec.triggers: trigger names must be unique (repeated: {', '.join(map(str, duplicates))})")
    return problems + _fallback_problems(spec.get("fallback"), triggers) + _advanced_problems(spec.get("advanced"))


# --- parsing ------------------------------------------------------------------------------


def _trigger(index: int, trigger: Mapping[str, Any]) -> PrometheusTrigger:
    metadata = trigger["metadata"]
    return PrometheusTrigger(
        index=index,
        name=trigger.get("name"),
        query=metadata["query"],
        threshold=float(metadata["threshold"]),
        activation_threshold=float(metadata.get("activationThreshold", "0")),
        metric_type=trigger.get("metricType", "AverageValue"),
        ignore_null_values=metadata.get("ignoreNullValues", "true").lower() == "true",
        use_cached_metrics=bool(trigger.get("useCachedMetrics", False)),
    )


def parse_scaled_object(doc: Mapping[str, Any]) -> ScaledObjectSpec:
    """The typed spec of a ScaledObject; raises ValueError listing every problem if it is invalid."""
    problems = scaled_object_problems(doc)
    if problems:
        raise ValueError("invalid ScaledObject: " + "; ".join(problems))
    metadata, spec = doc["metadata"], doc["spec"]
    target = spec["scaleTargetRef"]
    fallback = spec.get("fallback")
    hpa_config = (spec.get("advanced") or {}).get("horizontalPodAutoscalerConfig") or {}
    return ScaledObjectSpec(
        name=metadata["name"],
        namespace=metadata.get("namespace") or "default",
        target_kind=target.get("kind", "Deployment"),
        target_name=target["name"],
        target_api_version=target.get("apiVersion", "apps/v1"),
        polling_interval=spec.get("pollingInterval", DEFAULT_POLLING_INTERVAL_S),
        cooldown_period=spec.get("cooldownPeriod", DEFAULT_COOLDOWN_PERIOD_S),
        initial_cooldown_period=spec.get("initialCooldownPeriod", DEFAULT_INITIAL_COOLDOWN_PERIOD_S),
        min_replicas=spec.get("minReplicaCount", DEFAULT_MIN_REPLICAS),
        max_replicas=spec.get("maxReplicaCount", DEFAULT_MAX_REPLICAS),
        idle_replicas=spec.get("idleReplicaCount"),
        fallback=None if fallback is None else Fallback(fallback["failureThreshold"], fallback["replicas"]),
        behavior=hpa_config.get("behavior"),
        hpa_name=hpa_config.get("name") or f"keda-hpa-{metadata['name']}",
        triggers=tuple(_trigger(i, t) for i, t in enumerate(spec["triggers"])),
    )


def keda_hpa_manifest(so: ScaledObjectSpec) -> dict[str, Any]:
    """The autoscaling/v2 HPA KEDA creates for `so`: one External metric per trigger, named
    s<i>-prometheus and selected by the ScaledObject's name, target = threshold as a milli quantity."""
    metrics = []
    for trigger in so.triggers:
        target_key = "averageValue" if trigger.metric_type == "AverageValue" else "value"
        metrics.append(
            {
                "type": "External",
                "external": {
                    "metric": {
                        "name": trigger.metric_name,
                        "selector": {"matchLabels": {SCALED_OBJECT_LABEL: so.name}},
                    },
                    "target": {"type": trigger.metric_type, target_key: f"{trigger.threshold_milli}m"},
                },
            }
        )
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": so.target_api_version, "kind": so.target_kind, "name": so.target_name},
        "minReplicas": so.hpa_min_replicas,
        "maxReplicas": so.max_replicas,
        "metrics": metrics,
    }
    if so.behavior:
        spec["behavior"] = so.behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": so.hpa_name,
            "namespace": so.namespace,
            "labels": {SCALED_OBJECT_LABEL: so.name, "app.kubernetes.io/managed-by": "keda-operator"},
        },
        "spec": spec,
    }
