"""The local cluster kit: a kind cluster with a model server, Prometheus and prometheus-adapter
(or, with `--autoscaler keda`, a pinned KEDA release and the experiment's ScaledObject; an HPA
only on request: an experiment applies its own, and two HPAs on one Deployment disable each
other), driven through the `kind` and `kubectl` command-line tools.

Every step is a plain argument list run without a shell, so `--dry-run` can print exactly
what would run.  All kubectl calls name the kind context explicitly: the kit never touches
whatever cluster the user's current context points at.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hpa_experiments.errors import EXIT_FAILED, EXIT_PREFLIGHT, HpaExpError
from hpa_experiments.kit import kit_dir

Variant = Literal["emulator", "vllm"]
HpaVariant = Literal["queue", "kvcache", "combined", "none"]
Autoscaler = Literal["hpa", "keda"]

NAMESPACE = "hpa-exp"
MONITORING_NAMESPACE = "monitoring"
CUSTOM_METRICS_API = "apiservice/v1beta1.custom.metrics.k8s.io"
EXTERNAL_METRICS_API = "apiservice/v1beta1.external.metrics.k8s.io"
# KEDA's release manifest, pinned (KEDA's documented `kubectl apply --server-side` install).
KEDA_VERSION = "2.16.1"
KEDA_RELEASE_URL = f"https://github.com/kedacore/keda/releases/download/v{KEDA_VERSION}/keda-{KEDA_VERSION}.yaml"
KEDA_NAMESPACE = "keda"
KEDA_DEPLOYMENTS = ("keda-operator", "keda-operator-metrics-apiserver")
MODEL_SERVER_SELECTOR = "app.kubernetes.io/name=vllm"

INSTALL_HINTS = {
    "docker": "Docker runs the kind node containers: https://docs.docker.com/get-docker/",
    "kind": "kind creates the local cluster: https://kind.sigs.k8s.io/docs/user/quick-start/#installation",
    "kubectl": "kubectl talks to the cluster: https://kubernetes.io/docs/tasks/tools/",
}

# Seconds to wait for each Deployment to roll out: vLLM downloads ~16 GB of weights.
ROLLOUT_TIMEOUT_S = {"prometheus": 180, "prometheus-adapter": 180, "keda": 180, "emulator": 300, "vllm": 1800}
HPA_METRICS_TIMEOUT_S = 180  # adapter relist (1 m) + scrape (15 s) + HPA sync (15 s), with margin
HPA_POLL_INTERVAL_S = 5
# what `cluster up` checks the custom metrics API serves for the model server's pods (the HPAs' metrics)
SERVED_METRICS = ("num_requests_waiting", "kv_cache_usage_perc")


class ClusterKitError(HpaExpError):
    """A tool is missing, or the cluster is absent, unreachable or not ready."""

    exit_code = EXIT_PREFLIGHT


class StepFailed(HpaExpError):
    """A command of `cluster up/down` failed; the message names the step and what to try."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True)
class Step:
    title: str
    argv: tuple[str, ...]
    timeout_s: float = 120
    hint: str = ""
    skip_if_cluster_exists: bool = False
    # text for the command's stdin, built only when it runs (it may hold a secret)
    stdin: Callable[[], str] | None = field(default=None, repr=False, compare=False)
    stdin_note: str = ""

    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class KitSpec:
    """What `cluster up` builds: which model server, which HPA, where the manifests are."""

    manifests: Path
    name: str = "hpa-exp"
    variant: Variant = "emulator"
    hpa: HpaVariant = "none"  # the experiment's HPA is the one under test
    hpa_timeout_s: float = HPA_METRICS_TIMEOUT_S
    hf_token: bool = False  # $HF_TOKEN is set: store it as secret hf-token for gated models
    autoscaler: Autoscaler = "hpa"  # keda: KEDA instead of prometheus-adapter, a ScaledObject instead of the HPA

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    @property
    def hpa_name(self) -> str:
        """The HPA to check: the variant's, or the one KEDA creates for the variant's ScaledObject."""
        return f"keda-hpa-vllm-keda-{self.hpa}" if self.autoscaler == "keda" else f"vllm-hpa-{self.hpa}"

    def path(self, relative: str) -> str:
        return str(self.manifests / relative)


