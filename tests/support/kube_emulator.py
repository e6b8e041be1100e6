"""A Kubernetes API for tests: kmock 0.8's emulator on loopback, in a background thread.

The official (blocking) `kubernetes` client reaches it over real HTTP through an ordinary
kubeconfig.  There are no controllers: the test plays them (patches HPA status, Deployment
readiness, Job and Pod status) with the helpers of `KubeEmulator`.

`HpaExpEmulator` fills the gaps of the stock emulator that hpa-exp depends on (see
/work/shared/reference/test-infra.md §1.3-1.4): label selectors, PUT, delete-collection,
server-side metadata, dry-run PUT, watch `timeoutSeconds`, `GET /api/v1/namespaces/<name>`, a bounded
request log (kmock's own log makes every request O(log size)), and fault injection.
It relies on private names of kmock, hence the pin `kmock==0.8`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp.web
import attrs
import kmock
import pytest
import yaml
from kmock._internal import k8s as kmock_k8s

from tests.support.kube_apis import ExtraApis

JOBS = "batch/v1/jobs"
PODS = "v1/pods"
NAMESPACES = "v1/namespaces"
DEPLOYMENTS = "apps/v1/deployments"
HPAS = "autoscaling/v2/horizontalpodautoscalers"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"  # declared at start; uninstall_keda() removes it

_RESOURCE_INFO: dict[str, dict[str, Any]] = {
    JOBS: {"kind": "Job", "namespaced": True, "singular": "job"},
    PODS: {"kind": "Pod", "namespaced": True, "singular": "pod"},
    NAMESPACES: {"kind": "Namespace", "namespaced": False, "singular": "namespace"},
    DEPLOYMENTS: {"kind": "Deployment", "namespaced": True, "singular": "deployment"},
    HPAS: {"kind": "HorizontalPodAutoscaler", "namespaced": True, "singular": "horizontalpodautoscaler"},
    SCALED_OBJECTS: {"kind": "ScaledObject", "namespaced": True, "singular": "scaledobject"},
}
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

_resource_versions = itertools.count(1)
_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/?$")
_POD_LOG_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")

T = TypeVar("T")


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def match_labels(labels: Mapping[str, str] | None, selector: str | None) -> bool:
    """Whether `labels` satisfy a Kubernetes label selector (=, ==, !=, in, notin, key, !key)."""
    if not selector:
        return True
    labels = labels or {}
    for term in (t.strip() for t in re.split(r",(?![^()]*\))", selector)):
        if not term:
            continue
        set_term = re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term)
        if set_term:
            key, operator = set_term[1], set_term[2]
            values = {v.strip() for v in set_term[3].split(",")}
            if operator == "in" and labels.get(key) not in values:
                return False
            if operator == "notin" and key in labels and labels[key] in values:
                return False
        elif "!=" in term:
            key, value = (s.strip() for s in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (s.strip() for s in re.split("==?", term, maxsplit=1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _object_key(resource: str, namespace: str | None, name: str) -> tuple[Any, str | None, str]:
    """A key of kmock's object store (its `in` operator needs a parsed resource, not a string)."""
    return (kmock.resource(resource), namespace, name)


def _rfc3339_nano(t: float) -> str:
    """A time as the API server stamps log lines: RFC3339 with nanoseconds, UTC."""
    whole = datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{min(round((t - int(t)) * 1e9), 999_999_999):09d}Z"


def _log_lines(text: str) -> list[str]:
    """A log's lines as the API server stamps them: split at "\n" only, each keeping its "\n"."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "code": code,
        "reason": reason,
        "message": message,
    }


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it (a light copy, safe to keep in large numbers)."""

    method: str
    path: str
    params: dict[str, str]
    data: Any


