"""The Kubernetes backend: the official `kubernetes` client for Jobs, HPA and Deployment, and
prometheus-api-client for PromQL (see prom.py).  Wall clock.

Every API call goes through `retry.call_with_retry` (bounded, logged through `on_warning`).
Responses are read as plain JSON (`_preload_content=False`) so that the exact quantity strings
reach `quantity.parse_quantity` and a field the typed models do not know cannot break a read.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from hpa_experiments.backends.base import (
    Backend,
    Clock,
    InstantSample,
    JobLaunch,
    JobState,
    PodLog,
    PodTimes,
    QueryError,
    RangeSeries,
    ScalingSnapshot,
)
from hpa_experiments.backends.kube import jobs
from hpa_experiments.backends.kube import objects as kube_objects
from hpa_experiments.backends.kube.claim import Claims, hpa_kind, scaled_object_kind
from hpa_experiments.backends.kube.core import CoreReads
from hpa_experiments.backends.kube.keda import ScaledObjects
from hpa_experiments.backends.kube.pods import deployment_selector, pod_times
from hpa_experiments.backends.kube.prom import PromClient, PromSettings
from hpa_experiments.backends.kube.retry import RetryPolicy, call_with_retry
from hpa_experiments.errors import BackendError, PreflightError
from hpa_experiments.log_times import split_stamped
from hpa_experiments.ownership import JOB_LABEL, MANAGED_BY, MANAGED_BY_LABEL, RUN_LABEL  # noqa: F401 - re-exported for callers
from hpa_experiments.scaledobject import parse_scaled_object

# Bounded by time, not attempts: an API server that is away for a minute (an upgrade, a failover)
# is waited for; the short max_delay means a Job due for deletion goes within ~4 s of its return.
DEFAULT_API_RETRY = RetryPolicy(max_attempts=None, max_elapsed=120.0, base_delay=0.5, max_delay=4.0)
DESCRIBE_RETRY = RetryPolicy(max_attempts=2, max_elapsed=5.0, base_delay=0.5, max_delay=1.0)


class ApiCall(NamedTuple):
    """One kind of request the backend makes, as RBAC sees it."""

    api_group: str  # "" is the core group
    resource: str
    verb: str
    why: str
    optional: bool = False  # the preflight skips that check when refused, with a warning


API_CALLS: tuple[ApiCall, ...] = (
    ApiCall("batch", "jobs", "create", "start a load-generator Job"),
    ApiCall("batch", "jobs", "get", "inspect a Job whose name is taken (adopt it if it is this run's)"),
    ApiCall("batch", "jobs", "list", "job states and leftover check, by label hpa-exp/run"),
    ApiCall("batch", "jobs", "delete", "stop a Job (background propagation deletes its pods)"),
    ApiCall("", "pods", "list", "find why a Job's pod is stuck; the Deployment's pods' start and ready times"),
    ApiCall("", "pods/log", "get", "save a Job's pod logs before deleting it (output.include_pod_logs)"),
    ApiCall("autoscaling", "horizontalpodautoscalers", "get", "HPA targets and status"),
    ApiCall("autoscaling", "horizontalpodautoscalers", "create", "apply the experiment's HPA manifest"),
    ApiCall(
        "autoscaling",
        "horizontalpodautoscalers",
        "update",
        "compare an existing HPA with the manifest (dry run); --take-over: replace its spec, restore it",
    ),
    ApiCall("autoscaling", "horizontalpodautoscalers", "delete", "remove the HPA the run applied"),
    ApiCall("keda.sh", "scaledobjects", "get", "KEDA runs: the ScaledObject's conditions"),
    ApiCall("keda.sh", "scaledobjects", "create", "KEDA runs: apply the experiment's ScaledObject"),
    ApiCall(
        "keda.sh",
        "scaledobjects",
        "update",
        "KEDA runs: compare an existing ScaledObject (dry run); --take-over: replace its spec, restore it",
    ),
    ApiCall("keda.sh", "scaledobjects", "delete", "KEDA runs: remove the ScaledObject the run applied"),
    ApiCall("apps", "deployments", "get", "Deployment replicas and readiness"),
    ApiCall("autoscaling", "horizontalpodautoscalers", "list", "preflight: other HPAs on the Deployment"),
    ApiCall("keda.sh", "scaledobjects", "list", "preflight: KEDA ScaledObjects on the Deployment", optional=True),
    ApiCall("custom.metrics.k8s.io", "*", "get", "preflight: the HPA's Pods/Object metrics are served", optional=True),
    ApiCall("external.metrics.k8s.io", "*", "get", "preflight: the HPA's External metrics are served", optional=True),
    ApiCall("", "namespaces", "get", "preflight: the namespace exists", optional=True),
)
"""Every (apiGroup, resource, verb) the backend uses; manifests/rbac must grant all of them."""


@dataclass(frozen=True)
class KubeSettings:
    """How to reach the cluster.

    kubeconfig: the argument, else $KUBECONFIG, else ~/.kube/config.  In-cluster config is used
    when `in_cluster` is True, or when it is None and we run in a pod (KUBERNETES_SERVICE_HOST
    set) with no kubeconfig given or found.
    """

    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool | None = None
    request_timeout: float = 15.0

    def use_in_cluster(self) -> bool:
        if self.in_cluster is not None:
            return self.in_cluster
        if self.kubeconfig or os.environ.get("KUBECONFIG"):
            return False
        if Path("~/.kube/config").expanduser().exists():
            return False
        return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


class WallClock(Clock):
    """Real time; `sleep_until` sleeps in short steps so a signal handler runs promptly."""

    virtual = False
    step = 0.2

    def now(self) -> float:
        return time.time()

    def sleep_until(self, t: float) -> None:
        while (remaining := t - time.time()) > 0:
            time.sleep(min(remaining, self.step))


def _json_or_empty(data: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(data or b"{}")
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def connect(settings: KubeSettings) -> tuple[client.ApiClient, str]:
    """An API client and the name of the context it uses. Raises PreflightError with a clear message."""
    configuration = client.Configuration()
    if settings.use_in_cluster():
        try:
            config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise PreflightError([f"cannot load the in-cluster config: {exc}"]) from None
        context = "in-cluster"
    else:
        # Resolved here, not by the client: it reads $KUBECONFIG once, at import time.
        source = settings.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        paths = [Path(p).expanduser() for p in source.split(os.pathsep) if p]
        if not any(p.is_file() for p in paths):
            raise PreflightError([f"kubeconfig {source} not found (use --kubeconfig or set KUBECONFIG)"])
        try:
            config.load_kube_config(
                config_file=source,
                context=settings.context,
                client_configuration=configuration,
                persist_config=False,
            )
            _, active = config.list_kube_config_contexts(config_file=source)
        except (ConfigException, OSError, ValueError, yaml.YAMLError, TypeError, AttributeError, KeyError) as exc:
            # a kubeconfig that is not YAML, or YAML of another shape, breaks the loader in many ways
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise PreflightError([f"cannot load kubeconfig {source}: {reason}"]) from None
        context = settings.context or (active or {}).get("name", "")
    # Our own retries (bounded, logged) replace urllib3's silent ones, which also retry on 429.
    configuration.retries = urllib3.Retry(total=0, redirect=0, respect_retry_after_header=False, raise_on_status=False)
    return client.ApiClient(configuration), context


class KubeBackend(Backend):
    """Runs an experiment on a real cluster: one instance per run."""

    name = "kubernetes"

    def __init__(
        self,
        settings: KubeSettings,
        prom: PromSettings | None,
        *,
        namespace: str,
        deployment: str,
        hpa_name: str,
        run_id: str,
        retry: RetryPolicy = DEFAULT_API_RETRY,
        on_warning: Callable[[str], None] | None = None,
        scaled_object: dict[str, Any] | None = None,
        take_over: bool = False,
    ):
        """`scaled_object`: the run's KEDA ScaledObject (KEDA runs); `hpa_name` is then KEDA's HPA.
        `take_over`: an existing HPA/ScaledObject that differs from the manifest is taken over (and
        restored at the end) instead of refused."""
        self.settings = settings
        self.namespace = namespace
        self.deployment = deployment
        self.hpa_name = hpa_name
        self.run_id = run_id
        self.clock = WallClock()
        self.retry = retry
        self._tick = threading.local()  # .retry: the bounded policy of a tick's reads in this thread
        if on_warning is not None:
            self.set_warning_handler(on_warning)
        self.api_client, self.context = connect(settings)
        self.batch = client.BatchV1Api(self.api_client)
        self.core = CoreReads(self.api_client)  # not client.CoreV1Api: see kube_core
        self.apps = client.AppsV1Api(self.api_client)
        self.autoscaling = client.AutoscalingV2Api(self.api_client)
        self.version_api = client.VersionApi(self.api_client)
        self.prom = PromClient(prom, on_retry=self._warn) if prom is not None else None
        self._job_namespaces: dict[str, str] = {}  # resource name -> namespace, for Jobs we started
        self._hpa_namespaces: dict[str, str] = {}
        self.keda = (
            None
            if scaled_object is None
            else ScaledObjects(self.api_client, self.call_json, parse_scaled_object(scaled_object), namespace)
        )
        self.claims = Claims(run_id, take_over, self._warn)
        self.hpa_kind = hpa_kind(self.call_json, self.autoscaling, namespace)
        custom = client.CustomObjectsApi(self.api_client)
        self.scaled_object_kind = scaled_object_kind(self.call_json, custom, namespace)

    def __repr__(self) -> str:
        return (
            f"KubeBackend(context={self.context!r}, namespace={self.namespace!r}, "
            f"deployment={self.deployment!r}, hpa={self.hpa_name!r}, run_id={self.run_id!r}, "
            f"prom={self.prom!r})"
        )

    # --- plumbing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def tick_reads(self, budget_s: float) -> Iterator[None]:
        self._tick.retry = RetryPolicy(
            max_attempts=None, max_elapsed=budget_s, base_delay=min(0.2, budget_s / 4), max_delay=budget_s / 2
        )
        try:
            yield
        finally:
            self._tick.retry = None

    def _policy(self, retry: RetryPolicy | None) -> RetryPolicy:
        return retry or getattr(self._tick, "retry", None) or self.retry

    def call_json(
        self,
        what: str,
        method: Callable[..., Any],
        *args: Any,
        tolerate: tuple[int, ...] = (),
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """Call an API method with retries and return the JSON answer.

        Returns None when the answer's status is one of `tolerate` (e.g. 404 on a delete).
        """

        timeout, policy = self.settings.request_timeout, self._policy(retry)
        return jobs.call_json(
            what, method, *args, timeout=timeout, policy=policy, on_retry=self._warn, tolerate=tolerate, **kwargs
        )

    def request_json(
        self,
        verb: str,
        what: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        answers: tuple[int, ...] = (),
        retry: RetryPolicy | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """GET or POST any API path; returns (status, JSON body).  Statuses in `answers` (e.g. 404 for
        an API that is not registered) are returned, not raised; other failures raise BackendError."""

        def attempt() -> tuple[int, dict[str, Any]]:
            options = {"_request_timeout": self.settings.request_timeout}
            try:
                if verb == "POST":
                    response = self.core.post(path, body or {}, **options)
                else:
                    response = self.core.get(path, query, **options)
            except ApiException as exc:
                if exc.status in answers:
                    return exc.status, _json_or_empty(exc.body)
                raise
            try:
                return response.status, _json_or_empty(response.data)
            finally:
                response.release_conn()

        return call_with_retry(attempt, what=what, policy=self._policy(retry), on_retry=self._warn)

    # --- jobs -----------------------------------------------------------------------------------

    def start_job(self, launch: JobLaunch) -> None:
        manifest = launch.manifest
        meta = manifest.get("metadata") or {}
        name = launch.resource_name
        namespace = meta.get("namespace") or self.namespace
        labels = meta.get("labels") or {}
        if meta.get("name") != name:
            raise BackendError(f"Job manifest for {launch.job_name}: metadata.name is not {name!r}")
        if labels.get(RUN_LABEL) != self.run_id:
            raise BackendError(
                f"Job manifest for {launch.job_name}: label {RUN_LABEL} must be {self.run_id!r} "
                "(Jobs are tracked and cleaned up by it)"
            )
        what = f"create Job {namespace}/{name}"
        created = self.call_json(what, self.batch.create_namespaced_job, namespace, manifest, tolerate=(409,))
        if created is None:
            self._adopt_existing(namespace, name, launch.job_name)
        self._job_namespaces[name] = namespace

    def _adopt_existing(self, namespace: str, name: str, job_name: str) -> None:
        """A 409 on create: the Job is ours when it carries this run's labels (an earlier attempt made it)."""
        what = f"read Job {namespace}/{name}"
        existing = self.call_json(what, self.batch.read_namespaced_job, name, namespace)
        labels = (existing or {}).get("metadata", {}).get("labels") or {}
        if labels.get(RUN_LABEL) == self.run_id and labels.get(JOB_LABEL, job_name) == job_name:
            self._warn(f"Job {namespace}/{name} exists with this run's labels: adopted, not recreated")
            return
        owner = labels.get(RUN_LABEL)
        raise BackendError(
            f"cannot create Job {namespace}/{name}: a Job with that name already exists and "
            + (f"belongs to run {owner!r}" if owner else "was not created by hpa-exp")
            + "; delete it or use another run id"
        )

    def stop_job(self, resource_name: str) -> None:
        namespace = self._job_namespaces.get(resource_name, self.namespace)
        jobs.delete_job(self.call_json, self.batch, namespace, resource_name)

    def job_logs(self, resource_name: str) -> list[PodLog]:
        namespace = self._job_namespaces.get(resource_name, self.namespace)
        pods = self._pods_of(namespace, [resource_name]).get(resource_name, [])
        pods.sort(key=lambda pod: (pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"]))
        logs = []
        for pod in pods:
            name = pod["metadata"]["name"]
            for container in (pod.get("spec") or {}).get("containers") or [{}]:
                stamped = self._pod_log(namespace, name, container.get("name"))
                if stamped is not None:
                    text, line_times = split_stamped(stamped)
                    logs.append(PodLog(name, container.get("name") or "", text, line_times=line_times))
        return logs

    def _pod_log(self, namespace: str, pod: str, container: str | None) -> str | None:
        """The container's log, each line prefixed with its time; "" when its container has not started
        (400), None when the pod is gone."""

        def attempt() -> str | None:
            try:
                response = self.core.read_namespaced_pod_log(
                    pod,
                    namespace,
                    container,
                    timestamps=True,
                    _preload_content=False,
                    _request_timeout=self.settings.request_timeout,
                )
            except ApiException as exc:
                if exc.status == 400:  # "container ... is waiting to start": nothing printed yet
                    return ""
                if exc.status == 404:
                    return None
                raise
            try:
                return response.data.decode("utf-8", errors="replace")
            finally:
                response.release_conn()

        what = f"read the log of pod {namespace}/{pod}" + (f" container {container}" if container else "")
        return call_with_retry(attempt, what=what, policy=self.retry, on_retry=self._warn)

    def _namespaces(self) -> list[str]:
        return sorted({self.namespace, *list(self._job_namespaces.values())})

    def job_states(self) -> dict[str, JobState]:
        states: dict[str, JobState] = {}
        selector = f"{RUN_LABEL}={self.run_id}"
        for namespace in self._namespaces():
            what = f"list Jobs of run {self.run_id} in {namespace}"
            listed = jobs.list_jobs(self.call_json, self.batch, namespace, selector, what)
            unfinished = [j["metadata"]["name"] for j in listed if not kube_objects.job_finished(j)]
            pods = self._pods_of(namespace, unfinished)
            for job in listed:
                job_name = job["metadata"]["name"]
                states[job_name] = kube_objects.job_state(job, pods.get(job_name, []))
        for name in list(self._job_namespaces):  # start_job may add to it from the runner's thread
            states.setdefault(name, JobState(name=name, exists=False))
        return states

    def _pods_of(self, namespace: str, job_names: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Pods of the given Jobs, found by either job-name label (old and new Job controllers)."""
        if not job_names:
            return {}
        found: dict[str, dict[str, Any]] = {}
        names = ",".join(sorted(job_names))
        for label in kube_objects.JOB_NAME_LABELS:
            listing = self.call_json(
                f"list pods of Jobs in {namespace}",
                self.core.list_namespaced_pod,
                namespace,
                label_selector=f"{label} in ({names})",
            )
            for pod in (listing or {}).get("items") or []:
                found[pod["metadata"]["name"]] = pod
        by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in found.values():
            job_name = kube_objects.job_name_of_pod(pod)
            if job_name is not None:
                by_job.setdefault(job_name, []).append(pod)
        return by_job

    # --- scaling --------------------------------------------------------------------------------

    def read_hpa(self) -> dict[str, Any] | None:
        """The HPA as JSON; None when it does not exist or the run has none (empty name)."""
        if not self.hpa_name:
            return None
        return self.call_json(
            f"read HPA {self.namespace}/{self.hpa_name}",
            self.autoscaling.read_namespaced_horizontal_pod_autoscaler,
            self.hpa_name,
            self.namespace,
            tolerate=(404,),
        )

    def read_deployment(self) -> dict[str, Any] | None:
        return self.call_json(
            f"read Deployment {self.namespace}/{self.deployment}",
            self.apps.read_namespaced_deployment,
            self.deployment,
            self.namespace,
            tolerate=(404,),
        )

    def scaling_snapshot(self) -> ScalingSnapshot:
        taken_at = self.clock.now()
        hpa = self.read_hpa()
        found = self.read_deployment()
        deployment = found or {}
        deployment_fields: dict[str, Any] = {
            "deployment_found": found is not None,
            "deployment_replicas": deployment.get("spec", {}).get("replicas"),
            "ready_replicas": kube_objects.replica_count(deployment.get("status") or {}, "readyReplicas"),
            "pods": self._deployment_pods(deployment),
        }
        if self.keda is not None:
            deployment_fields["scaled_object"] = self.keda.state()
        if hpa is None:
            return ScalingSnapshot(taken_at=taken_at, hpa_found=False, **deployment_fields)
        spec, status = hpa.get("spec") or {}, hpa.get("status") or {}
        readings = kube_objects.hpa_metric_readings(hpa)
        return ScalingSnapshot(
            taken_at=taken_at,
            hpa_found=True,
            current_replicas=kube_objects.replica_count(status, "currentReplicas"),
            desired_replicas=kube_objects.replica_count(status, "desiredReplicas"),
            min_replicas=spec.get("minReplicas", 1),
            max_replicas=spec.get("maxReplicas"),
            metrics=self.keda.named_readings(readings) if self.keda is not None else readings,
            last_scale_time=status.get("lastScaleTime"),
            conditions=kube_objects.hpa_conditions(hpa),
            **deployment_fields,
        )

    def _deployment_pods(self, deployment: dict[str, Any]) -> tuple[PodTimes, ...] | None:
        """The Deployment's pods by its selector; None when that is unknown or the listing failed."""
        selector = deployment_selector(deployment)
        if selector is None:
            return None
        try:
            listing = self.call_json(
                f"list pods of Deployment {self.namespace}/{self.deployment}",
                self.core.list_namespaced_pod,
                self.namespace,
                label_selector=selector,
            )
        except BackendError:  # the retries were reported as warnings; the ready lag goes unknown
            return None
        return tuple(pod_times(pod) for pod in (listing or {}).get("items") or [])

    def hpa_object(self) -> dict[str, Any] | None:
        return self.read_hpa()

    def apply_hpa(self, manifest: dict[str, Any]) -> bool:
        """Create the HPA with the run's marks; an existing one is used as is when identical, else
        refused or (take_over) taken over and restored at the end (kube/claim.py).  True: created."""
        name = manifest.get("metadata", {}).get("name") or self.hpa_name
        namespace = self.namespace  # the run's only namespace: it is where read_hpa looks
        if manifest.get("metadata", {}).get("namespace") not in (None, namespace):
            raise BackendError(
                f"HPA manifest {name!r}: metadata.namespace {manifest['metadata']['namespace']!r} is not the "
                f"run's namespace {namespace!r}"
            )
        self._hpa_namespaces[name] = namespace
        return self.claims.apply(self.hpa_kind, manifest)

    def delete_hpa(self, name: str) -> None:
        namespace = self._hpa_namespaces.get(name, self.namespace)
        self.call_json(
            f"delete HPA {namespace}/{name}",
            self.autoscaling.delete_namespaced_horizontal_pod_autoscaler,
            name,
            namespace,
            tolerate=(404,),
        )

    def apply_scaled_object(self, manifest: dict[str, Any]) -> bool:
        if self.keda is None:
            raise BackendError("this backend was not set up with a ScaledObject")
        return self.claims.apply(self.scaled_object_kind, manifest)

    def restore_taken_over(self) -> list[str]:
        return self.claims.restore()

    def delete_scaled_object(self, name: str) -> None:
        if self.keda is not None:
            self.keda.delete()

    # --- Prometheus -----------------------------------------------------------------------------

    def _prometheus(self) -> PromClient:
        if self.prom is None:
            raise QueryError("Prometheus is not configured (metrics.prometheus.url)")
        return self.prom

    def query(self, promql: str, at: float | None = None) -> list[InstantSample]:
        return self._prometheus().query(promql, at)

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[RangeSeries]:
        return self._prometheus().query_range(promql, start, end, step)

    # --- bookkeeping ----------------------------------------------------------------------------

    def server_version(self, retry: RetryPolicy | None = None) -> str:
        info = self.call_json("read server version", self.version_api.get_code, retry=retry) or {}
        return str(info.get("gitVersion", "unknown"))

    def describe(self) -> dict[str, Any]:
        try:
            version = self.server_version(retry=DESCRIBE_RETRY)
        except BackendError as exc:
            version = f"unknown ({exc})"
        return {
            "backend": self.name,
            "server_version": version,
            "context": self.context,
            "namespace": self.namespace,
            "deployment": self.deployment,
            "hpa": self.hpa_name,
            "scaled_object": None if self.keda is None else self.keda.spec.name,
            "run_id": self.run_id,
            "prometheus": self.prom.describe() if self.prom is not None else None,
        }

    def close(self) -> None:
        if self.prom is not None:
            self.prom.close()
        self.api_client.close()
