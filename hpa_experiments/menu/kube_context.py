"""The current Kubernetes context, read from the kubeconfig file only (no network, no preflight)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

NO_CLUSTER = "no cluster: simulation available"


@dataclass(frozen=True)
class KubeContext:
    name: str
    cluster: str
    kubeconfig: str


def kubeconfig_path() -> Path:
    """The first file of $KUBECONFIG, else ~/.kube/config (as kubectl does for the current context)."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(listed[0] if listed else "~/.kube/config").expanduser()


def current_context() -> KubeContext | None:
    """The kubeconfig's current context, or None when there is no usable kubeconfig."""
    path = kubeconfig_path()
    if not path.is_file():
        return None  # skip importing the kubernetes client at all
    from kubernetes.config import list_kube_config_contexts

    try:
        _, active = list_kube_config_contexts(config_file=str(path))
    except Exception:  # a malformed kubeconfig means "no cluster" here; `run` reports the details
        return None
    if not active:
        return None
    cluster = str((active.get("context") or {}).get("cluster", ""))
    return KubeContext(name=str(active.get("name", "")), cluster=cluster, kubeconfig=str(path))


def describe(context: KubeContext | None) -> str:
    if context is None:
        return NO_CLUSTER
    return f"kubernetes context {context.name} (cluster {context.cluster}, {context.kubeconfig})"