@dataclass
class Fault:
    """Answer the next `remaining` matching requests with an error status, a dropped connection or late.

    `after_processing` (drops only): apply the request first, then drop the connection, so the
    client cannot know whether its change happened (the case that makes naive retries duplicate).
    `delay` (kind "delay"): seconds to wait before serving the request normally.
    """

    kind: Literal["status", "drop", "delay"]
    remaining: int
    status: int = 500
    retry_after: float | None = None
    method: str | None = None
    path: str | None = None  # a regular expression searched in the request path
    after_processing: bool = False
    # a regular expression searched in the body's metadata.name: aims a create at one object, so a
    # fault armed before the run hits that request whatever the timing (not the next create)
    name: str | None = None
    delay: float = 0.0

    def matches(self, method: str, path: str, data: Any = None) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path is not None and re.search(self.path, path) is None:
            return False
        if self.name is None:
            return True
        metadata = data.get("metadata") if isinstance(data, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return isinstance(name, str) and re.search(self.name, name) is not None


@attrs.define(kw_only=True)
class HpaExpEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the behaviour hpa-exp's tests need (see module docstring)."""

    kept_kmock_requests: int = 50
    server_version: dict[str, str] = attrs.field(
        factory=lambda: {
            "major": "1",
            "minor": "31",
            "gitVersion": "v1.31.4-emulated",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "go1.23.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        }
    )
    faults: list[Fault] = attrs.field(factory=list)
    # (namespace, pod, container) -> log text, served by GET .../pods/<pod>/log like a kubelet
    pod_logs: dict[tuple[str, str, str], str] = attrs.field(factory=dict)
    # the same key -> unix time of each line, prefixed to it with ?timestamps=true
    pod_log_times: dict[tuple[str, str, str], list[float]] = attrs.field(factory=dict)
    log: deque[RecordedRequest] = attrs.field(factory=lambda: deque(maxlen=20_000))
    extra: ExtraApis | None = None  # access reviews and the metrics APIs (tests/support/kube_apis.py)

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        del self._requests[: -self.kept_kmock_requests]
        method, path = request.method.value.upper(), request.url.path
        self.log.append(RecordedRequest(method, path, dict(request.params), copy.deepcopy(request.data)))
        fault = next((f for f in self.faults if f.matches(method, path, request.data)), None)
        if fault is not None:
            fault.remaining -= 1
            if fault.kind == "status":
                return self._fault_response(fault)
            if fault.kind == "delay":
                await asyncio.sleep(fault.delay)
                return await self._serve(request)
            if not fault.after_processing:
                return self._drop(request)
            await self._serve(request)
            return self._drop(request)
        return await self._serve(request)

    @staticmethod
    def _fault_response(fault: Fault) -> aiohttp.web.StreamResponse:
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        reason = "TooManyRequests" if fault.status == 429 else "InternalError"
        body = _status_body(fault.status, reason, f"injected fault {fault.status}")
        return aiohttp.web.json_response(body, status=fault.status, headers=headers)

    @staticmethod
    def _drop(request: Any) -> aiohttp.web.StreamResponse:
        transport = request._raw_request.transport
        if transport is not None:
            transport.abort()
        return aiohttp.web.Response(status=503)  # never reaches the client

    async def _serve(self, request: Any) -> aiohttp.web.StreamResponse:
        if self.extra is not None:
            answer = self.extra.answer(
                request.method.value.upper(), request.url.path, dict(request.params), request.data
            )
            if answer is not None:
                return aiohttp.web.json_response(answer[1], status=answer[0])
        resource = request.resource
        method = request.method
        if request.url.path.rstrip("/") == "/version":  # the official client asks for "/version/"
            return aiohttp.web.json_response(self.server_version)
        log_match = _POD_LOG_PATH.match(request.url.path)
        if log_match and method == kmock.method.GET:
            return await self._serve_pod_log(
                log_match[1], log_match[2], request.params.get("container"), request.params.get("timestamps") == "true"
            )
        namespace_match = _NAMESPACE_PATH.match(request.url.path)
        if namespace_match and method == kmock.method.GET and not request.params.get("watch"):
            return await self._serve_namespace(namespace_match[1])
        if resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.CREATE:
                self._fill_metadata(request)
            elif request.action == kmock.action.UPDATE and request.name:
                request.data.setdefault("metadata", {})["resourceVersion"] = str(next(_resource_versions))
        if resource is not None and method == kmock.method.PUT and request.name:
            return await self._replace(request)
        if resource is not None and method == kmock.method.DELETE and not request.name:
            return await self._delete_collection(request)
        if resource is not None and request.action == kmock.action.DELETE and request.name:
            response = await super()._handle(request)
            if response.status != 200:
                return response
            body = _status_body(200, "", "")
            body["details"] = {"name": request.name, "kind": resource.plural}
            return aiohttp.web.json_response(body)
        return await super()._handle(request)

    def _fill_metadata(self, request: Any) -> None:
        meta = request.data.setdefault("metadata", {})
        if request.namespace and not meta.get("namespace"):
            meta["namespace"] = request.namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now_rfc3339())
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(_resource_versions))

    async def _serve_namespace(self, name: str) -> aiohttp.web.StreamResponse:
        key = _object_key(NAMESPACES, None, name)
        async with self._lock:
            found = key in self._objects and not self._objects[key].deleted
            raw = self._objects[key].raw if found else None
        if raw is None:
            return await self._render_error(kmock_k8s.KubernetesObjectNotFoundError())
        return aiohttp.web.json_response(raw)

    async def _serve_pod_log(
        self, namespace: str, pod: str, container: str | None, timestamps: bool
    ) -> aiohttp.web.StreamResponse:
        """The pods/log subresource as the API server answers it: 404 without the pod, 400 when
        the container is ambiguous or has no log yet, else the text (with `timestamps`, each line
        prefixed with its RFC3339 time and a space)."""
        key = _object_key(PODS, namespace, pod)
        async with self._lock:
            raw = self._objects[key].raw if key in self._objects and not self._objects[key].deleted else None
        if raw is None:
            return aiohttp.web.json_response(_status_body(404, "NotFound", f'pods "{pod}" not found'), status=404)
        names = [c.get("name") for c in (raw.get("spec") or {}).get("containers") or []]
        if container is None and len(names) == 1:
            container = names[0]
        if container is None or container not in names:
            message = f"a container name must be specified for pod {pod}, choose one of: {names}"
            return aiohttp.web.json_response(_status_body(400, "BadRequest", message), status=400)
        text = self.pod_logs.get((namespace, pod, container))
        if text is None:
            message = f'container "{container}" in pod "{pod}" is waiting to start: ContainerCreating'
            return aiohttp.web.json_response(_status_body(400, "BadRequest", message), status=400)
        if timestamps:
            times = self.pod_log_times[(namespace, pod, container)]
            text = "".join(f"{_rfc3339_nano(t)} {line}" for t, line in zip(times, _log_lines(text), strict=True))
        return aiohttp.web.Response(text=text, content_type="text/plain")

    async def _replace(self, request: Any) -> aiohttp.web.StreamResponse:
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key not in self._objects or self._objects[key].deleted:
                return await self._render_error(kmock_k8s.KubernetesObjectNotFoundError())
            body = dict(request.data)
            if request.params.get("dryRun"):  # what would be stored (no defaulting here), nothing changed
                return aiohttp.web.json_response(body)
            body.setdefault("metadata", {})["resourceVersion"] = str(next(_resource_versions))
            self._objects[key].create(body)
            raw = self._objects[key].raw
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})
        return aiohttp.web.json_response(raw)

    async def _delete_collection(self, request: Any) -> aiohttp.web.StreamResponse:
        selector = request.params.get("labelSelector")
        async with self._lock:
            for (resource, namespace, _), obj in list(self._objects.items()):
                if resource != request.resource or obj.deleted:
                    continue
                if request.namespace is not None and namespace != request.namespace:
                    continue
                if not match_labels(obj.get("metadata", {}).get("labels"), selector):
                    continue
                raw = obj.raw
                obj.delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})
        return aiohttp.web.json_response(_status_body(200, "", ""))

    async def _serve_list(self, request: Any) -> dict[str, Any]:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        result["items"] = [
            item for item in result["items"] if match_labels(item.get("metadata", {}).get("labels"), selector)
        ]
        result["metadata"] = {"resourceVersion": str(next(_resource_versions))}
        return result

    async def _serve_watch(self, request: Any) -> Any:
        selector = request.params.get("labelSelector")
        timeout = request.params.get("timeoutSeconds")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout) if timeout else None
        events = super()._serve_watch(request)
        try:
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(anext(events), remaining)
                except (asyncio.TimeoutError, StopAsyncIteration):
                    return
                labels = event.get("object", {}).get("metadata", {}).get("labels") if isinstance(event, dict) else None
                if isinstance(event, dict) and not match_labels(labels, selector):
                    continue
                yield event
        finally:
            await events.aclose()


