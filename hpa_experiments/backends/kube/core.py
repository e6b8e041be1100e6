"""The core/v1 reads hpa-exp makes (a namespace, pods by label, a pod's log), and raw GET/POST of
any API path (aggregated metrics APIs, access reviews, custom resources), without `CoreV1Api`.

The official client (kubernetes >= 33) builds `CoreV1Api` from several hundred
pydantic-validated methods and ~130 pydantic models: loading it costs ~70 MB of memory
(~90 MB at peak) and over a second of CPU, more than everything else in `hpa-exp run`
together.  These requests go through the same `ApiClient` (auth, TLS, timeouts, the same
`ApiException` on errors) and return the raw response, as the generated methods do
with `_preload_content=False`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException


class CoreReads:
    """`read_namespace`, `list_namespaced_pod`, `read_namespaced_pod_log`, `get` and `post` with the
    generated methods' call signature."""

    def __init__(self, api_client: ApiClient):
        self.api_client = api_client

    def read_namespace(self, name: str, **options: Any) -> Any:
        return self._get(f"/api/v1/namespaces/{quote(name, safe='')}", [], **options)

    def list_namespaced_pod(self, namespace: str, label_selector: str | None = None, **options: Any) -> Any:
        query = [("labelSelector", label_selector)] if label_selector else []
        return self._get(f"/api/v1/namespaces/{quote(namespace, safe='')}/pods", query, **options)

    def read_namespaced_pod_log(
        self, name: str, namespace: str, container: str | None = None, timestamps: bool = False, **options: Any
    ) -> Any:
        """The pods/log subresource: the container's log as text (the response body); with
        `timestamps`, each line prefixed with its RFC3339 time."""
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/log"
        query = [("container", container)] if container else []
        if timestamps:
            query.append(("timestamps", "true"))
        return self._get(path, query, accept="*/*", **options)

    def get(self, path: str, query: list[tuple[str, str]] | None = None, **options: Any) -> Any:
        """GET any API path (e.g. `/apis/custom.metrics.k8s.io/v1beta2`), raw like the reads above."""
        return self._get(path, query or [], **options)

    def post(self, path: str, body: dict[str, Any], **options: Any) -> Any:
        """POST a JSON object to any API path (e.g. a SelfSubjectAccessReview)."""
        return self._send("POST", path, [], body, **options)

    def _get(self, path: str, query: list[tuple[str, str]], **options: Any) -> Any:
        return self._send("GET", path, query, None, **options)

    def _send(
        self,
        verb: str,
        path: str,
        query: list[tuple[str, str]],
        payload: dict[str, Any] | None,
        _preload_content: bool = False,
        _request_timeout: Any = None,
        accept: str = "application/json",
    ) -> Any:
        if _preload_content:
            raise ValueError("CoreReads returns raw responses only (_preload_content=False)")
        header_params = {"Accept": accept}
        if payload is not None:
            header_params["Content-Type"] = "application/json"
        method, url, headers, body, post_params = self.api_client.param_serialize(
            verb,
            path,
            query_params=query,
            header_params=header_params,
            body=payload,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(method, url, headers, body, post_params, _request_timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response
