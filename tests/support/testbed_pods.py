"""The kubelet's part in the test bed, for the pods hpa-exp cares about.

kwok makes pods Running/Ready on the fake node, but runs nothing.  This supervisor polls the pods
and, like a kubelet:
- starts one llm-d-inference-sim per Running model-server pod (a container whose image is
  llm-d-inference-sim; its own args, on a free port, with a dummy tokenizer so it never
  contacts a model hub) and stops it when the pod is deleted; Prometheus finds the
  simulators through a file_sd list with `namespace`/`pod` labels;
- stands in for each Service a load generator addresses (no kube-proxy here): a round-robin
  HTTP proxy on a local port over the simulators of the Ready pods the Service selects (with
  the KEDA test bed also a scale-to-zero gateway that holds requests while no pod is Ready,
  its requests in flight scraped by Prometheus);
- runs, for each Pod of an Indexed Job whose container runs `hpa-exp tune --worker` (the image's
  entrypoint is hpa-exp), that worker as a local process: the ConfigMap its `--bundle` lives in is
  copied to a local folder (the volume), `$(JOB_COMPLETION_INDEX)` is expanded from the pod's
  completion-index annotation as a kubelet expands it from the env, and its stdout is the log;
- runs, for each Pod of a Job whose container runs `vllm bench serve`, a load generator with
  the same arguments (tests/support/testbed_loadgen.py); its output is the container's log
  and its exit code ends the pod (Succeeded/Failed), so the Job controller completes the Job.
  A pod deleted mid-run gets its generator SIGTERMed, as a kubelet would.

Job pod logs: the generator's output is the container log, readable through the API server
(`GET .../pods/<pod>/log?container=bench`, i.e. `kubectl logs`): the supervisor creates a kwok
`Logs` object per Job pod (owned by the pod) naming the CRI-format file
`<workdir>/pod-logs/<namespace>/<pod>/<container>.cri.log`, and kwok's kubelet API serves it.
The same text, plain, is in `<container>.log` beside it.  As in a cluster, the log goes away
with the pod: whoever wants it must read it before the Job is deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from tests.support.testbed_proc import Proc, free_port
from tests.support.testbed_proxy import GATEWAY_METRICS_PATH

if TYPE_CHECKING:
    from tests.support.testbed import Testbed

SIM_IMAGE = "llm-d-inference-sim"
# args of the kit's (older) simulator image that the pinned simulator does not have or must not get
SIM_DROPPED_FLAGS = ("--port", "--tokenizers-cache-dir")
POLL_S = 0.5


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


# latency flags: integers in milliseconds for the kit's image (v0.6.0), Go durations since (v0.10.2 wants "100ms")
SIM_MS_FLAGS = frozenset(
    {
        "--time-to-first-token",
        "--time-to-first-token-std-dev",
        "--inter-token-latency",
        "--inter-token-latency-std-dev",
        "--prefill-overhead",
        "--prefill-time-per-token",
        "--prefill-time-std-dev",
        "--kv-cache-transfer-latency",
        "--kv-cache-transfer-latency-std-dev",
        "--kv-cache-transfer-time-per-token",
        "--kv-cache-transfer-time-std-dev",
    }
)


def sim_args(args: list[str], port: int) -> list[str]:
    """The pod's simulator args for a local process: our port, no tokenizer download, and the
    kit image's millisecond numbers as durations for the pinned simulator."""
    out: list[str] = []
    words = iter(args)
    for arg in words:
        name, has_value, value = arg.partition("=")
        if not has_value and name in (*SIM_DROPPED_FLAGS, *SIM_MS_FLAGS):
            value = next(words, "")
        if name in SIM_DROPPED_FLAGS:
            continue
        if name in SIM_MS_FLAGS:
            out.append(f"{name}={value}ms" if _is_number(value) else f"{name}={value}")
        else:
            out.append(arg)
    return [*out, f"--port={port}", "--force-dummy-tokenizer"]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bench_args(pod: dict[str, Any]) -> tuple[str, list[str]] | None:
    """(container name, `vllm bench serve` args) of a Job pod, or None."""
    for c in pod["spec"].get("containers", []):
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        if argv[:3] == ["vllm", "bench", "serve"]:
            return c["name"], argv[3:]
    return None