class KubeEmulator:
    """The emulator served from a background thread, with helpers to set state as controllers would."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.url = ""
        self.kubeconfig = self.workdir / "kubeconfig"
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self.handler: HpaExpEmulator | None = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> KubeEmulator:
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Kubernetes emulator did not start within 10 s")
        if self._failure is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._failure
        self.write_kubeconfig(self.kubeconfig)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(); the thread must not die silently
            self._failure = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with HpaExpEmulator() as handler, kmock.Server(handler) as server:
            for resource, info in _RESOURCE_INFO.items():
                handler.resources[resource] = {
                    **info,
                    "verbs": _VERBS,
                    "shortnames": [],
                    "categories": [],
                    "subresources": ["status"],
                }
            handler.extra = ExtraApis(pods_of=self._pods_of)
            self.handler = handler
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def _pods_of(self, namespace: str) -> list[tuple[str, dict[str, str]]]:
        """(name, labels) of the live pods of a namespace; called inside the event loop."""
        wanted = kmock.resource(PODS)
        return [
            (name, dict(obj.raw.get("metadata", {}).get("labels") or {}))
            for (res, ns, name), obj in self._handler.objects.items()
            if res == wanted and ns == namespace and not obj.deleted
        ]

    @property
    def apis(self) -> ExtraApis:
        """Access reviews and metrics APIs: refuse a permission, serve or unregister a metric."""
        assert self._handler.extra is not None
        return self._handler.extra

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` inside the emulator's event loop (safe against concurrent requests)."""
        assert self._loop is not None, "the emulator is not running"

        async def invoke() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(5)

    def write_kubeconfig(self, path: Path, context: str = "emulator", token: str = "emulator-token") -> Path:
        """Write a kubeconfig whose current context points at this emulator."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": "emulator", "user": "tester"}}],
            "current-context": context,
        }
        Path(path).write_text(yaml.safe_dump(config))
        return Path(path)

    # --- state -------------------------------------------------------------------------------

    @property
    def _handler(self) -> HpaExpEmulator:
        assert self.handler is not None, "the emulator is not running"
        return self.handler

    def put(self, resource: str, namespace: str | None, body: Mapping[str, Any]) -> None:
        """Store an object as if it had been created (metadata filled in like the API server does)."""
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if namespace is not None:
            meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now_rfc3339())
        meta["resourceVersion"] = str(next(_resource_versions))
        key = _object_key(resource, namespace, meta["name"])
        self.call(lambda: self._handler.objects.__setitem__(key, obj))

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object as stored now, or None when absent or deleted."""

        def read() -> dict[str, Any] | None:
            key = _object_key(resource, namespace, name)
            objects = self._handler.objects
            if key not in objects or objects[key].deleted:
                return None
            return copy.deepcopy(objects[key].raw)

        return self.call(read)

    def names(self, resource: str, namespace: str | None = None) -> list[str]:
        """Names of the live objects of a resource (in a namespace when given)."""

        wanted = kmock.resource(resource)

        def read() -> list[str]:
            return sorted(
                name
                for (res, ns, name), obj in self._handler.objects.items()
                if res == wanted and (namespace is None or ns == namespace) and not obj.deleted
            )

        return self.call(read)

    def patch(self, resource: str, namespace: str | None, name: str, changes: Mapping[str, Any]) -> None:
        """Merge-patch a stored object (None deletes a key), as a controller would."""

        def apply() -> None:
            key = _object_key(resource, namespace, name)
            objects = self._handler.objects
            if key not in objects or objects[key].deleted:
                raise KeyError(f"no {resource} {namespace}/{name} in the emulator")
            objects[key].patch(copy.deepcopy(dict(changes)))

        self.call(apply)

    def remove(self, resource: str, namespace: str | None, name: str) -> None:
        """Delete a stored object (as if someone else deleted it)."""
        self.call(lambda: self._handler.objects[_object_key(resource, namespace, name)].delete())

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far (oldest first)."""
        return self.call(lambda: list(self._handler.log))

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and re.search(path_pattern, r.path)]

    # --- fault injection ---------------------------------------------------------------------

    def fail_next(
        self,
        count: int,
        status: int = 500,
        *,
        retry_after: float | None = None,
        method: str | None = None,
        path: str | None = None,
        name: str | None = None,
    ) -> Fault:
        """Answer the next `count` matching requests with `status` (and Retry-After when given)."""
        fault = Fault("status", count, status=status, retry_after=retry_after, method=method, path=path, name=name)
        self.call(lambda: self._handler.faults.append(fault))
        return fault

    def drop_next(
        self,
        count: int,
        *,
        method: str | None = None,
        path: str | None = None,
        after_processing: bool = False,
        name: str | None = None,
    ) -> Fault:
        """Abort the connection of the next `count` matching requests (after applying them if asked)."""
        fault = Fault("drop", count, method=method, path=path, after_processing=after_processing, name=name)
        self.call(lambda: self._handler.faults.append(fault))
        return fault

    def delay_next(self, count: int, seconds: float, *, method: str | None = None, path: str | None = None) -> Fault:
        """Serve the next `count` matching requests `seconds` late (a slow API server)."""
        fault = Fault("delay", count, method=method, path=path, delay=seconds)
        self.call(lambda: self._handler.faults.append(fault))
        return fault

    # --- scenario objects --------------------------------------------------------------------

    def add_namespace(self, name: str) -> None:
        self.put(NAMESPACES, None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def add_deployment(self, namespace: str, name: str, *, replicas: int = 1, ready_replicas: int | None = 1) -> None:
        labels = {"app": name}
        status: dict[str, Any] = {"replicas": replicas}
        if ready_replicas is not None:
            status["readyReplicas"] = ready_replicas
        self.put(
            DEPLOYMENTS,
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:latest"}]},
                    },
                },
                "status": status,
            },
        )

    def add_hpa(
        self,
        namespace: str,
        name: str,
        *,
        deployment: str,
        min_replicas: int = 1,
        max_replicas: int = 8,
        current_replicas: int = 1,
        desired_replicas: int = 1,
        waiting: str | None = "60250m",
        kv_cache: str | None = "312m",
    ) -> None:
        """An autoscaling/v2 HPA with the two Pods metrics of the vLLM setup (targets "20" and "500m")."""
        spec_metrics = [
            _pods_metric_spec("num_requests_waiting", "20"),
            _pods_metric_spec("kv_cache_usage_perc", "500m"),
        ]
        current = [
            _pods_metric_status(metric, value)
            for metric, value in (("num_requests_waiting", waiting), ("kv_cache_usage_perc", kv_cache))
            if value is not None
        ]
        self.put(
            HPAS,
            namespace,
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": name},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment},
                    "minReplicas": min_replicas,
                    "maxReplicas": max_replicas,
                    "metrics": spec_metrics,
                },
                "status": {
                    "currentReplicas": current_replicas,
                    "desiredReplicas": desired_replicas,
                    "lastScaleTime": "2026-11-23T04:00:00Z",
                    "currentMetrics": current,
                    "conditions": [
                        {
                            "type": "AbleToScale",
                            "status": "True",
                            "reason": "ReadyForNewScale",
                            "message": "recommended size matches current size",
                            "lastTransitionTime": "2026-11-23T04:00:00Z",
                        },
                        {
                            "type": "ScalingActive",
                            "status": "True",
                            "reason": "ValidMetricFound",
                            "message": "the HPA was able to successfully calculate a replica count",
                            "lastTransitionTime": "2026-11-23T04:00:00Z",
                        },
                    ],
                },
            },
        )

    def add_pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: Mapping[str, str],
        waiting_reason: str | None = None,
        phase: str = "Running",
    ) -> None:
        """A Pod; `waiting_reason` (e.g. "ImagePullBackOff") puts its container in a waiting state."""
        state: dict[str, Any] = (
            {"waiting": {"reason": waiting_reason, "message": f"container is {waiting_reason}"}}
            if waiting_reason
            else {"running": {"startedAt": _now_rfc3339()}}
        )
        self.put(
            PODS,
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {"containers": [{"name": "main", "image": "example/image:1"}]},
                "status": {
                    "phase": "Pending" if waiting_reason else phase,
                    "containerStatuses": [{"name": "main", "ready": not waiting_reason, "state": state}],
                },
            },
        )

    def uninstall_keda(self) -> None:
        """Undeclare the ScaledObject resource: its paths answer 404, as without KEDA's CRD."""
        self.call(lambda: self._handler.resources.pop(SCALED_OBJECTS, None))

    def install_keda(self) -> None:
        """Declare KEDA's ScaledObject resource, as installing its CRD does."""
        info = {
            "kind": "ScaledObject",
            "namespaced": True,
            "singular": "scaledobject",
            "verbs": _VERBS,
            "shortnames": ["so"],
            "categories": [],
            "subresources": ["status"],
        }
        self.call(lambda: self._handler.resources.__setitem__(SCALED_OBJECTS, info))

    def add_scaled_object(self, namespace: str, name: str, *, deployment: str) -> None:
        """A KEDA ScaledObject and the HPA KEDA makes for it (keda-hpa-<name>, owned by the ScaledObject)."""
        self.put(
            SCALED_OBJECTS,
            namespace,
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": name},
                "spec": {"scaleTargetRef": {"name": deployment}, "triggers": [{"type": "prometheus", "metadata": {}}]},
            },
        )
        so = self.get(SCALED_OBJECTS, namespace, name) or {}
        self.add_hpa(namespace, f"keda-hpa-{name}", deployment=deployment)
        owner = {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "name": name,
            "uid": so.get("metadata", {}).get("uid", ""),
            "controller": True,
        }
        self.patch(HPAS, namespace, f"keda-hpa-{name}", {"metadata": {"ownerReferences": [owner]}})

    # --- playing the controllers -------------------------------------------------------------

    def set_hpa_status(
        self,
        namespace: str,
        name: str,
        *,
        current_replicas: int | None = None,
        desired_replicas: int | None = None,
        current_metrics: list[dict[str, Any]] | None = None,
        last_scale_time: str | None = None,
    ) -> None:
        status: dict[str, Any] = {}
        if current_replicas is not None:
            status["currentReplicas"] = current_replicas
        if desired_replicas is not None:
            status["desiredReplicas"] = desired_replicas
        if current_metrics is not None:
            status["currentMetrics"] = current_metrics
        if last_scale_time is not None:
            status["lastScaleTime"] = last_scale_time
        self.patch(HPAS, namespace, name, {"status": status})

    def set_deployment_replicas(
        self, namespace: str, name: str, *, replicas: int | None = None, ready_replicas: int | None = None
    ) -> None:
        changes: dict[str, Any] = {"status": {}}
        if replicas is not None:
            changes["spec"] = {"replicas": replicas}
            changes["status"]["replicas"] = replicas
        if ready_replicas is not None:
            changes["status"]["readyReplicas"] = ready_replicas
        self.patch(DEPLOYMENTS, namespace, name, changes)

    def set_job_status(
        self,
        namespace: str,
        name: str,
        *,
        active: int | None = None,
        succeeded: int | None = None,
        failed: int | None = None,
        condition: tuple[str, str, str] | None = None,
    ) -> None:
        """Patch a Job's status; `condition` is (type, reason, message), e.g. a Failed condition."""
        status: dict[str, Any] = {}
        for key, value in (("active", active), ("succeeded", succeeded), ("failed", failed)):
            if value is not None:
                status[key] = value
        if condition is not None:
            kind, reason, message = condition
            status["conditions"] = [
                {
                    "type": kind,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": _now_rfc3339(),
                }
            ]
        self.patch(JOBS, namespace, name, {"status": status})

    def add_job_pod(self, namespace: str, job_name: str, *, waiting_reason: str | None = None) -> str:
        """A pod of a Job, labelled as the Job controller labels them; returns its name."""
        pod_name = f"{job_name}-{uuid.uuid4().hex[:5]}"
        labels = {"job-name": job_name, "batch.kubernetes.io/job-name": job_name}
        self.add_pod(namespace, pod_name, labels=labels, waiting_reason=waiting_reason)
        return pod_name

    def set_pod_log(
        self, namespace: str, pod: str, text: str, container: str = "main", line_times: list[float] | None = None
    ) -> None:
        """What the pod's container has printed so far (served by GET .../pods/<pod>/log), and when
        (unix time per line; default: all lines now)."""
        lines = len(_log_lines(text))
        times = list(line_times) if line_times is not None else [time.time()] * lines
        if len(times) != lines:
            raise ValueError(f"{len(times)} line times for {lines} lines")

        def store() -> None:
            self._handler.pod_logs[(namespace, pod, container)] = text
            self._handler.pod_log_times[(namespace, pod, container)] = times

        self.call(store)

    def add_vllm_setup(self, namespace: str = "bench", deployment: str = "vllm", hpa: str = "vllm-hpa") -> None:
        """The usual scene: namespace, vLLM Deployment with one ready replica and its pod, the HPA,
        and the custom metrics API serving the HPA's two metrics for that pod (as the adapter would)."""
        self.add_namespace(namespace)
        self.add_deployment(namespace, deployment)
        self.add_pod(namespace, f"{deployment}-0", labels={"app": deployment})
        self.add_hpa(namespace, hpa, deployment=deployment)
        self.apis.serve_pod_metric(namespace, "num_requests_waiting", {f"{deployment}-0": "60250m"})
        self.apis.serve_pod_metric(namespace, "kv_cache_usage_perc", {f"{deployment}-0": "312m"})


def _pods_metric_spec(metric: str, target: str) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": metric}, "target": {"type": "AverageValue", "averageValue": target}},
    }


def _pods_metric_status(metric: str, value: str) -> dict[str, Any]:
    return {"type": "Pods", "pods": {"metric": {"name": metric}, "current": {"averageValue": value}}}


@pytest.fixture
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeEmulator]:
    """A running emulator with the usual scene: namespace "bench", Deployment "vllm", HPA "vllm-hpa".

    `kube_cluster.kubeconfig` is a kubeconfig file pointing at it (context "emulator").
    """
    emulator = KubeEmulator(tmp_path_factory.mktemp("kube")).start()
    try:
        emulator.add_vllm_setup()
        yield emulator
    finally:
        emulator.stop()


__all__ = [
    "DEPLOYMENTS",
    "HPAS",
    "JOBS",
    "NAMESPACES",
    "PODS",
    "SCALED_OBJECTS",
    "Fault",
    "HpaExpEmulator",
    "KubeEmulator",
    "RecordedRequest",
    "kube_cluster",
    "match_labels",
]
