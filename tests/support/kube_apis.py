"""The parts of a real API server beyond stored objects, for the emulator (tests/support/kube_emulator.py).

* authorization: SelfSubjectAccessReview answers from a set of refused (group, resource, verb),
  and SelfSubjectReview names the user;
* the custom and external metrics APIs (aggregated APIs on a real server, served by
  prometheus-adapter or KEDA): discovery (`/apis/<group>`, `/apis/<group>/<version>`) and metric
  reads for pods by label selector, as the HPA controller makes them.  `unregister()` makes a
  group answer 404, `unavailable()` 503 (the adapter is down).

The shapes follow the real APIs (k8s.io/metrics: MetricValueList, ExternalMetricValueList), so
code tested here works against kube-apiserver + prometheus-adapter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

CUSTOM = "custom.metrics.k8s.io"
EXTERNAL = "external.metrics.k8s.io"
VERSIONS = {CUSTOM: "v1beta2", EXTERNAL: "v1beta1"}

Answer = tuple[int, dict[str, Any]]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@dataclass
class ExtraApis:
    """State and answers of the non-object APIs.  `pods_of` lists pods (name, labels) of a namespace."""

    pods_of: Callable[[str], list[tuple[str, dict[str, str]]]]
    user: str = "system:serviceaccount:bench:tester"
    refused: set[tuple[str, str, str]] = field(default_factory=set)  # (group, resource, verb)
    # metric name -> pod name -> value (a Kubernetes quantity string), per namespace
    pod_metrics: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    external_metrics: dict[str, dict[str, str]] = field(default_factory=dict)  # namespace -> name -> value
    registered: set[str] = field(default_factory=lambda: {CUSTOM, EXTERNAL})
    broken: set[str] = field(default_factory=set)  # registered but answering 503
    broken_metrics: bool = False  # discovery answers (as kube-aggregator does) but metric reads get 503

    def serve_pod_metric(self, namespace: str, metric: str, values: Mapping[str, str]) -> None:
        self.pod_metrics.setdefault(namespace, {})[metric] = dict(values)

    def answer(self, method: str, path: str, params: Mapping[str, str], data: Any) -> Answer | None:
        """The answer to a request these APIs own, or None to leave it to the object store."""
        if method == "POST" and path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
            return self._access_review(data)
        if method == "POST" and path == "/apis/authentication.k8s.io/v1/selfsubjectreviews":
            return 201, {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "status": {"userInfo": {"username": self.user}},
            }
        match = re.match(r"^/apis/(custom\.metrics\.k8s\.io|external\.metrics\.k8s\.io)(/.*)?$", path)
        if match is None or method != "GET":
            return None
        group, rest = match[1], (match[2] or "").rstrip("/")
        if group not in self.registered:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        if group in self.broken:
            return 503, _status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        version = VERSIONS[group]
        if rest == "":
            gv = {"groupVersion": f"{group}/{version}", "version": version}
            return 200, {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": group,
                "versions": [gv],
                "preferredVersion": gv,
            }
        if rest == f"/{version}":
            return 200, self._resource_list(group, version)
        if self.broken_metrics:
            return 503, _status(503, "ServiceUnavailable", "the server is currently unable to handle the request")
        if group == CUSTOM:
            found = re.fullmatch(rf"/{version}/namespaces/([^/]+)/pods/\*/([^/]+)", rest)
            if found:
                return self._pod_metric(unquote(found[1]), unquote(found[2]), params.get("labelSelector", ""))
        else:
            found = re.fullmatch(rf"/{version}/namespaces/([^/]+)/([^/]+)", rest)
            if found:
                return self._external_metric(unquote(found[1]), unquote(found[2]))
        return 404, _status(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _access_review(self, review: Any) -> Answer:
        attributes = ((review or {}).get("spec") or {}).get("resourceAttributes") or {}
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource += "/" + attributes["subresource"]
        key = (attributes.get("group", ""), resource, attributes.get("verb", ""))
        allowed = key not in self.refused
        status = {"allowed": allowed}
        if not allowed:
            status["reason"] = ""
        return 201, {**review, "status": status}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        if group == CUSTOM:
            names = sorted({f"pods/{m}" for per_ns in self.pod_metrics.values() for m in per_ns})
        else:
            names = sorted({m for per_ns in self.external_metrics.values() for m in per_ns})
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}",
            "resources": [{"name": n, "namespaced": True, "kind": "MetricValueList", "verbs": ["get"]} for n in names],
        }

    def _pod_metric(self, namespace: str, metric: str, selector: str) -> Answer:
        from tests.support.kube_emulator import match_labels

        values = self.pod_metrics.get(namespace, {}).get(metric)
        if values is None:
            return 404, _status(404, "NotFound", f"the server could not find the metric {metric} for pods")
        items = [
            {
                "describedObject": {"kind": "Pod", "namespace": namespace, "name": pod, "apiVersion": "/v1"},
                "metric": {"name": metric, "selector": None},
                "timestamp": "2026-01-01T00:00:00Z",
                "value": values[pod],
            }
            for pod, labels in self.pods_of(namespace)
            if pod in values and match_labels(labels, selector)
        ]
        if not items:  # what prometheus-adapter answers when it has no series for these pods
            return 404, _status(404, "NotFound", f"the server could not find the metric {metric} for pods")
        return 200, {"kind": "MetricValueList", "apiVersion": f"{CUSTOM}/v1beta2", "metadata": {}, "items": items}

    def _external_metric(self, namespace: str, metric: str) -> Answer:
        value = self.external_metrics.get(namespace, {}).get(metric)
        if value is None:
            return 404, _status(404, "NotFound", f"the server could not find the external metric {metric}")
        item = {"metricName": metric, "metricLabels": {}, "timestamp": "2026-01-01T00:00:00Z", "value": value}
        return 200, {
            "kind": "ExternalMetricValueList",
            "apiVersion": f"{EXTERNAL}/v1beta1",
            "metadata": {},
            "items": [item],
        }
