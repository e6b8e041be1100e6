"""The kind kit's steps: the spec of what `cluster up` builds and each command as an argument list.

Every step is a plain argument list run without a shell, so `--dry-run` can print exactly
what would run.  All kubectl calls name the kind context explicitly.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
KEDA_VERSION = "2.21.0"  # the release the test bed builds and runs (testbed/keda)
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
