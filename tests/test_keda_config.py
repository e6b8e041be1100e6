"""The `autoscaler:` section and ScaledObject validation: exact messages with file and key paths."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpa_experiments.config import load_config
from hpa_experiments.errors import ConfigError
from hpa_experiments.scaledobject import scaled_object_problems

REPO = Path(__file__).resolve().parents[1]
SCALED_OBJECT = yaml.safe_load((REPO / "manifests" / "keda" / "scaledobject-vllm-combined.yaml").read_text())


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "hpa.yaml").write_text((REPO / "manifests" / "hpa-vllm-combined.yaml").read_text())
    return tmp_path


def config(**autoscaler: Any) -> dict[str, Any]:
    return {"name": "exp", "autoscaler": autoscaler, "jobs": [{"name": "a", "rate": 10, "duration": 60}]}


def write(workspace: Path, doc: Any, name: str) -> Path:
    path = workspace / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def problems_of(workspace: Path, so: dict[str, Any]) -> list[str]:
    write(workspace, so, "manifests/so.yaml")
    path = write(workspace, config(kind="keda", manifest="../manifests/so.yaml"), "configs/exp.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_autoscaler_kind_hpa_is_the_hpa_section(workspace: Path) -> None:
    old = {
        "name": "exp",
        "hpa": {"manifest": "../manifests/hpa.yaml", "remove_after": False},
        "jobs": [{"name": "a", "rate": 10, "duration": 60}],
    }
    new = config(kind="hpa", manifest="../manifests/hpa.yaml", remove_after=False)
    a = load_config(write(workspace, old, "configs/old.yaml"))
    b = load_config(write(workspace, new, "configs/new.yaml"))
    assert a.hpa == b.hpa and a.hpa_manifest == b.hpa_manifest and b.hpa_name == "vllm-hpa-combined"
    assert a.autoscaler_kind == b.autoscaler_kind == "hpa" and b.scaled_object is None


def test_both_sections_are_refused(workspace: Path) -> None:
    doc = {**config(kind="hpa", manifest="../manifests/hpa.yaml"), "hpa": {"manifest": "../manifests/hpa.yaml"}}
    with pytest.raises(ConfigError) as info:
        load_config(write(workspace, doc, "configs/exp.yaml"))
    assert info.value.problems == ["(top level): give 'autoscaler' or 'hpa' (its older spelling), not both"]


def test_keda_config_derives_kedas_hpa(workspace: Path) -> None:
    write(workspace, SCALED_OBJECT, "manifests/so.yaml")
    loaded = load_config(write(workspace, config(kind="keda", manifest="../manifests/so.yaml"), "configs/exp.yaml"))
    assert loaded.autoscaler_kind == "keda" and loaded.scaled_object == SCALED_OBJECT
    assert loaded.hpa_name == "keda-hpa-vllm-keda-combined"
    assert loaded.hpa.apply is False  # KEDA creates its HPA; the run never applies it
    spec = loaded.hpa_manifest["spec"]  # type: ignore[index]
    assert spec["minReplicas"] == 1 and spec["maxReplicas"] == 10
    assert [m["external"]["target"] for m in spec["metrics"]] == [
        {"type": "AverageValue", "averageValue": "20000m"},
        {"type": "AverageValue", "averageValue": "500m"},
    ]
    assert spec["behavior"] == SCALED_OBJECT["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert "scaled_object" not in loaded.resolved_dict()


def test_keda_manifest_is_required(workspace: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(workspace, config(kind="keda"), "configs/exp.yaml"))
    assert info.value.problems == ["autoscaler.manifest: is required for kind keda (the ScaledObject)"]


def edited(path: str, value: Any) -> dict[str, Any]:
    """SCALED_OBJECT with one key set (dotted path; [i] for list items; value None deletes the key)."""
    doc = copy.deepcopy(SCALED_OBJECT)
    parts = path.replace("[", ".[").split(".")
    node: Any = doc
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    last = parts[-1]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "problem"),
    [
        (
            "spec.triggers[0].metadata.threshold",
            20,
            "spec.triggers[0].metadata.threshold: must be a string (KEDA's metadata is a map of strings): "
            "write '20' in quotes",
        ),
        (
            "spec.triggers[0].metadata.threshold",
            "lots",
            "spec.triggers[0].metadata.threshold: must be a number >= 0.001 (got 'lots')",
        ),
        (
            "spec.triggers[1].metadata.activationThreshold",
            "x",
            "spec.triggers[1].metadata.activationThreshold: must be a number (got 'x')",
        ),
        ("spec.triggers[0].metadata.query", None, "spec.triggers[0].metadata.query: is required"),
        (
            "spec.triggers[0].metricType",
            "Utilization",
            "spec.triggers[0].metricType: must be AverageValue or Value (got 'Utilization')",
        ),
        ("spec.triggers[0].type", "cpu", "spec.triggers[0].type: only 'prometheus' triggers are supported (got 'cpu')"),
        ("spec.coolDownPeriod", 60, "spec.coolDownPeriod: unknown key; did you mean 'cooldownPeriod'?"),
        ("spec.pollingInterval", 0, "spec.pollingInterval: must be an integer >= 1 (got 0)"),
        ("spec.cooldownPeriod", "5m", "spec.cooldownPeriod: must be an integer >= 0 (got '5m')"),
        ("spec.minReplicaCount", 11, "spec.minReplicaCount: 11 must not be greater than maxReplicaCount (10)"),
        ("spec.idleReplicaCount", 1, "spec.idleReplicaCount: KEDA supports only 0 (got 1)"),
        (
            "spec.scaleTargetRef.name",
            "other",
            "spec.scaleTargetRef: must be the Deployment 'vllm' (found Deployment 'other')",
        ),
        (
            "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies",
            [],
            "spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.policies must specify at least one policy",
        ),
        (
            "spec.advanced.scalingModifiers",
            {"formula": "s0 + s1"},
            "spec.advanced.scalingModifiers: scaling modifiers (formula over triggers) are not modelled by hpa-exp",
        ),
        (
            "kind",
            "HorizontalPodAutoscaler",
            "must be a keda.sh/v1alpha1 ScaledObject (found keda.sh/v1alpha1 HorizontalPodAutoscaler)",
        ),
    ],
)
def test_scaled_object_problems_name_the_key(workspace: Path, path: str, value: Any, problem: str) -> None:
    assert problems_of(workspace, edited(path, value)) == [f"autoscaler.manifest: {problem}"]


def test_idle_replica_count_must_be_below_min(workspace: Path) -> None:
    doc = edited("spec.idleReplicaCount", 0)
    doc["spec"]["minReplicaCount"] = 0
    assert problems_of(workspace, doc) == [
        "autoscaler.manifest: spec.idleReplicaCount: must be less than minReplicaCount (0)"
    ]


def test_fallback_needs_average_value_triggers(workspace: Path) -> None:
    doc = edited("spec.fallback", {"failureThreshold": 3, "replicas": 4})
    doc["spec"]["triggers"][1]["metricType"] = "Value"
    assert problems_of(workspace, doc) == [
        "autoscaler.manifest: spec.triggers[1].metricType: fallback works only with AverageValue triggers (got 'Value')"
    ]
    assert problems_of(workspace, edited("spec.fallback", {"replicas": 4})) == [
        "autoscaler.manifest: spec.fallback.failureThreshold: is required, an integer >= 0 (got None)"
    ]


def test_bad_promql_is_named(workspace: Path) -> None:
    problems = problems_of(workspace, edited("spec.triggers[0].metadata.query", "sum(rate(x[1m])"))
    assert len(problems) == 1 and problems[0].startswith(
        "autoscaler.manifest: spec.triggers[0].metadata.query: not valid PromQL:"
    )


def test_validate_command_exits_2_and_names_file_and_key(workspace: Path) -> None:
    write(workspace, edited("spec.triggers[0].metadata.threshold", 20), "manifests/so.yaml")
    path = write(workspace, config(kind="keda", manifest="../manifests/so.yaml"), "configs/exp.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "validate", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert str(path) in done.stdout + done.stderr
    assert "autoscaler.manifest: spec.triggers[0].metadata.threshold: must be a string" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_shipped_keda_configs_and_manifests_validate() -> None:
    for name in ("high-load-keda.yaml", "scale-to-zero-keda.yaml"):
        assert load_config(REPO / "experiment-configs" / name).autoscaler_kind == "keda"


@pytest.mark.parametrize("path", sorted((REPO / "manifests" / "keda").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scaled_objects_are_valid(path: Path) -> None:
    """manifests/keda/ holds CRD objects, which kubernetes-validate has no schema for: checked here."""
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert scaled_object_problems(doc, "vllm") == []
    assert doc["metadata"]["namespace"] == "hpa-exp"
    assert all(isinstance(v, str) for t in doc["spec"]["triggers"] for v in t["metadata"].values())


def test_kind_hpa_problems_name_the_autoscaler_section(workspace: Path) -> None:
    write(workspace, SCALED_OBJECT, "manifests/so.yaml")
    path = write(workspace, config(kind="hpa", manifest="../manifests/so.yaml"), "configs/exp.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        "autoscaler.manifest: must be an autoscaling/v2 HorizontalPodAutoscaler (found keda.sh/v1alpha1 ScaledObject)"
    ]
    with pytest.raises(ConfigError) as info:
        load_config(write(workspace, config(kind="hpa"), "configs/exp.yaml"))
    assert info.value.problems == ["autoscaler: give 'manifest' (the HPA to apply or simulate) or at least 'name'"]