def find_manifests(explicit: Path | None = None) -> Path:
    """The manifests folder: --manifests, else ./manifests, else the one shipped with hpa-exp."""
    candidates = [explicit] if explicit else [Path("manifests"), kit_dir("manifests")]
    for candidate in candidates:
        if (candidate / "kind" / "cluster.yaml").is_file():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise ClusterKitError(
        f"no manifests folder found (tried {tried}); run from the hpa-exp repository or pass --manifests DIR"
    )


def require_tools(names: Sequence[str], which: Callable[[str], str | None] = shutil.which) -> None:
    missing = [name for name in names if which(name) is None]
    if missing:
        lines = [f"{name} not found on PATH. {INSTALL_HINTS[name]}" for name in missing]
        raise ClusterKitError("missing tools:\n" + "\n".join(f"  - {line}" for line in lines))


def _kubectl(spec: KitSpec, *args: str) -> tuple[str, ...]:
    return ("kubectl", "--context", spec.context, *args)


def _rollout(spec: KitSpec, namespace: str, deployment: str, timeout_s: int, hint: str) -> Step:
    return Step(
        f"Wait for deployment/{deployment} in {namespace}",
        _kubectl(spec, "-n", namespace, "rollout", "status", f"deployment/{deployment}", f"--timeout={timeout_s}s"),
        timeout_s=timeout_s + 30,
        hint=hint,
    )


def up_steps(spec: KitSpec) -> list[Step]:
    """Every command `cluster up` runs, in order (the HPA metrics check is polled)."""
    model_server = spec.path(f"model-server/{spec.variant}.yaml")
    pods_of = f"kubectl --context {spec.context} -n {NAMESPACE}"
    monitoring = f"kubectl --context {spec.context} -n {MONITORING_NAMESPACE}"
    steps = [
        Step(
            "Check that Docker is running",
            ("docker", "info", "--format", "{{.ServerVersion}}"),
            timeout_s=30,
            hint="Docker is installed but its daemon does not answer: start Docker (Docker Desktop, "
            "or `sudo systemctl start docker`) and retry.",
        ),
        Step(
            f"Create the kind cluster {spec.name}",
            (
                "kind",
                "create",
                "cluster",
                "--name",
                spec.name,
                "--config",
                spec.path("kind/cluster.yaml"),
                "--wait",
                "120s",
            ),
            timeout_s=600,
            hint=f"see kind's message above; `kind delete cluster --name {spec.name}` removes a half-created cluster.",
            skip_if_cluster_exists=True,
        ),
        Step("Create the namespace", _kubectl(spec, "apply", "-f", spec.path("namespace.yaml"))),
        *([hf_token_step(spec)] if spec.hf_token else []),
        Step(
            f"Install the model server ({spec.variant})",
            _kubectl(spec, "apply", "-f", spec.path("model-server/service.yaml"), "-f", model_server),
        ),
        Step("Install Prometheus", _kubectl(spec, "apply", "-f", spec.path("monitoring/prometheus.yaml"))),
        *(_keda_install_steps(spec) if spec.autoscaler == "keda" else [_adapter_install_step(spec)]),
        Step(
            "Install the hpa-exp runner RBAC",
            _kubectl(spec, "apply", "-f", spec.path("rbac/hpa-exp-runner.yaml")),
        ),
        _rollout(
            spec,
            MONITORING_NAMESPACE,
            "prometheus",
            ROLLOUT_TIMEOUT_S["prometheus"],
            f"{monitoring} describe pod -l app.kubernetes.io/name=prometheus",
        ),
        *(_keda_ready_steps(spec) if spec.autoscaler == "keda" else _adapter_ready_steps(spec, monitoring)),
        _rollout(
            spec,
            NAMESPACE,
            "vllm",
            ROLLOUT_TIMEOUT_S[spec.variant],
            f"{pods_of} describe pod -l {MODEL_SERVER_SELECTOR}; {pods_of} logs deployment/vllm",
        ),
    ]
    if spec.hpa != "none" and spec.autoscaler == "keda":
        steps.append(
            Step(
                f"Apply the ScaledObject vllm-keda-{spec.hpa} (KEDA creates {spec.hpa_name})",
                _kubectl(spec, "-n", NAMESPACE, "apply", "-f", spec.path(f"keda/scaledobject-vllm-{spec.hpa}.yaml")),
            )
        )
    elif spec.hpa != "none":
        steps.append(
            Step(
                f"Apply the HPA {spec.hpa_name}",
                _kubectl(spec, "-n", NAMESPACE, "apply", "-f", spec.path(f"hpa-vllm-{spec.hpa}.yaml")),
            )
        )
    return steps


