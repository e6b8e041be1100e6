"""Profile memory: the KV capacity follows from GPU memory, weights and KV bytes; a model that does not fit is a
config error that shows the numbers (the messages are documented in docs/twin-calibration.md)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.backends.factory import BackendOptions, make_backend
from hpa_experiments.backends.sim.serving import Replica
from hpa_experiments.config import load_config
from hpa_experiments.errors import ConfigError
from hpa_experiments.plan import build_plan
from hpa_experiments.twin_profiles import load_profile

REPO = Path(__file__).resolve().parents[1]
JOB_TEMPLATE = REPO / "workloads" / "vllm-bench-serve.yaml"
PREFIX = "simulation profile 'llama-3.1-8b-h100': "


def config_file(folder: Path, parameters: dict) -> Path:
    config = {
        "name": "memory",
        "backend": "simulation",
        "hpa": {"enabled": False},
        "jobs": [{"name": "only", "rate": 5, "duration": 30, "manifest": str(JOB_TEMPLATE)}],
        "simulation": {"seed": 1, "parameters": parameters},
        "output": {"base_dir": str(folder / "runs")},
    }
    path = folder / "memory.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_shipped_profile_derives_its_kv_cache_from_h100_memory() -> None:
    profile = load_profile()
    assert profile.kv_capacity_tokens is None
    left = 79.65 * 1 * 0.9 - profile.model_weights_gib
    expected = math.floor(left * 2**30 / 131_072) // 16 * 16
    assert profile.kv_capacity == expected == 464_704
    assert profile.kv_blocks == 29_044
    assert Replica(profile).usable_blocks == 29_043


def test_more_gpus_per_replica_and_a_higher_utilization_give_more_tokens() -> None:
    one = load_profile().kv_capacity
    two = load_profile(overrides={"gpus_per_replica": 2}).kv_capacity
    assert two == math.floor((79.65 * 2 * 0.9 - 14.9575) * 2**30 / 131_072) // 16 * 16
    assert two > 2 * one  # the weights are paid once
    assert load_profile(overrides={"gpu_memory_utilization": 0.95}).kv_capacity > one


def test_an_explicit_capacity_wins_when_it_fits() -> None:
    profile = load_profile(overrides={"kv_capacity_tokens": 100_000})
    assert profile.kv_capacity == 100_000 and profile.kv_blocks == 6_250
    assert profile.kv_cache_facts()["source"] == "kv_capacity_tokens"


def test_a_model_that_does_not_fit_is_a_config_error_with_the_numbers() -> None:
    with pytest.raises(ConfigError) as error:
        load_profile(overrides={"model_weights_gib": 140.0})
    assert error.value.problems == [
        PREFIX + "the model does not fit: 140.0 GiB of weights > 79.65 GiB x 1 GPU x 0.9 = 71.7 GiB usable"
    ]
    with pytest.raises(ConfigError) as error:
        load_profile(overrides={"model_weights_gib": 140.0, "gpus_per_replica": 2, "gpu_memory_utilization": 0.5})
    assert error.value.problems == [
        PREFIX + "the model does not fit: 140.0 GiB of weights > 79.65 GiB x 2 GPUs x 0.5 = 79.7 GiB usable"
    ]


def test_a_cache_smaller_than_one_longest_sequence_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        load_profile(overrides={"model_weights_gib": 71.5})
    assert error.value.problems == [
        PREFIX + "the KV cache cannot hold one sequence of max_total_len 2,048 tokens: 79.65 GiB x 1 GPU x 0.9 "
        "= 71.7 GiB usable - 71.50 GiB of weights leaves 0.19 GiB = 1,504 tokens at 131,072 bytes per token"
    ]


def test_an_explicit_capacity_larger_than_the_memory_left_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as error:
        load_profile(overrides={"kv_capacity_tokens": 467_280})
    assert error.value.problems == [
        PREFIX + "kv_capacity_tokens 467,280 needs 57.04 GiB at 131,072 bytes per token, but 79.65 GiB x 1 GPU "
        "x 0.9 = 71.7 GiB usable - 14.96 GiB of weights leaves 56.73 GiB"
    ]
    assert load_profile(overrides={"kv_capacity_tokens": 467_280, "gpu_memory_gib": 80.0}).kv_capacity == 467_280


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("gpus_per_replica", 0),
        ("gpu_memory_utilization", 1.2),
        ("model_weights_gib", -1.0),
        ("kv_bytes_per_token", 0),
        ("kv_capacity_tokens", "many"),
    ],
)
def test_bad_memory_fields_are_config_errors(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_profile(overrides={key: value})


def test_run_json_records_the_derived_capacity(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, {"gpus_per_replica": 2}))
    backend, _ = make_backend("simulation", config, build_plan(config), "r1", BackendOptions())
    facts = backend.describe()["kv_cache"]
    assert facts["source"] == "derived from memory"
    assert facts["capacity_tokens"] == load_profile(overrides={"gpus_per_replica": 2}).kv_capacity
    assert facts["kv_cache_gib"] <= facts["left_after_weights_gib"] < facts["kv_cache_gib"] + 16 * 131_072 / 2**30


def test_the_cli_refuses_a_model_that_does_not_fit_without_writing_anything(tmp_path: Path) -> None:
    path = config_file(tmp_path, {"model_weights_gib": 140.0})
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "run", str(path), "--backend", "sim"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2
    output = done.stdout + done.stderr
    expected = PREFIX + "the model does not fit: 140.0 GiB of weights > 79.65 GiB x 1 GPU x 0.9 = 71.7 GiB usable"
    assert expected in " ".join(output.split())  # the console may wrap long lines
    assert "Traceback" not in output
    assert not (tmp_path / "runs").exists()
