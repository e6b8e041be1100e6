"""What the kit's cluster has: nodes, model-server pods, Prometheus and the adapter, the custom
metrics API and the HPAs with their current metric values (`cluster status`)."""

from __future__ import annotations

import json
import shutil
from typing import Any

from hpa_experiments.kind_kit.execution import Console, kind_clusters, run_step
from hpa_experiments.kind_kit.steps import (
    CUSTOM_METRICS_API,
    MODEL_SERVER_SELECTOR,
    MONITORING_NAMESPACE,
    NAMESPACE,
    ClusterKitError,
    Step,
    require_tools,
)


def hpa_metric_problems(hpa: dict[str, Any]) -> list[str]:
    """Why an HPA does not (yet) see its metrics; empty when every metric has a value.

    `kubectl get hpa` prints <unknown> for a metric without a current value; the
    ScalingActive condition carries the reason (e.g. FailedGetPodsMetric).
    """
    wanted = [_metric_name(m) for m in hpa.get("spec", {}).get("metrics", [])]
    current = {_metric_name(m): m for m in hpa.get("status", {}).get("currentMetrics") or []}
    problems = [f"{name}: no current value (kubectl shows <unknown>)" for name in wanted if name not in current]
    if problems:
        for condition in hpa.get("status", {}).get("conditions") or []:
            if condition.get("status") == "False":
                problems.append(f"{condition['type']}: {condition.get('reason')}: {condition.get('message', '')}")
    return problems


def _metric_source(metric: dict[str, Any]) -> dict[str, Any]:
    """The type-specific part of an HPA metric: type Pods -> metric["pods"], ContainerResource ->
    metric["containerResource"]."""
    kind = metric.get("type", "")
    return metric.get(kind[:1].lower() + kind[1:]) or {}


def _metric_name(metric: dict[str, Any]) -> str:
    source = _metric_source(metric)
    if "metric" in source:
        return source["metric"]["name"]
    return source.get("name", metric.get("type", "?"))  # Resource / ContainerResource: cpu, memory


def describe_current_metrics(hpa: dict[str, Any]) -> list[str]:
    lines = []
    for metric in hpa.get("status", {}).get("currentMetrics") or []:
        current = _metric_source(metric).get("current") or {}
        value = current.get("averageValue") or current.get("value")
        if value is None and "averageUtilization" in current:
            value = f"{current['averageUtilization']}%"
        lines.append(f"{_metric_name(metric)} = {value}")
    return lines


def kubectl_json(context: str, *args: str) -> dict[str, Any]:
    step = Step(f"kubectl {' '.join(args)}", ("kubectl", "--context", context, *args, "-o", "json"), timeout_s=30)
    result = run_step(step, capture=True)
    if result.returncode != 0:
        raise ClusterKitError(f"{step.command()} failed: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _ready(conditions: list[dict[str, Any]] | None, kind: str = "Ready") -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions or [])


def node_lines(nodes: dict[str, Any]) -> list[str]:
    return [
        f"  {n['metadata']['name']}: {'Ready' if _ready(n['status'].get('conditions')) else 'NotReady'}, "
        f"{n['status'].get('nodeInfo', {}).get('kubeletVersion', '?')}"
        for n in nodes.get("items", [])
    ]


def pod_lines(pods: dict[str, Any]) -> list[str]:
    lines = []
    for pod in pods.get("items", []):
        status = pod.get("status", {})
        restarts = sum(c.get("restartCount", 0) for c in status.get("containerStatuses") or [])
        variant = pod["metadata"].get("labels", {}).get("hpa-exp/model-server", "?")
        ready = "ready" if _ready(status.get("conditions")) else "not ready"
        lines.append(
            f"  {pod['metadata']['name']} ({variant}): {status.get('phase', '?')}, {ready}, {restarts} restarts"
        )
    return lines or ["  none (apply manifests/model-server/ or run `hpa-exp cluster up`)"]


def deployment_line(deployments: dict[str, Any], name: str) -> str:
    for item in deployments.get("items", []):
        if item["metadata"]["name"] == name:
            status = item.get("status", {})
            return f"  {name}: {status.get('readyReplicas', 0)}/{item['spec'].get('replicas', 1)} ready"
    return f"  {name}: not installed"


def hpa_lines(hpas: dict[str, Any]) -> list[str]:
    lines = []
    for hpa in hpas.get("items", []):
        status = hpa.get("status", {})
        metrics = ", ".join(describe_current_metrics(hpa)) or "no metric values (<unknown>)"
        lines.append(
            f"  {hpa['metadata']['name']}: {status.get('currentReplicas', '?')} replicas "
            f"(desired {status.get('desiredReplicas', '?')}); {metrics}"
        )
        lines.extend(f"    ! {problem}" for problem in hpa_metric_problems(hpa))
    return lines or ["  none (experiments apply their HPA, or see manifests/hpa-vllm-*.yaml)"]


def status(name: str, context: str | None = None, console: Console | None = None) -> None:
    """Context, nodes, model-server pods, Prometheus/adapter readiness and HPAs."""
    console = console or Console()
    require_tools(["kubectl"])
    if context is None:
        context = f"kind-{name}"
        if shutil.which("kind") and name not in (clusters := kind_clusters()):
            existing = ", ".join(clusters) or "none"
            raise ClusterKitError(
                f"no kind cluster named {name} (existing kind clusters: {existing}).\n"
                f"Create it with `hpa-exp cluster up --name {name}`, or pass --context for another cluster."
            )
    contexts = run_step(Step("contexts", ("kubectl", "config", "get-contexts", "-o", "name")), capture=True)
    if context not in contexts.stdout.split():
        raise ClusterKitError(
            f"kubectl has no context {context}.\n"
            f"Create the cluster with `hpa-exp cluster up --name {name}`, or pass --context NAME "
            "(see `kubectl config get-contexts`)."
        )
    nodes = kubectl_json(context, "get", "nodes")
    console.write(f"context: {context}")
    console.write("nodes:")
    for line in node_lines(nodes):
        console.write(line)
    console.write(f"model server pods ({NAMESPACE}):")
    for line in pod_lines(kubectl_json(context, "-n", NAMESPACE, "get", "pods", "-l", MODEL_SERVER_SELECTOR)):
        console.write(line)
    console.write(f"monitoring ({MONITORING_NAMESPACE}):")
    deployments = kubectl_json(context, "-n", MONITORING_NAMESPACE, "get", "deployments")
    for name_ in ("prometheus", "prometheus-adapter"):
        console.write(deployment_line(deployments, name_))
    try:
        api = kubectl_json(context, "get", CUSTOM_METRICS_API)
        available = "available" if _ready(api.get("status", {}).get("conditions"), "Available") else "NOT available"
    except ClusterKitError:
        available = "not registered"
    console.write(f"  custom metrics API: {available}")
    console.write(f"HPAs ({NAMESPACE}):")
    for line in hpa_lines(kubectl_json(context, "-n", NAMESPACE, "get", "hpa")):
        console.write(line)