def _adapter_install_step(spec: KitSpec) -> Step:
    return Step(
        "Install prometheus-adapter",
        _kubectl(spec, "apply", "-f", spec.path("monitoring/prometheus-adapter.yaml")),
    )


def _adapter_ready_steps(spec: KitSpec, monitoring: str) -> list[Step]:
    return [
        _rollout(
            spec,
            MONITORING_NAMESPACE,
            "prometheus-adapter",
            ROLLOUT_TIMEOUT_S["prometheus-adapter"],
            f"{monitoring} logs deployment/prometheus-adapter",
        ),
        Step(
            "Wait for the custom metrics API",
            _kubectl(spec, "wait", "--for=condition=Available", CUSTOM_METRICS_API, "--timeout=120s"),
            timeout_s=150,
            hint=f"kubectl --context {spec.context} describe {CUSTOM_METRICS_API}",
        ),
    ]


def _keda_install_steps(spec: KitSpec) -> list[Step]:
    return [
        Step(
            f"Install KEDA {KEDA_VERSION} (pinned release manifest)",
            _kubectl(spec, "apply", "--server-side", "-f", KEDA_RELEASE_URL),
            timeout_s=180,
            hint="kubectl downloads the manifest from GitHub: check the network; KEDA's support matrix lists "
            "the Kubernetes versions each release supports (kind's node image decides yours).",
        )
    ]


def _keda_ready_steps(spec: KitSpec) -> list[Step]:
    keda = f"kubectl --context {spec.context} -n {KEDA_NAMESPACE}"
    return [
        *(
            _rollout(spec, KEDA_NAMESPACE, name, ROLLOUT_TIMEOUT_S["keda"], f"{keda} logs deployment/{name}")
            for name in KEDA_DEPLOYMENTS
        ),
        Step(
            "Wait for the external metrics API (KEDA's metrics server)",
            _kubectl(spec, "wait", "--for=condition=Available", EXTERNAL_METRICS_API, "--timeout=120s"),
            timeout_s=150,
            hint=f"kubectl --context {spec.context} describe {EXTERNAL_METRICS_API}",
        ),
    ]


