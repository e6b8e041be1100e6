"""Experiment config validation: every rule, with the exact message a user sees."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hpa_experiments.config import load_config
from hpa_experiments.errors import ConfigError
from hpa_experiments.manifests import render_template, template_placeholders

REPO = Path(__file__).resolve().parents[1]
REFERENCE_RUNS = REPO / "tests" / "data" / "reference-runs"  # copies of ../shared/reference-runs

JOB_TEMPLATE = (REPO / "workloads" / "vllm-bench-serve.yaml").read_text()
HPA = (REPO / "manifests" / "hpa-vllm-combined.yaml").read_text()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A folder laid out like the repo: configs/, workloads/, manifests/."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "workloads").mkdir()
    (tmp_path / "manifests").mkdir()
    (tmp_path / "workloads" / "vllm-bench-serve.yaml").write_text(JOB_TEMPLATE)
    (tmp_path / "manifests" / "hpa.yaml").write_text(HPA)
    return tmp_path


def fixed_job(rate: float) -> dict:
    """A Job manifest without placeholders, like the original system's one file per rate."""
    template = yaml.safe_load(JOB_TEMPLATE)
    job = render_template(template, {name: "x" for name in template_placeholders(template)})
    job["spec"]["template"]["spec"]["containers"][0]["args"] = [
        "--request-rate",
        str(rate),
        "--num-prompts",
        "100",
    ]
    return job


def base_config() -> dict:
    return {
        "name": "exp",
        "hpa": {"manifest": "../manifests/hpa.yaml"},
        "jobs": [
            {"name": "a", "rate": 10, "duration": 60},
            {"name": "b", "rate": 20, "duration": 60},
        ],
    }


def write(workspace: Path, doc: object, name: str = "exp.yaml") -> Path:
    path = workspace / "configs" / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def problems(workspace: Path, doc: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(workspace, doc))
    return info.value.problems


def test_minimal_config_loads_with_defaults(workspace: Path) -> None:
    config = load_config(write(workspace, base_config()))
    assert config.gap == 30
    assert config.metrics.interval == 5
    assert config.metrics.rate_window == "1m"
    assert config.metrics.percentiles == [0.5, 0.9, 0.99]
    assert config.backend == "simulation"
    assert config.on_job_failure == "abort"
    assert config.hpa_name == "vllm-hpa-combined"
    # relative paths resolve against the config file's folder, output.base_dir too
    assert config.jobs[0].manifest == (workspace / "workloads" / "vllm-bench-serve.yaml").resolve()
    assert config.output.base_dir == (workspace / "configs" / "experiment-data").resolve()


def test_durations_accept_units(workspace: Path) -> None:
    doc = base_config()
    doc["jobs"][0]["duration"] = "6m"
    doc["jobs"][1]["start_delay"] = "1m30s"
    doc["cooldown"] = {"enabled": True, "duration": "5m"}
    config = load_config(write(workspace, doc))
    assert config.jobs[0].duration == 360
    assert config.jobs[1].start_delay == 90
    assert config.cooldown.duration == 300


def test_design_document_metric_options(workspace: Path) -> None:
    doc = base_config()
    doc["metrics"] = {
        "percentiles_to_calculate": [50, 95, 99.9],
        "warm_up_duration_s": "2m",
        "output_summary_json_path": "out/summary.json",
        "output_requests_csv_path": "/abs/requests.csv",
    }
    metrics = load_config(write(workspace, doc)).metrics
    assert metrics.percentiles == [0.5, 0.95, 0.999]  # percents become the fractions PromQL uses
    assert metrics.warm_up_duration_s == 120
    assert metrics.output_summary_json_path == (workspace / "configs" / "out" / "summary.json").resolve()
    assert metrics.output_requests_csv_path == Path("/abs/requests.csv")


