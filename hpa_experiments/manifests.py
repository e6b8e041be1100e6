"""Reading Kubernetes manifests named by a config: Job templates and the HPA.

Job manifests may be templates: `${name}` placeholders in their string values, filled
from the config's values, so one file serves every rate.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from hpa_experiments.yaml_io import InputFileError, describe_yaml_error, load_yaml_all, read_input_text

DEFAULT_SCALE_DOWN_STABILIZATION_S = 300.0


class ManifestError(ValueError):
    """A manifest file is missing, unreadable, or not the kind of object expected."""


def read_text(path: Path) -> str:
    try:
        return read_input_text(path)
    except InputFileError as exc:
        raise ManifestError(f"{exc}: {path}" if str(exc) == "file not found" else f"{path}: {exc}") from None


_PLACEHOLDER = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${name}; $${name} is a literal


def template_placeholders(doc: Any) -> set[str]:
    """Names used as ${name} in the string values of a parsed manifest (comments do not count)."""
    return {m.group(2) for text in _strings(doc) for m in _PLACEHOLDER.finditer(text) if not m.group(1)}


def render_template(doc: Any, values: Mapping[str, Any]) -> Any:
    """A copy of the parsed manifest with its placeholders filled.

    Values go into the YAML tree, never into its text, so no value can change the manifest's
    structure.  A string that is exactly one placeholder takes the value with its type (a
    number stays a number); otherwise the value is written into the string.  `$(VAR)` and
    `$VAR` (Kubernetes and shell expansion) are left alone.  A missing value is a
    ManifestError naming it.
    """
    missing = sorted(template_placeholders(doc) - set(values))
    if missing:
        raise ManifestError("template needs values for: " + ", ".join(missing))

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        if not isinstance(node, str):
            return node
        whole = _PLACEHOLDER.fullmatch(node)
        if whole and not whole.group(1):
            return values[whole.group(2)]
        return _PLACEHOLDER.sub(lambda m: "${" + m.group(2) + "}" if m.group(1) else _text(values[m.group(2)]), node)

    return fill(doc)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in _strings(item)]
    return [node] if isinstance(node, str) else []


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load_manifest(path: Path) -> dict[str, Any]:
    """The single Kubernetes object in the file at `path` (a template is not filled here)."""
    return parse_single_document(read_text(path), str(path))


def parse_single_document(text: str, source: str) -> dict[str, Any]:
    try:
        docs = [d for d in load_yaml_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestError(f"{source}: not valid YAML: {describe_yaml_error(exc)}") from None
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise ManifestError(f"{source}: must hold exactly one Kubernetes object (found {len(docs)})")
    return docs[0]


def check_job_manifest(doc: Mapping[str, Any], source: str) -> None:
    """Only batch/v1 Jobs may be applied as load generators."""
    api, kind = doc.get("apiVersion"), doc.get("kind")
    if api != "batch/v1" or kind != "Job":
        raise ManifestError(f"{source}: must be a batch/v1 Job (found {api or '?'} {kind or '?'})")
    containers = (doc.get("spec") or {}).get("template", {}).get("spec", {}).get("containers")
    if not containers:
        raise ManifestError(f"{source}: the Job has no spec.template.spec.containers")


def namespace_mismatch(doc: Mapping[str, Any], namespace: str, origin: str) -> str | None:
    """Why `doc` may not be applied in the run's `namespace` (None when it names none or the same).

    A run uses one namespace, decided once: were the manifest's own namespace applied, the run
    would watch an HPA (or Jobs) in one namespace and create them in another."""
    theirs = (doc.get("metadata") or {}).get("namespace")
    if theirs is None or theirs == namespace:
        return None
    return (
        f"metadata.namespace is {theirs!r} but the run's namespace is {namespace!r} ({origin}); "
        "a run uses one namespace: remove metadata.namespace from the manifest or make the two equal"
    )


def load_hpa_manifest(path: Path) -> dict[str, Any]:
    return load_manifest(path)


def hpa_problems(doc: Mapping[str, Any], deployment: str) -> list[str]:
    """What makes `doc` unusable as the experiment's HPA (empty when fine)."""
    problems = []
    if doc.get("apiVersion") != "autoscaling/v2" or doc.get("kind") != "HorizontalPodAutoscaler":
        problems.append(
            "must be an autoscaling/v2 HorizontalPodAutoscaler "
            f"(found {doc.get('apiVersion') or '?'} {doc.get('kind') or '?'})"
        )
        return problems
    if not (doc.get("metadata") or {}).get("name"):
        problems.append("metadata.name is required")
    spec = doc.get("spec") or {}
    target = spec.get("scaleTargetRef") or {}
    if target.get("kind") != "Deployment" or target.get("name") != deployment:
        problems.append(
            f"spec.scaleTargetRef must be the Deployment '{deployment}' "
            f"(found {target.get('kind') or '?'} '{target.get('name') or '?'}')"
        )
    lo, hi = spec.get("minReplicas", 1), spec.get("maxReplicas")
    if not isinstance(hi, int) or hi < 1:
        problems.append("spec.maxReplicas must be a positive integer")
    elif not isinstance(lo, int) or lo < 0 or lo > hi:
        problems.append(f"spec.minReplicas must be between 0 and maxReplicas ({hi})")
    if not spec.get("metrics"):
        problems.append("spec.metrics is empty: the HPA would scale on CPU, which says nothing about vLLM")
    return problems


def scale_down_stabilization_s(hpa: Mapping[str, Any] | None) -> float:
    """behavior.scaleDown.stabilizationWindowSeconds, or the controller default (300 s)."""
    if not hpa:
        return DEFAULT_SCALE_DOWN_STABILIZATION_S
    window = (((hpa.get("spec") or {}).get("behavior") or {}).get("scaleDown") or {}).get("stabilizationWindowSeconds")
    return float(window) if isinstance(window, (int, float)) else DEFAULT_SCALE_DOWN_STABILIZATION_S


_RATE_ARG = re.compile(r"--request-rate[= ]+([0-9.]+)")


def request_rate_from_job(doc: Mapping[str, Any]) -> float | None:
    """The `--request-rate R` of a `vllm bench serve` Job, if its args carry one."""
    spec = (doc.get("spec") or {}).get("template", {}).get("spec", {})
    for container in spec.get("containers") or []:
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        match = _RATE_ARG.search(" ".join(words))
        if match:
            return float(match.group(1))
    return None