def tune_worker_args(pod: dict[str, Any]) -> tuple[dict[str, Any], list[str]] | None:
    """(container, args) of an `hpa-exp tune --worker` Job pod (the image's entrypoint runs hpa-exp), or None."""
    for c in pod["spec"].get("containers", []):
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        if argv[:1] == ["hpa-exp"]:
            argv = argv[1:]
        if argv[:2] == ["tune", "--worker"]:
            return c, argv
    return None


def is_model_server(pod: dict[str, Any]) -> dict[str, Any] | None:
    for c in pod["spec"].get("containers", []):
        if SIM_IMAGE in c.get("image", ""):
            return c
    return None


def pod_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    return status.get("phase") == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


def owned_by_job(pod: dict[str, Any]) -> bool:
    return any(o.get("kind") == "Job" for o in pod["metadata"].get("ownerReferences", []))


@dataclass
class Sim:
    proc: Proc
    port: int
    namespace: str
    pod: str
    labels: dict[str, str]
    listening: bool = False  # its port accepts connections: the readiness probe kwok does not run

    def serving(self) -> bool:
        if not self.listening and self.proc.alive():
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.05):
                self.listening = True
        return self.listening and self.proc.alive()


@dataclass
class LoadGen:
    proc: Proc
    namespace: str
    pod: str
    container: str
    log: Path
    reported: bool = False


@dataclass
class ServiceProxy:
    proc: Proc
    port: int
    namespace: str
    name: str
    selector: dict[str, str]
    endpoints_file: Path
    last: list[int] = field(default_factory=list)