def mutate(path: str, value: object):
    def apply(doc: dict) -> dict:
        keys = path.split(".")
        target = doc
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target.setdefault(key, {})
        last = keys[-1]
        if value is DELETE:
            del target[int(last) if last.isdigit() else last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
        return doc

    return apply


DELETE = object()

RULES = [
    # (mutation, exact message)
    (mutate("jobs.1.start_delay", -5), "jobs[1].start_delay: must be >= 0 (got -5)"),
    (mutate("jobs.0.duration", 0), "jobs[0].duration: must be > 0 (got 0)"),
    (
        mutate("jobs.0.duration", "soon"),
        "jobs[0].duration: must be a number of seconds or a duration like '90s' or '5m' (got 'soon')",
    ),
    (mutate("jobs.0.rate", -1), "jobs[0].rate: must be > 0 (got -1)"),
    (mutate("jobs.0.rate", "fast"), "jobs[0].rate: must be a number (got 'fast')"),
    (mutate("jobs.1.start_dealy", 5), "jobs[1].start_dealy: unknown key; did you mean 'start_delay'?"),
    (mutate("cooldwn", {"enabled": True}), "cooldwn: unknown key; did you mean 'cooldown'?"),
    (mutate("metrics.intervall", 5), "metrics.intervall: unknown key; did you mean 'interval'?"),
    (mutate("surprise", 1), "surprise: unknown key"),
    (mutate("name", DELETE), "name: is required"),
    (mutate("jobs", []), "jobs: must not be empty"),
    (mutate("jobs", "a,b"), "jobs: must be a list (got str)"),
    (mutate("jobs.0", "a"), "jobs[0]: must be a mapping of keys (got str)"),
    (mutate("jobs.0.duration", DELETE), "jobs[0].duration: is required"),
    (
        mutate("jobs.0.name", "Phase_1"),
        "jobs[0].name: must be a Kubernetes name: lower-case letters, digits and '-'",
    ),
    (mutate("jobs.0.name", "x" * 43), "jobs[0].name: must be at most 42 characters (a run id is appended)"),
    (mutate("name", "../escape"), "name: must be letters, digits, '.', '_' or '-' (it names the run folder)"),
    (
        mutate("namespace", "My NS"),
        "namespace: must be a Kubernetes name: lower-case letters, digits and '-'",
    ),
    (mutate("gap", -1), "gap: must be >= 0 (got -1)"),
    (mutate("cooldown.duration", -10), "cooldown.duration: must be >= 0 (got -10)"),
    (mutate("cooldown.enabled", "maybe"), "cooldown.enabled: must be true or false (got 'maybe')"),
    (mutate("metrics.interval", 0), "metrics.interval: must be > 0 (got 0)"),
    (
        mutate("metrics.rate_window", "1 minute"),
        "metrics.rate_window: must be a PromQL duration such as '1m' or '30s' (got '1 minute')",
    ),
    (
        mutate("metrics.percentiles", [50, 150]),
        "metrics.percentiles: each percentile must be a fraction in (0, 1) or a percent in [1, 100) (got 150)",
    ),
    (
        mutate("metrics.percentiles", [0.5, 1.5]),
        "metrics.percentiles: write all percentiles as fractions (0.9) or all as percents (90), not a mix",
    ),
    (
        mutate("metrics.percentiles_to_calculate", [0.5, 0]),
        "metrics.percentiles_to_calculate: each percentile must be a fraction in (0, 1) or a percent in [1, 100)"
        " (got 0)",
    ),
    (
        mutate("metrics.prometheus", {"bad name": {"query": "up"}}),
        "metrics.prometheus: query name 'bad name' must be letters, digits and '_' (it names a column)",
    ),
    (mutate("metrics.prometheus", {"ok": {"q": "up"}}), "metrics.prometheus.ok.q: unknown key"),
    (mutate("backend", "docker"), "backend: must be one of 'kubernetes' or 'simulation' (got 'docker')"),
    (mutate("on_job_failure", "retry"), "on_job_failure: must be one of 'abort' or 'continue' (got 'retry')"),
    (mutate("slo.ttft_ms", 0), "slo.ttft_ms: must be > 0 (got 0)"),
    (
        mutate("metrics", {"percentiles": [0.5], "percentiles_to_calculate": [0.9]}),
        "metrics: give 'percentiles' or 'percentiles_to_calculate' (the same setting), not both",
    ),
    (mutate("metrics.warm_up_duration_s", -1), "metrics.warm_up_duration_s: must be >= 0 (got -1)"),
    (mutate("cost.price_per_gpu_hour", 0), "cost.price_per_gpu_hour: must be > 0 (got 0)"),
    (
        mutate("energy.pod_label", "exported pod"),
        "energy.pod_label: must be a Prometheus metric or label name (got 'exported pod')",
    ),
    (mutate("simulation.initial_replicas", 0), "simulation.initial_replicas: must be >= 1 (got 0)"),
    (
        mutate("simulation.parameters", {"model_weights_gib": 140.0}),
        "simulation.parameters: simulation profile 'llama-3.1-8b-h100': the model does not fit: "
        "140.0 GiB of weights > 79.65 GiB x 1 GPU x 0.9 = 71.7 GiB usable",
    ),
    (
        mutate("simulation.profile", "llama-3.1-8b-h10"),
        "simulation.profile: unknown simulation profile 'llama-3.1-8b-h10' (did you mean 'llama-3.1-8b-h100'?)",
    ),
    (mutate("jobs.1.name", "a"), "jobs[1].name: 'a' is already used by jobs[0]"),
    (
        mutate("prometheus", {"token_env": "T", "token_file": "t"}),
        "prometheus: give token_env or token_file, not both",
    ),
]


@pytest.mark.parametrize(("change", "message"), RULES, ids=[m for _, m in RULES])
def test_validation_rule(workspace: Path, change, message: str) -> None:
    assert message in problems(workspace, change(base_config()))


def test_missing_job_manifest_names_the_file(workspace: Path) -> None:
    doc = base_config()
    doc["jobs"][1]["manifest"] = "../workloads/nope.yaml"
    missing = (workspace / "workloads" / "nope.yaml").resolve()
    assert problems(workspace, doc) == [f"jobs[1].manifest: file not found: {missing}"]


def test_job_manifest_of_another_kind_is_rejected(workspace: Path) -> None:
    (workspace / "workloads" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    doc = base_config()
    doc["jobs"][0]["manifest"] = "../workloads/cm.yaml"
    path = (workspace / "workloads" / "cm.yaml").resolve()
    assert problems(workspace, doc) == [f"jobs[0].manifest: {path}: must be a batch/v1 Job (found v1 ConfigMap)"]


def test_template_needs_a_rate(workspace: Path) -> None:
    doc = base_config()
    del doc["jobs"][0]["rate"]
    assert problems(workspace, doc) == ["jobs[0].manifest: the template needs a request rate: set 'rate' on this job"]


def test_template_placeholder_without_value(workspace: Path) -> None:
    (workspace / "workloads" / "t.yaml").write_text(JOB_TEMPLATE.replace("${seed}", "${mystery}"))
    doc = base_config()
    doc["jobs"][0]["manifest"] = "../workloads/t.yaml"
    assert problems(workspace, doc) == ["jobs[0].manifest: template needs values for: mystery"]


def test_hpa_must_target_the_deployment(workspace: Path) -> None:
    doc = base_config()
    doc["deployment"] = "other"
    assert problems(workspace, doc) == [
        "hpa.manifest: spec.scaleTargetRef must be the Deployment 'other' (found Deployment 'vllm')"
    ]


def test_hpa_must_be_autoscaling_v2(workspace: Path) -> None:
    (workspace / "manifests" / "old.yaml").write_text(HPA.replace("autoscaling/v2", "autoscaling/v1"))
    doc = base_config()
    doc["hpa"]["manifest"] = "../manifests/old.yaml"
    assert problems(workspace, doc) == [
        "hpa.manifest: must be an autoscaling/v2 HorizontalPodAutoscaler (found autoscaling/v1 HorizontalPodAutoscaler)"
    ]


def test_hpa_without_manifest_or_name(workspace: Path) -> None:
    doc = base_config()
    doc["hpa"] = {"enabled": True}
    assert problems(workspace, doc) == ["hpa: give 'manifest' (the HPA to apply or simulate) or at least 'name'"]


def test_several_problems_are_all_listed(workspace: Path) -> None:
    doc = base_config()
    doc["jobs"][0]["duration"] = -1
    doc["gap"] = -2
    found = problems(workspace, doc)
    assert "jobs[0].duration: must be > 0 (got -1)" in found
    assert "gap: must be >= 0 (got -2)" in found


def test_yaml_syntax_error_names_line(workspace: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(workspace, "name: x\njobs: [a, b\n"))
    assert info.value.problems[0].startswith("line 3, column 1: not valid YAML")


def test_top_level_must_be_mapping(workspace: Path) -> None:
    assert problems(workspace, "- a\n- b\n") == ["the top level must be a mapping of keys (name, jobs, ...)"]


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "none.yaml")
    assert str(info.value) == f"{tmp_path / 'none.yaml'}: invalid experiment config: file not found"


@pytest.mark.parametrize("run", ["high-load-hpa-20251124-155733", "moderate-load-hpa-extended-20251210-132157"])
def test_original_configs_load_unchanged_and_name_each_missing_file(run: str) -> None:
    path = REFERENCE_RUNS / run / "experiment-config.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = info.value.problems
    # every problem is a missing file; no key of the original format is rejected
    assert found and all("file not found" in p for p in found)
    original = yaml.safe_load(path.read_text())
    assert len([p for p in found if p.startswith("jobs[")]) == len(original["jobs"])
    assert any(p.startswith("hpa.manifest: file not found") for p in found)


def test_original_config_loads_when_its_files_exist(tmp_path: Path) -> None:
    """Lay out the original repository's folders around an original config: it loads as is."""
    new_experiments = tmp_path / "config" / "samples" / "not_wva" / "new-experiments"
    configs = new_experiments / "experiment-configs"
    configs.mkdir(parents=True)
    shutil.copy(REFERENCE_RUNS / "high-load-hpa-20251124-155733" / "experiment-config.yaml", configs / "h.yaml")
    workloads = tmp_path / "config" / "samples" / "not_wva" / "workloads"
    workloads.mkdir(parents=True)
    for rate in (20, 30):
        (workloads / f"sharegpt-load-job-high-{rate}.yaml").write_text(yaml.safe_dump(fixed_job(rate)))
    manifests = tmp_path / "config" / "samples" / "not_wva" / "manifests"
    manifests.mkdir(parents=True)
    hpa = yaml.safe_load(HPA)  # the original HPA targeted the llm-d decode Deployment
    hpa["spec"]["scaleTargetRef"]["name"] = "ms-inference-scheduling-llm-d-modelservice-decode"
    hpa["metadata"]["namespace"] = "llm-d-inference-scheduler"  # as in reference-runs/hpa-vllm-combined.yaml
    (manifests / "hpa-vllm-combined.yaml").write_text(yaml.safe_dump(hpa))
    config = load_config(configs / "h.yaml")
    assert [j.name for j in config.jobs] == ["phase-1-high-load", "phase-2-peak-load", "phase-3-sustained"]
    assert config.metrics.prometheus["ttft"].query.startswith("sum(rate(vllm:time_to_first_token_seconds_sum")
    assert config.output.include_pod_logs is True


@pytest.mark.slow
def test_validate_command_exit_codes(workspace: Path) -> None:
    good = write(workspace, base_config(), "good.yaml")
    bad_doc = base_config()
    bad_doc["jobs"][0]["start_dealy"] = 3
    bad = write(workspace, bad_doc, "bad.yaml")
    ok = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "validate", str(good)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert "✓" in ok.stdout
    both = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "validate", str(good), str(bad)],
        capture_output=True,
        text=True,
    )
    assert both.returncode == 2
    assert "jobs[0].start_dealy: unknown key; did you mean 'start_delay'?" in both.stderr
    assert "Traceback" not in both.stderr


@pytest.mark.slow
def test_shipped_configs_validate() -> None:
    configs = sorted((REPO / "experiment-configs").glob("*.yaml"))
    assert len(configs) >= 3
    result = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "validate", *map(str, configs)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("given", "meant"), [("sim", "simulation"), ("Twin", "simulation"), ("k8s", "kubernetes")])
def test_backend_takes_the_command_line_names(workspace: Path, given: str, meant: str) -> None:
    doc = base_config()
    doc["backend"] = given
    assert load_config(write(workspace, doc)).backend == meant
