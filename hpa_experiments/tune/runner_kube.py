"""The points of a search as ONE Kubernetes Indexed Job (completionMode: Indexed).

A ConfigMap carries the bundle (worker.py); the Job has one completion index per pending point,
and each pod runs `hpa-exp tune --worker --index $(JOB_COMPLETION_INDEX)` with the image given.
Kubernetes schedules, retries (backoffLimit) and tracks the indexes; this runner only watches:
each pod that Succeeded has its log read once (the worker's result line) and its point saved at
once, so an interrupted search keeps what finished.  At the end, or on any error or Ctrl-C, the
Job (with its pods) and the ConfigMap are deleted.  Before anything is created, kube_access.py checks
that the API answers and that every request below is permitted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hpa_experiments.backends.kube.backend import KubeSettings, connect
from hpa_experiments.errors import BackendError
from hpa_experiments.tune.kube_access import check_access
from hpa_experiments.tune.plan import PlannedPoint, TunePlan
from hpa_experiments.tune.search import KubeOptions
from hpa_experiments.tune.worker import make_bundle, parse_result
from hpa_experiments.workloads import new_run_id

POLL_S = 2.0
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
CONTAINER = "tune"
MOUNT = "/tune"


def worker_processes(cpu: str) -> int:
    """The seeds a pod runs at once: its CPU request in whole cores, at least 1 (`os.cpu_count()` in
    a pod is the node's, not the pod's share)."""
    try:
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except ValueError:
        return 1
    return max(1, int(cores))


def job_manifest(name: str, namespace: str, count: int, options: KubeOptions) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "hpa-exp", "hpa-exp/tune": name},
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": count,
            "parallelism": min(count, options.parallelism or count),
            "backoffLimit": max(3, count),
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/part-of": "hpa-exp", "hpa-exp/tune": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": CONTAINER,
                            "image": options.image,
                            "args": [
                                "tune",
                                "--worker",
                                "--bundle",
                                f"{MOUNT}/bundle.json",
                                "--index",
                                "$(JOB_COMPLETION_INDEX)",
                            ],
                            "resources": {"requests": {"cpu": options.cpu}, "limits": {"cpu": options.cpu}},
                            "volumeMounts": [{"name": "bundle", "mountPath": MOUNT, "readOnly": True}],
                        }
                    ],
                    "volumes": [{"name": "bundle", "configMap": {"name": name}}],
                },
            },
        },
    }


def run_kube(
    plan: TunePlan,
    pending: Sequence[PlannedPoint],
    options: KubeOptions,
    on_point: Callable[[dict[str, Any]], None],
    say: Callable[[str], None],
) -> None:
    api, context = connect(KubeSettings(kubeconfig=options.kubeconfig, context=options.context))
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    namespace = options.namespace or plan.base.config.namespace
    for warning in check_access(api, context, namespace):  # raises (exit 3) before anything is created
        say(f"warning: {warning}")
    name = f"hpa-exp-tune-{new_run_id(time.time())}"[:63].rstrip("-")
    bundle = make_bundle(plan, pending)
    by_key = {p.key: p for p in pending}
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/part-of": "hpa-exp"}},
        "data": {"bundle.json": json.dumps(bundle)},
    }
    collected: set[str] = set()
    try:
        manifest = job_manifest(name, namespace, len(pending), options)
        # dicts, not V1 models: the client serialises them as they are
        _call(lambda: core.create_namespaced_config_map(namespace, configmap), f"create ConfigMap {namespace}/{name}")  # type: ignore[arg-type]
        _call(lambda: batch.create_namespaced_job(namespace, manifest), f"create Job {namespace}/{name}")  # type: ignore[arg-type]
        say(f"Indexed Job {namespace}/{name} ({context}): {len(pending)} points, image {options.image}")
        deadline = time.monotonic() + options.timeout_s
        while True:
            for pod in _pods(core, namespace, name):
                pod_name = pod["metadata"]["name"]
                if pod["status"].get("phase") != "Succeeded" or pod_name in collected:
                    continue
                collected.add(pod_name)
                result = parse_result(_log(core, namespace, pod_name))
                index = (pod["metadata"].get("annotations") or {}).get(INDEX_ANNOTATION)
                if result is None or result.get("key") not in by_key:
                    say(f"pod {pod_name} (index {index}) left no result line; its point stays without result")
                    continue
                on_point(result)
            state = _job_state(batch, namespace, name)
            if state == "Complete" and len(collected) >= len(pending):
                return
            if state == "Failed":
                raise BackendError(
                    f"Job {namespace}/{name} failed (backoffLimit reached); points with results are kept"
                )
            if time.monotonic() > deadline:
                raise BackendError(f"Job {namespace}/{name} not complete after {options.timeout_s:.0f} s")
            time.sleep(POLL_S)
    finally:
        _delete(batch, core, namespace, name, say)


def _pods(core: client.CoreV1Api, namespace: str, job: str) -> list[dict[str, Any]]:
    answer = _call(
        lambda: core.list_namespaced_pod(namespace, label_selector=f"job-name={job}", _preload_content=False),
        f"list pods of Job {job}",
    )
    return list(json.loads(answer.data).get("items") or [])


def _log(core: client.CoreV1Api, namespace: str, pod: str) -> str:
    """The pod's log as text (unparsed: the client would turn a log that is one JSON line into a dict)."""
    answer = _call(
        lambda: core.read_namespaced_pod_log(pod, namespace, container=CONTAINER, _preload_content=False),
        f"read log of pod {pod}",
    )
    return bytes(answer.data).decode("utf-8", "replace")


def _job_state(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    answer = _call(lambda: batch.read_namespaced_job(name, namespace, _preload_content=False), f"read Job {name}")
    for condition in json.loads(answer.data).get("status", {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return None


def _delete(
    batch: client.BatchV1Api, core: client.CoreV1Api, namespace: str, name: str, say: Callable[[str], None]
) -> None:
    """The Job with its pods (Background propagation) and the ConfigMap; a failure is said, not raised."""
    for what, call in (
        ("Job", lambda: batch.delete_namespaced_job(name, namespace, propagation_policy="Background")),
        ("ConfigMap", lambda: core.delete_namespaced_config_map(name, namespace)),
    ):
        try:
            call()
        except ApiException as exc:
            if exc.status != 404:
                say(f"could not delete {what} {namespace}/{name}: {exc.status} {exc.reason}; delete it by hand")
    say(f"deleted Job and ConfigMap {namespace}/{name}")


def _call(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except ApiException as exc:
        raise BackendError(f"{what}: {exc.status} {exc.reason}") from None
    except OSError as exc:
        raise BackendError(f"{what}: {exc}") from None