def hf_token_secret(token: str) -> str:
    """Secret hf-token (key `token`), read by the model servers for gated Hugging Face models."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "hf-token", "namespace": NAMESPACE},
            "type": "Opaque",
            "stringData": {"token": token},
        }
    )


def hf_token_step(spec: KitSpec) -> Step:
    # through stdin, so the token never appears in a command line, the process list or --dry-run
    return Step(
        "Store $HF_TOKEN as secret hf-token",
        _kubectl(spec, "apply", "-f", "-"),
        stdin=lambda: hf_token_secret(os.environ["HF_TOKEN"]),
        stdin_note="   (stdin: Secret hf-token built from $HF_TOKEN)",
    )


def hpa_check_step(spec: KitSpec) -> Step:
    return Step(
        f"Check that {spec.hpa_name} reports its metrics",
        _kubectl(spec, "-n", NAMESPACE, "get", "hpa", spec.hpa_name, "-o", "json"),
        timeout_s=30,
    )


def metrics_check_steps(spec: KitSpec) -> list[Step]:
    """Without an HPA: ask the custom metrics API for each metric the shipped HPAs use, as an HPA would."""
    return [
        Step(
            f"Check that the custom metrics API serves {metric} for the model server",
            _kubectl(
                spec,
                "get",
                "--raw",
                f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/"
                f"{metric}?labelSelector={MODEL_SERVER_SELECTOR}",
            ),
            timeout_s=30,
        )
        for metric in SERVED_METRICS
    ]


def down_steps(spec: KitSpec) -> list[Step]:
    return [Step(f"Delete the kind cluster {spec.name}", ("kind", "delete", "cluster", "--name", spec.name))]


# --- running ----------------------------------------------------------------------------


@dataclass
class Console:
    """Where progress goes (stdout by default; tests pass a list)."""

    write: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


def run_step(step: Step, capture: bool = False) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            step.argv,
            input=step.stdin() if step.stdin else None,
            capture_output=capture,
            text=True,
            timeout=step.timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{step.title}: timed out after {step.timeout_s:g} s: {step.command()}") from None
    except FileNotFoundError:
        raise ClusterKitError(f"{step.argv[0]} not found on PATH. {INSTALL_HINTS.get(step.argv[0], '')}") from None


def kind_clusters() -> list[str]:
    result = run_step(Step("List kind clusters", ("kind", "get", "clusters")), capture=True)
    return result.stdout.split() if result.returncode == 0 else []


def run_steps(steps: Sequence[Step], console: Console, cluster_name: str, total: int | None = None) -> None:
    """Run steps in order, stopping at the first failure; `total` counts steps that follow."""
    total = total or len(steps)
    for number, step in enumerate(steps, 1):
        console.write(f"[{number}/{total}] {step.title}")
        if step.skip_if_cluster_exists and cluster_name in kind_clusters():
            console.write(f"  kind cluster {cluster_name} already exists: skipped")
            continue
        console.write(f"  $ {step.command()}{step.stdin_note}")
        result = run_step(step)
        if result.returncode != 0:
            hint = f"\n  what to try: {step.hint}" if step.hint else ""
            raise StepFailed(
                f"step {number}/{total} '{step.title}' failed (exit code {result.returncode}):\n"
                f"  {step.command()}{hint}"
            )


def print_plan(steps: Sequence[Step], console: Console, cluster_name: str, checks: Sequence[Step] = ()) -> None:
    everything = [*steps, *checks]
    for number, step in enumerate(everything, 1):
        note = f" (skipped if kind cluster {cluster_name} exists)" if step.skip_if_cluster_exists else ""
        if step in checks:
            note = " (repeated until it has a value)"
        console.write(f"[{number}/{len(everything)}] {step.title}{note}")
        console.write(f"  $ {step.command()}{step.stdin_note}")


def up(spec: KitSpec, dry_run: bool = False, console: Console | None = None) -> None:
    console = console or Console()
    steps = up_steps(spec)
    if spec.hpa != "none":
        checks = [hpa_check_step(spec)]
    else:  # KEDA serves its metrics only for a ScaledObject: its rollout is the check
        checks = [] if spec.autoscaler == "keda" else metrics_check_steps(spec)
    if dry_run:
        console.write(f"Dry run: the steps of `hpa-exp cluster up` for kind cluster {spec.name} (nothing runs).")
        print_plan(steps, console, spec.name, checks)
        _notes(spec, console)
        return
    require_tools(["docker", "kind", "kubectl"])
    _notes(spec, console)
    total = len(steps) + len(checks)
    run_steps(steps, console, spec.name, total)
    for number, check in enumerate(checks, len(steps) + 1):
        console.write(f"[{number}/{total}] {check.title}")
        if spec.hpa != "none":
            wait_for_hpa_metrics(spec, check, console)
        else:
            wait_for_served_metric(spec, check, console)
    console.write(f"Cluster {spec.name} is ready (kubectl context {spec.context}).")
    console.write("Prometheus: http://127.0.0.1:9090   Next: docs/kind-quickstart.md")


def _notes(spec: KitSpec, console: Console) -> None:
    if not spec.hf_token and spec.variant == "vllm":
        console.write(
            "note: $HF_TOKEN is not set, so no hf-token secret is stored.  Llama models are gated on "
            "Hugging Face (vLLM needs the weights): export HF_TOKEN=hf_... and "
            f"rerun `hpa-exp cluster up`, then `kubectl --context {spec.context} -n {NAMESPACE} "
            "rollout restart deployment/vllm`."
        )
    if spec.hpa != "none":
        console.write(
            f"note: --hpa {spec.hpa} applies {spec.hpa_name}; an experiment that applies another HPA to the "
            f"same Deployment is refused by its preflight (two HPAs disable each other): delete it first with "
            f"`kubectl --context {spec.context} -n {NAMESPACE} delete hpa {spec.hpa_name}`."
        )
    if spec.variant == "vllm":
        console.write("note: the vllm variant needs a GPU on the kind node (e.g. a cluster made with nvkind).")


def down(spec: KitSpec, dry_run: bool = False, console: Console | None = None) -> None:
    console = console or Console()
    steps = down_steps(spec)
    if dry_run:
        print_plan(steps, console, spec.name)
        return
    require_tools(["docker", "kind"])
    if spec.name not in kind_clusters():
        console.write(f"No kind cluster named {spec.name}: nothing to delete.")
        return
    run_steps(steps, console, spec.name)


# --- the HPA metrics check --------------------------------------------------------------


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


def hpa_troubleshooting(spec: KitSpec, metric: str) -> list[str]:
    if spec.autoscaler == "keda":
        return [
            "what to check, in order:",
            f"  1. the ScaledObject: kubectl --context {spec.context} -n {NAMESPACE} describe scaledobject "
            f"vllm-keda-{spec.hpa} (Ready, Active, events)",
            f"  2. KEDA's operator: kubectl --context {spec.context} -n {KEDA_NAMESPACE} logs deployment/keda-operator",
            f"  3. the metric KEDA serves: kubectl --context {spec.context} get --raw "
            f'"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{metric}'
            f'?labelSelector=scaledobject.keda.sh%2Fname%3Dvllm-keda-{spec.hpa}"',
            f"  4. HPA events: kubectl --context {spec.context} -n {NAMESPACE} describe hpa {spec.hpa_name}",
        ]
    return [
        "what to check, in order:",
        f"  1. Prometheus has the series: open http://127.0.0.1:9090 and query vllm:{metric}",
        f"  2. the adapter serves it: kubectl --context {spec.context} get --raw "
        f'"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods/*/{metric}"',
        f"  3. adapter logs: kubectl --context {spec.context} -n {MONITORING_NAMESPACE} "
        "logs deployment/prometheus-adapter",
        *(
            [f"  4. HPA events: kubectl --context {spec.context} -n {NAMESPACE} describe hpa {spec.hpa_name}"]
            if spec.hpa != "none"
            else []
        ),
        "  (a new adapter discovers metric names on its 1-minute relist: a first <unknown> is normal)",
    ]


def wait_for_hpa_metrics(
    spec: KitSpec, check: Step, console: Console, sleep: Callable[[float], None] = time.sleep
) -> None:
    console.write(f"  $ {check.command()}")
    deadline = time.monotonic() + spec.hpa_timeout_s
    missing_metric = "num_requests_waiting"
    while True:
        result = run_step(check, capture=True)
        if result.returncode == 0:
            hpa = json.loads(result.stdout)
            problems = hpa_metric_problems(hpa)
            if not problems:
                console.write("  HPA metrics: " + ", ".join(describe_current_metrics(hpa)))
                return
            missing_metric = problems[0].split(":")[0]
        else:
            problems = [result.stderr.strip() or f"kubectl exited with {result.returncode}"]
        if time.monotonic() >= deadline:
            break
        console.write(f"  waiting for metrics: {problems[0]}")
        sleep(HPA_POLL_INTERVAL_S)
    raise ClusterKitError(
        f"the HPA {spec.hpa_name} has no metric values after {spec.hpa_timeout_s:g} s:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + "\n"
        + "\n".join(hpa_troubleshooting(spec, missing_metric))
    )


def wait_for_served_metric(
    spec: KitSpec, check: Step, console: Console, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll the custom metrics API until it has a value for a model-server pod (the adapter relists
    its metric names every minute, so the first answers may be 404)."""
    metric = check.argv[-1].split("?")[0].rsplit("/", 1)[1]
    console.write(f"  $ {check.command()}")
    deadline = time.monotonic() + spec.hpa_timeout_s
    while True:
        result = run_step(check, capture=True)
        if result.returncode == 0:
            items = json.loads(result.stdout or "{}").get("items") or []
            if items:
                values = ", ".join(f"{i['describedObject']['name']} = {i['value']}" for i in items)
                console.write(f"  {metric}: {values}")
                return
            problem = "no value for any model-server pod yet"
        else:
            problem = result.stderr.strip() or f"kubectl exited with {result.returncode}"
        if time.monotonic() >= deadline:
            break
        console.write(f"  waiting for {metric}: {problem}")
        sleep(HPA_POLL_INTERVAL_S)
    raise ClusterKitError(
        f"the custom metrics API serves no {metric} for the model server after {spec.hpa_timeout_s:g} s: "
        f"{problem}\n" + "\n".join(hpa_troubleshooting(spec, metric))
    )


# --- status -------------------------------------------------------------------------------


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
