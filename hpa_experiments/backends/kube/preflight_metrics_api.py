"""Preflight: are the HPA's metrics served?  Asked the way the HPA controller asks.

The controller finds the custom metrics API's version by discovery (`/apis/custom.metrics.k8s.io`,
preferred version) and asks for a Pods metric of the scale target's pods with
`GET .../namespaces/<ns>/pods/*/<metric>?labelSelector=<the Deployment's selector>`; an
External metric with `GET /apis/external.metrics.k8s.io/v1beta1/namespaces/<ns>/<metric>`.
A metric the API does not serve (404), or serves with no value for those pods, leaves the HPA
at ScalingActive=False and nothing scales; so each is a problem naming what the API does serve.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

# (status, JSON body) of a GET of an API path; 403/404/503 are answers, other failures raise
Get = Callable[[str, list[tuple[str, str]]], tuple[int, dict[str, Any]]]

CUSTOM = "custom.metrics.k8s.io"
EXTERNAL = "external.metrics.k8s.io"
RESOURCE = "metrics.k8s.io"
ADAPTER_FIX = (
    "add a rule for it to the adapter (manifests/monitoring/adapter-rules.yaml, also embedded in "
    "prometheus-adapter.yaml) or change the HPA's metric name"
)
# describedObject kinds an Object metric commonly names -> resource (plural) in the API path
_PLURALS = {
    "Service": "services",
    "Deployment": "deployments",
    "Pod": "pods",
    "Ingress": "ingresses",
    "StatefulSet": "statefulsets",
    "Namespace": "namespaces",
}


def label_selector(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector object (matchLabels, matchExpressions) as the query-string syntax."""
    selector = selector or {}
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op in ("In", "NotIn"):
            terms.append(f"{key} {op.lower()} ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return ",".join(terms)


class MetricsApiCheck:
    """Checks every metric of one HPA spec against the metrics APIs; collects problems and warnings."""

    def __init__(self, get: Get, namespace: str, pod_selector: str, hpa_name: str):
        self.get = get
        self.namespace = namespace
        self.pod_selector = pod_selector
        self.hpa_name = hpa_name
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self._versions: dict[str, str | None] = {}
        self._served: dict[str, list[str]] = {}

    def run(self, hpa_spec: Mapping[str, Any]) -> None:
        for metric in hpa_spec.get("metrics") or []:
            kind = metric.get("type")
            if kind == "Pods":
                block = metric.get("pods") or {}
                self._pods_metric(block["metric"]["name"] if block.get("metric") else "?", block)
            elif kind == "Object":
                self._object_metric(metric.get("object") or {})
            elif kind == "External":
                block = metric.get("external") or {}
                self._external_metric((block.get("metric") or {}).get("name", "?"), block)
            elif kind in ("Resource", "ContainerResource"):
                self._resource_metrics()

    # --- discovery ------------------------------------------------------------------------

    def _version(self, group: str) -> str | None:
        """The group's preferred version; None (with a problem) when the API is not there."""
        if group in self._versions:
            return self._versions[group]
        status, body = self.get(f"/apis/{group}", [])
        version = None
        if status == 200:
            version = (body.get("preferredVersion") or {}).get("version")
            version = version or next((v.get("version") for v in body.get("versions") or []), None)
        if version is None:
            self.problems.append(self._missing_api(group, status, body))
        self._versions[group] = version
        return version

    def _missing_api(self, group: str, status: int, body: Mapping[str, Any]) -> str:
        what = {CUSTOM: "custom metrics", EXTERNAL: "external metrics", RESOURCE: "resource metrics"}[group]
        provider = {
            CUSTOM: "prometheus-adapter (manifests/monitoring/prometheus-adapter.yaml)",
            EXTERNAL: "an external metrics adapter (KEDA or prometheus-adapter's externalRules)",
            RESOURCE: "metrics-server",
        }[group]
        if status == 503:
            state = "is registered but does not answer (503: its server is down or unreachable)"
        elif status == 403:
            state = "cannot be read by this user (403)"
        else:
            state = f"is not registered (HTTP {status} for /apis/{group})"
        return (
            f"the {what} API ({group}) {state}: HPA {self.namespace}/{self.hpa_name} gets no metric values and "
            f"will not scale. Fix: install or repair {provider}; check `kubectl get apiservices | grep {group}`"
            + (f" ({body.get('message')})" if body.get("message") else "")
        )

    def _served_names(self, group: str, version: str, resource: str) -> list[str]:
        """Metric names the API lists for a resource (`pods/<metric>`), for messages."""
        key = f"{group}/{version}"
        if key not in self._served:
            status, body = self.get(f"/apis/{key}", [])
            names = [str(r.get("name", "")) for r in body.get("resources") or []] if status == 200 else []
            self._served[key] = names
        if not resource:  # external metrics are listed by name alone
            return sorted({n for n in self._served[key] if "/" not in n})
        prefix = f"{resource}/"
        return sorted({n[len(prefix) :] for n in self._served[key] if n.startswith(prefix)})

    # --- one metric ---------------------------------------------------------------------------

    def _pods_metric(self, name: str, block: Mapping[str, Any]) -> None:
        version = self._version(CUSTOM)
        if version is None:
            return
        query = [("labelSelector", self.pod_selector)]
        metric_selector = label_selector((block.get("metric") or {}).get("selector"))
        if metric_selector:
            query.append(("metricLabelSelector", metric_selector))
        path = f"/apis/{CUSTOM}/{version}/namespaces/{quote(self.namespace)}/pods/*/{quote(name, safe='')}"
        self._judge(CUSTOM, version, "pods", name, path, query, f"the pods of selector {self.pod_selector}")

    def _object_metric(self, block: Mapping[str, Any]) -> None:
        name = (block.get("metric") or {}).get("name", "?")
        target = block.get("describedObject") or {}
        plural = _PLURALS.get(str(target.get("kind")))
        if plural is None:
            self.warnings.append(f"HPA metric {name}: Object metrics of kind {target.get('kind')} are not checked")
            return
        version = self._version(CUSTOM)
        if version is None:
            return
        obj = f"{plural}/{quote(str(target.get('name', '')), safe='')}"
        path = f"/apis/{CUSTOM}/{version}/namespaces/{quote(self.namespace)}/{obj}/{quote(name, safe='')}"
        self._judge(CUSTOM, version, plural, name, path, [], f"{target.get('kind')} {target.get('name')}")

    def _external_metric(self, name: str, block: Mapping[str, Any]) -> None:
        version = self._version(EXTERNAL)
        if version is None:
            return
        selector = label_selector((block.get("metric") or {}).get("selector"))
        query = [("labelSelector", selector)] if selector else []
        path = f"/apis/{EXTERNAL}/{version}/namespaces/{quote(self.namespace)}/{quote(name, safe='')}"
        self._judge(EXTERNAL, version, "", name, path, query, f"namespace {self.namespace}")

    def _resource_metrics(self) -> None:
        if RESOURCE not in self._versions:
            self._version(RESOURCE)

    def _judge(
        self, group: str, version: str, resource: str, name: str, path: str, query: list[tuple[str, str]], of_what: str
    ) -> None:
        status, body = self.get(path, query)
        hpa = f"HPA {self.namespace}/{self.hpa_name}"
        if status == 403:
            self.warnings.append(
                f"cannot check that metric {name} is served (403 from {group}): the Role in "
                "manifests/rbac/hpa-exp-runner.yaml grants `get` on it"
            )
            return
        if status == 503:  # the aggregator lists the group, but the adapter behind it does not answer
            if self._versions.get(group) is not None:
                self.problems.append(self._missing_api(group, status, body))
                self._versions[group] = None  # said once: later metrics of the group are skipped
            return
        served = self._served_names(group, version, resource) if status in (200, 404) else []
        if status == 404 and name not in served:
            listing = ", ".join(served) if served else "nothing"
            self.problems.append(
                f"{hpa} uses metric {name}, which the {group} API does not serve (it serves"
                f"{' for ' + resource if resource else ''}: {listing}): the HPA will not scale. Fix: {ADAPTER_FIX}"
            )
        elif status == 404 or (status == 200 and not body.get("items")):
            # prometheus-adapter answers 404 also for a metric it knows but has no series of for these pods
            self.problems.append(
                f"{hpa} uses metric {name}: the {group} API serves it but has no value for {of_what} "
                "(the HPA would report <unknown>). Fix: check that Prometheus has the series with the "
                "namespace/pod labels the adapter rules map (manifests/monitoring/adapter-rules.yaml)"
            )
        elif status != 200:
            self.problems.append(
                f"{hpa}: asking {group} for metric {name} failed (HTTP {status}): {body.get('message', '')}"
            )