class PodSupervisor:
    def __init__(self, bed: Testbed):
        self.bed = bed
        self.sims: dict[str, Sim] = {}  # pod uid ->
        self.loadgens: dict[str, LoadGen] = {}  # pod uid ->
        self.proxies: dict[tuple[str, str], ServiceProxy] = {}
        self.errors: list[str] = []
        self.logdir = bed.logdir
        self.pod_logs = bed.workdir / "pod-logs"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="testbed-pods", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            for group in (self.loadgens, self.sims):
                for item in group.values():
                    item.proc.stop(timeout=5)
                group.clear()
            for proxy in self.proxies.values():
                proxy.proc.stop(timeout=5)
            self.proxies.clear()

    def describe(self) -> str:
        with self._lock:
            lines = [
                f"--- pods: {len(self.sims)} simulators, {len(self.loadgens)} load generators, "
                f"{len(self.proxies)} service proxies"
            ]
            lines += [
                f"sim {s.namespace}/{s.pod} :{s.port} {'running' if s.proc.alive() else 'exited'}"
                for s in self.sims.values()
            ]
            lines += [f"error: {e}" for e in self.errors[-10:]]
        return "\n".join(lines)

    def container_log(self, namespace: str, pod: str, container: str) -> Path:
        """Where a pod container's output is kept (the seam for reading Job logs)."""
        return self.pod_logs / namespace / pod / f"{container}.log"

    # --- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pods = self.bed.request("GET", "/api/v1/pods").json().get("items", [])
                with self._lock:
                    self._sync(pods)
            except Exception as exc:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            self._stop.wait(POLL_S)

    def _sync(self, pods: list[dict[str, Any]]) -> None:
        live = {p["metadata"]["uid"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
        # model servers; a going pod leaves its Services before its simulator stops (no request
        # is routed to a closed port), as endpoints drop a terminating pod
        going = []
        for uid, sim in list(self.sims.items()):
            pod = live.get(uid)
            if pod is None or pod["status"].get("phase") != "Running":
                going.append(sim)
                del self.sims[uid]
            elif not sim.proc.alive():  # restarted on the next pass, as a kubelet restarts a container
                self.errors.append(
                    f"simulator of pod {sim.namespace}/{sim.pod} exited with "
                    f"{sim.proc.popen.returncode}: {sim.proc.tail(5)}"
                )
                sim.proc.stop()
                del self.sims[uid]
        if going:
            self._write_endpoints()
        for sim in going:
            sim.proc.stop(timeout=5)
        for uid, pod in live.items():
            container = is_model_server(pod)
            if container is not None and uid not in self.sims and pod_ready(pod):
                self._start_sim(uid, pod, container)
        self._write_targets()
        # load generators
        for uid, gen in list(self.loadgens.items()):
            if uid not in live:
                gen.proc.stop(timeout=10)  # the pod is going away: SIGTERM, as a kubelet does
                del self.loadgens[uid]
            elif not gen.proc.alive() and not gen.reported:
                gen.reported = self._finish_pod(live[uid], gen)
        for uid, pod in live.items():
            if uid in self.loadgens or not owned_by_job(pod) or pod["status"].get("phase") != "Running":
                continue
            found = bench_args(pod)
            if found is not None:
                self._start_loadgen(uid, pod, *found)
            worker = tune_worker_args(pod)
            if worker is not None:
                self._start_tune_worker(uid, pod, *worker)
        self._write_endpoints()

    # --- simulators ------------------------------------------------------------------------

    def _start_sim(self, uid: str, pod: dict[str, Any], container: dict[str, Any]) -> None:
        meta = pod["metadata"]
        port = free_port()
        argv = [self.bed.bin / "llm-d-inference-sim", *sim_args(list(container.get("args") or []), port)]
        env = {"POD_NAME": meta["name"], "POD_NAMESPACE": meta["namespace"], "POD_IP": "127.0.0.1"}
        proc = Proc(f"sim-{meta['namespace']}-{meta['name']}", argv, self.logdir, env)
        self.sims[uid] = Sim(proc, port, meta["namespace"], meta["name"], dict(meta.get("labels") or {}))

    def _write_targets(self) -> None:
        groups = [
            {"targets": [f"127.0.0.1:{s.port}"], "labels": {"namespace": s.namespace, "pod": s.pod}}
            for s in self.sims.values()
            if s.proc.alive()
        ]
        if self.bed.gateway_hold_s > 0:  # a scale-to-zero gateway: its requests in flight, per Service
            groups += [
                {
                    "targets": [f"127.0.0.1:{p.port}"],
                    "labels": {"namespace": p.namespace, "service": p.name, "__metrics_path__": GATEWAY_METRICS_PATH},
                }
                for p in self.proxies.values()
            ]
        _write_atomic(self.bed.prometheus_targets, json.dumps(groups, indent=1))

    # --- services --------------------------------------------------------------------------

    def _proxy_for(self, namespace: str, name: str) -> ServiceProxy | None:
        key = (namespace, name)
        if key in self.proxies:
            return self.proxies[key]
        answer = self.bed.request("GET", f"/api/v1/namespaces/{namespace}/services/{name}")
        if answer.status_code != 200:
            return None
        selector = answer.json().get("spec", {}).get("selector") or {}
        port = free_port()
        endpoints = self.bed.workdir / "services" / f"{namespace}.{name}.json"
        endpoints.parent.mkdir(exist_ok=True)
        endpoints.write_text("[]")
        hold = str(self.bed.gateway_hold_s)
        proc = Proc(
            f"service-{namespace}-{name}",
            [sys.executable, "-m", "tests.support.testbed_proxy", str(port), str(endpoints), hold],
            self.logdir,
            {"PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        proxy = ServiceProxy(proc, port, namespace, name, selector, endpoints)
        self.proxies[key] = proxy
        self._write_endpoints()
        return proxy

    def _write_endpoints(self) -> None:
        for proxy in self.proxies.values():
            ports = sorted(
                s.port
                for s in self.sims.values()
                if s.namespace == proxy.namespace
                and s.serving()
                and proxy.selector
                and all(s.labels.get(k) == v for k, v in proxy.selector.items())
            )
            if ports != proxy.last:
                _write_atomic(proxy.endpoints_file, json.dumps(ports))
                proxy.last = ports

    def _local_url(self, url: str, namespace: str) -> str:
        """http://vllm:8000 (or vllm.ns, vllm.ns.svc[.cluster.local]) -> the Service's local stand-in."""
        parts = urlsplit(url)
        labels = (parts.hostname or "").split(".")
        name = labels[0]
        ns = labels[1] if len(labels) > 1 and labels[1] != "svc" else namespace
        proxy = self._proxy_for(ns, name)
        if proxy is None:
            return url  # no such Service: the generator fails to connect, as in a cluster
        return urlunsplit((parts.scheme, f"127.0.0.1:{proxy.port}", parts.path, parts.query, parts.fragment))

    # --- load generators -------------------------------------------------------------------

    def _start_loadgen(self, uid: str, pod: dict[str, Any], container: str, args: list[str]) -> None:
        meta = pod["metadata"]
        local: list[str] = []
        for arg in args:
            if arg.startswith("--base-url="):
                arg = "--base-url=" + self._local_url(arg.split("=", 1)[1], meta["namespace"])
            local.append(arg)
        log = self.container_log(meta["namespace"], meta["name"], container)
        log.parent.mkdir(parents=True, exist_ok=True)
        cri = log.with_suffix(".cri.log")
        cri.touch()
        self._serve_log(pod, container, cri)
        proc = Proc(
            f"loadgen-{meta['namespace']}-{meta['name']}",
            [sys.executable, "-m", "tests.support.testbed_loadgen", *local],
            log.parent,
            {
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                "PYTHONUNBUFFERED": "1",
                "TESTBED_CRI_LOG": str(cri),
            },
            log_path=log,
        )
        self.loadgens[uid] = LoadGen(proc, meta["namespace"], meta["name"], container, log)

    def _start_tune_worker(self, uid: str, pod: dict[str, Any], container: dict[str, Any], args: list[str]) -> None:
        meta = pod["metadata"]
        index = (meta.get("annotations") or {}).get("batch.kubernetes.io/job-completion-index", "")
        volumes = self.pod_logs.parent / "pod-volumes" / meta["namespace"] / meta["name"]
        local = [a.replace("$(JOB_COMPLETION_INDEX)", index) for a in args]
        for mount in container.get("volumeMounts") or []:
            volume = next(v for v in pod["spec"].get("volumes", []) if v["name"] == mount["name"])
            name = (volume.get("configMap") or {}).get("name")
            data = self.bed.request("GET", f"/api/v1/namespaces/{meta['namespace']}/configmaps/{name}").json()
            folder = volumes / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            for key, text in (data.get("data") or {}).items():
                (folder / key).write_text(text)
            local = [a.replace(mount["mountPath"], str(folder)) for a in local]
        log = self.container_log(meta["namespace"], meta["name"], container["name"])
        log.parent.mkdir(parents=True, exist_ok=True)
        cri = log.with_suffix(".cri.log")
        cri.touch()
        self._serve_log(pod, container["name"], cri)
        proc = Proc(
            f"tune-{meta['namespace']}-{meta['name']}",
            [
                sys.executable,
                "-m",
                "tests.support.testbed_container",
                str(cri),
                sys.executable,
                "-m",
                "hpa_experiments",
                *local,
            ],
            log.parent,
            {
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                "PYTHONUNBUFFERED": "1",
                "JOB_COMPLETION_INDEX": index,
            },
            log_path=log,
        )
        self.loadgens[uid] = LoadGen(proc, meta["namespace"], meta["name"], container["name"], log)

    def _serve_log(self, pod: dict[str, Any], container: str, cri: Path) -> None:
        """A kwok Logs object: kwok's kubelet API then serves `cri` as the container's log."""
        meta = pod["metadata"]
        doc = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}],
            },
            "spec": {"logs": [{"containers": [container], "logsFile": str(cri), "follow": True}]},
        }
        answer = self.bed.request("POST", f"/apis/kwok.x-k8s.io/v1alpha1/namespaces/{meta['namespace']}/logs", doc)
        if answer.status_code not in (201, 409):
            self.errors.append(f"Logs for pod {meta['namespace']}/{meta['name']}: {answer.status_code} {answer.text}")

    def _finish_pod(self, pod: dict[str, Any], gen: LoadGen) -> bool:
        """Report the generator's exit as the pod's end (the Job controller takes it from there)."""
        code = gen.proc.popen.returncode
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        phase = "Succeeded" if code == 0 else "Failed"
        status = {
            "phase": phase,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": code if c["name"] == gen.container else 0,
                            "reason": "Completed" if code == 0 else "Error",
                            "startedAt": pod["status"].get("startTime", now),
                            "finishedAt": now,
                        }
                    },
                }
                for c in pod["spec"]["containers"]
            ],
        }
        meta = pod["metadata"]
        answer = self.bed.request(
            "PATCH",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status",
            {"status": status},
            "application/strategic-merge-patch+json",
        )
        if answer.status_code >= 300:
            self.errors.append(f"pod {meta['namespace']}/{meta['name']} status {phase}: {answer.status_code}")
            return False
        return True


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
