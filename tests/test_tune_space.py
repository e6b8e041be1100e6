"""`hpa-exp tune`'s search space: paths into the HPA / ScaledObject, values, and the errors (exit 2,
naming the file and the key) for a space that cannot run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.errors import ConfigError
from hpa_experiments.manifests import load_manifest
from hpa_experiments.tune.space import apply_point, load_space

REPO = Path(__file__).resolve().parents[1]
HPA = load_manifest(REPO / "manifests" / "hpa-vllm-combined.yaml")
KEDA = load_manifest(REPO / "manifests" / "keda" / "scaledobject-vllm-combined.yaml")
CONFIG = REPO / "experiment-configs" / "high-load-hpa.yaml"


def write(folder: Path, doc: object) -> Path:
    path = folder / "space.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_hpa_paths_set_metric_targets_replicas_windows_and_policies() -> None:
    doc = apply_point(
        HPA,
        {
            "metrics[num_requests_waiting].target": 5,
            "metrics[kv_cache_usage_perc].target": 0.7,
            "maxReplicas": 6,
            "behavior.scaleDown.stabilizationWindowSeconds": 120,
            "behavior.scaleUp.policies[1].value": 2,
        },
    )
    spec = doc["spec"]
    assert spec["metrics"][0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "5"}
    assert spec["metrics"][1]["pods"]["target"]["averageValue"] == "0.7"
    assert spec["maxReplicas"] == 6
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    assert spec["behavior"]["scaleUp"]["policies"][1] == {"type": "Pods", "value": 2, "periodSeconds": 15}
    assert HPA["spec"]["maxReplicas"] == 10  # the original is not touched


def test_keda_paths_set_thresholds_polling_cooldown_and_replica_counts() -> None:
    doc = apply_point(
        KEDA,
        {
            "triggers[num_requests_waiting].threshold": 10,
            "triggers[0].activationThreshold": 2,
            "pollingInterval": 15,
            "cooldownPeriod": 60,
            "minReplicaCount": 0,
            "maxReplicaCount": 8,
        },
    )
    spec = doc["spec"]
    assert spec["triggers"][0]["metadata"]["threshold"] == "10"
    assert spec["triggers"][0]["metadata"]["activationThreshold"] == "2"
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (15, 60)
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (0, 8)


def test_grid_ranges_and_a_seeded_random_search(tmp_path: Path) -> None:
    grid = load_space(
        write(
            tmp_path,
            {"name": "g", "parameters": {"maxReplicas": {"min": 4, "max": 10, "step": 3}, "minReplicas": [1, 2]}},
        )
    )
    assert [p.values for p in grid.points] == [{"maxReplicas": m, "minReplicas": n} for m in (4, 7, 10) for n in (1, 2)]
    spec = {
        "name": "r",
        "search": "random",
        "samples": 5,
        "seed": 3,
        "parameters": {
            "maxReplicas": {"min": 4, "max": 40},
            "behavior.scaleDown.stabilizationWindowSeconds": [0, 60, 300],
        },
    }
    first, again = load_space(write(tmp_path, spec)), load_space(write(tmp_path, spec))
    assert [p.values for p in first.points] == [p.values for p in again.points]  # the seed fixes the draw
    assert len(first.points) == 5 and len({repr(p.values) for p in first.points}) == 5
    assert all(4 <= p.values["maxReplicas"] <= 40 and isinstance(p.values["maxReplicas"], int) for p in first.points)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"name": "x", "parameters": {"maxReplicas": [4]}, "serch": "grid"}, "serch: Extra inputs are not permitted"),
        ({"name": "x", "parameters": {}}, "parameters: Dictionary should have at least 1 item"),
        ({"name": "x", "parameters": {"maxReplicas": []}}, "parameters.maxReplicas: give at least one value"),
        (
            {"name": "x", "parameters": {"maxReplicas": {"min": 9, "max": 2, "step": 1}}},
            "parameters.maxReplicas: min 9.0 is above max 2.0",
        ),
        (
            {"name": "x", "parameters": {"maxReplicas": {"min": 2, "max": 9}}},
            "parameters.maxReplicas: a grid needs a list",
        ),
        ({"name": "x", "search": "random", "parameters": {"maxReplicas": [3]}}, "samples: required for search: random"),
        ({"name": "x", "parameters": {"metrics[0]..target": [3]}}, "parameters.metrics[0]..target: '' is not a key"),
        (
            {"name": "x", "seeds": 1, "parameters": {"maxReplicas": [3]}},
            "seeds: Input should be greater than or equal to 2",
        ),
    ],
)
def test_a_bad_space_file_names_the_key(tmp_path: Path, space: dict, message: str) -> None:
    path = write(tmp_path, space)
    with pytest.raises(ConfigError) as caught:
        load_space(path)
    assert str(path) in str(caught.value) and message in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"metrics[gpu_busy].target": [3]},
            "point 0 (metrics[gpu_busy].target=3): spec.metrics has no entry named 'gpu_busy' "
            "(names: kv_cache_usage_perc, num_requests_waiting)",
        ),
        (
            {"behavior.scaleUp.policies[5].value": [3]},
            "spec.behavior.scaleUp.policies has 2 entries; [5] does not exist",
        ),
        ({"minReplicas": [1, 12]}, "point 1 (minReplicas=12): hpa.manifest:"),
        ({"behavior.scaleDown.stabilizationWindowSeconds": [-5]}, "stabilizationWindowSeconds"),
    ],
)
@pytest.mark.slow
def test_a_point_the_hpa_refuses_stops_the_search_with_exit_2_before_any_run(
    tmp_path: Path, parameters: dict, message: str
) -> None:
    space = write(tmp_path, {"name": "bad", "parameters": parameters})
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "tune", str(CONFIG), str(space), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "tunes" / "bad" / "runs").exists()


@pytest.mark.slow
def test_a_config_without_slo_thresholds_is_refused(tmp_path: Path) -> None:
    doc = yaml.safe_load(CONFIG.read_text())
    doc["slo"] = {}
    doc["hpa"]["manifest"] = str(REPO / "manifests" / "hpa-vllm-combined.yaml")
    config = tmp_path / "noslo.yaml"
    config.write_text(yaml.safe_dump(doc))
    space = write(tmp_path, {"name": "s", "parameters": {"maxReplicas": [4]}})
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "tune", str(config), str(space), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2 and "slo: set ttft_ms and/or itl_ms" in done.stderr, done.stderr


@pytest.mark.slow
def test_the_shipped_keda_random_search_validates_every_point() -> None:
    """The example space over a ScaledObject: 8 points drawn, each checked as the experiment's manifest."""
    done = subprocess.run(
        [
            sys.executable, "-m", "hpa_experiments", "tune",
            str(REPO / "experiment-configs" / "high-load-keda.yaml"),
            str(REPO / "experiment-configs" / "tune" / "high-load-keda-random.yaml"),
            "--check",
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "tune high-load-keda-random: 8 points x 3 seeds" in done.stdout
    assert done.stdout.count("  point ") == 8 and "triggers[num_requests_waiting].threshold=" in done.stdout


def test_a_key_the_manifest_lacks_is_added_only_when_it_is_an_optional_field() -> None:
    bare = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "spec": {"maxReplicas": 5}}
    doc = apply_point(bare, {"behavior.scaleDown.stabilizationWindowSeconds": 60, "minReplicas": 2})
    assert doc["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 60}}
    with pytest.raises(ValueError, match=r"spec\.maxReplica is not in the manifest .* \(did you mean maxReplicas\?\)"):
        apply_point(bare, {"maxReplica": 6})
    with pytest.raises(ValueError, match=r"spec\.behaviour is not in the manifest .* \(did you mean behavior\?\)"):
        apply_point(bare, {"behaviour.scaleDown.stabilizationWindowSeconds": 6})
