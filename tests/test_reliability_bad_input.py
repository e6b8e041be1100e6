"""Bad input never reaches the user as a traceback.

2,000 generated malformed configs (mutations of a valid one: wrong types, unknown keys, typos,
negative numbers, NaN, infinities and absurd magnitudes, missing files, manifests of another
kind, invalid names, removed keys; plus random YAML) go through the real `validate` and `run`
commands in-process: exit code 2 and one paragraph naming the problem.  A handful of subprocess
checks cover the other commands' inputs.
"""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpa_experiments.cli import main
from hpa_experiments.config import (
    CooldownConfig,
    ExperimentConfig,
    HpaConfig,
    JobConfig,
    MetricsConfig,
    OutputConfig,
    PrometheusConfig,
    SimulationConfig,
    SloConfig,
)

REPO = Path(__file__).resolve().parents[1]
JOB_TEMPLATE = str(REPO / "workloads" / "vllm-bench-serve.yaml")
HPA_MANIFEST = str(REPO / "manifests" / "hpa-vllm-combined.yaml")
OTHER_KINDS = [str(REPO / "manifests" / "namespace.yaml"), str(REPO / "manifests" / "model-server" / "vllm.yaml")]

VALID: dict[str, Any] = {
    "name": "fuzz-base",
    "namespace": "hpa-exp",
    "deployment": "vllm",
    "backend": "simulation",
    "hpa": {"enabled": True, "manifest": HPA_MANIFEST},
    "jobs": [
        {"name": "first", "rate": 5, "duration": 60, "manifest": JOB_TEMPLATE},
        {"name": "second", "rate": 7, "duration": "2m", "start_delay": 30, "manifest": JOB_TEMPLATE},
    ],
    "gap": 10,
    "cooldown": {"enabled": True, "duration": 30},
    "metrics": {"interval": 5, "rate_window": "1m", "percentiles": [0.5, 0.9]},
    "prometheus": {"verify_tls": True},
    "slo": {"ttft_ms": 2000},
    "simulation": {"seed": 1, "initial_replicas": 1, "scrape_interval": 15},
    "output": {"base_dir": "experiment-data"},
}

# Sections whose keys are fixed (the free-form mappings like `values` accept any key).
SECTIONS: dict[tuple[Any, ...], type] = {
    (): ExperimentConfig,
    ("hpa",): HpaConfig,
    ("jobs", 0): JobConfig,
    ("jobs", 1): JobConfig,
    ("cooldown",): CooldownConfig,
    ("metrics",): MetricsConfig,
    ("prometheus",): PrometheusConfig,
    ("slo",): SloConfig,
    ("simulation",): SimulationConfig,
    ("output",): OutputConfig,
}
NUMBERS = [
    ("jobs", 0, "duration"),
    ("jobs", 1, "rate"),
    ("jobs", 1, "start_delay"),
    ("gap",),
    ("metrics", "interval"),
    ("cooldown", "duration"),
    ("simulation", "initial_replicas"),
    ("simulation", "scrape_interval"),
    ("slo", "ttft_ms"),
    ("simulation", "seed"),
]
POSITIVE = [p for p in NUMBERS if p != ("simulation", "seed")]
TEXTS = [
    ("name",),
    ("namespace",),
    ("deployment",),
    ("model_name",),
    ("description",),
    ("jobs", 0, "name"),
    ("metrics", "rate_window"),
]
BOOLS = [("hpa", "enabled"), ("cooldown", "enabled"), ("prometheus", "verify_tls")]
LISTS = [("jobs",), ("metrics", "percentiles")]
REQUIRED = [("name",), ("jobs",), ("jobs", 0, "name"), ("jobs", 1, "duration")]
K8S_NAMES = [("namespace",), ("deployment",), ("jobs", 0, "name"), ("jobs", 1, "name")]
ABSURD = [math.nan, math.inf, -math.inf, "nan", "inf", "-Infinity", 1e300, "1e400", 10**400, "400d"]
YAML_BOOL_WORDS = {"y", "yes", "n", "no", "on", "off", "true", "false", "t", "f", "1", "0"}

letters = st.text(alphabet="abcdefghijklmnopqrstuvwxyzXYZ_", min_size=1, max_size=10)
containers = st.one_of(
    st.lists(st.integers(), max_size=3), st.dictionaries(letters, st.integers(), min_size=1, max_size=3)
)


def section_of(doc: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = doc
    for part in path:
        node = node[part]
    return node


def set_at(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    section_of(doc, path[:-1])[path[-1]] = value


def known_keys(model: type) -> set[str]:
    return {name for name, f in model.model_fields.items() if not f.exclude}  # type: ignore[attr-defined]


def typo(key: str, data: st.DataObject) -> str:
    i = data.draw(st.integers(0, len(key) - 1))
    kind = data.draw(st.sampled_from(["drop", "double", "swap", "upper", "dash"]))
    if kind == "drop" and len(key) > 1:
        return key[:i] + key[i + 1 :]
    if kind == "double":
        return key[: i + 1] + key[i:]
    if kind == "swap" and i + 1 < len(key) and key[i] != key[i + 1]:
        return key[:i] + key[i + 1] + key[i] + key[i + 2 :]
    if kind == "dash" and "_" in key:
        return key.replace("_", "-")
    return key[:i] + key[i].upper() + key[i + 1 :]


def mutate(doc: dict[str, Any], data: st.DataObject) -> str:
    """Apply one change that makes the config invalid; returns its name (for failure messages)."""
    kind = data.draw(
        st.sampled_from(
            [
                "unknown_key",
                "typo",
                "wrong_type",
                "negative",
                "missing_file",
                "wrong_kind",
                "bad_name",
                "bad_run_name",
                "remove_required",
                "not_finite",
            ]
        )
    )
    if kind == "unknown_key":
        path = data.draw(st.sampled_from(sorted(SECTIONS, key=str)))
        key = data.draw(letters.filter(lambda k, m=SECTIONS[path]: k not in known_keys(m)))
        section_of(doc, path)[key] = data.draw(st.one_of(st.integers(), letters))
    elif kind == "typo":
        path = data.draw(st.sampled_from(sorted(SECTIONS, key=str)))
        section = section_of(doc, path)
        key = data.draw(st.sampled_from(sorted(section)))
        wrong = typo(key, data)
        wrong = wrong if wrong != key else key + "x"
        if wrong in known_keys(SECTIONS[path]):  # a typo that happens to be another key: remove a required one
            del doc["jobs"]
        else:
            section[wrong] = section.pop(key)
    elif kind == "wrong_type":
        family = data.draw(st.sampled_from(["number", "text", "bool", "list"]))
        if family == "number":
            bad = st.one_of(containers, letters.filter(lambda s: s.lower() not in ("inf", "nan", "infinity")))
            set_at(doc, data.draw(st.sampled_from(NUMBERS)), data.draw(bad))
        elif family == "text":
            set_at(doc, data.draw(st.sampled_from(TEXTS)), data.draw(st.one_of(containers, st.integers())))
        elif family == "bool":
            bad = st.one_of(containers, letters.filter(lambda s: s.lower() not in YAML_BOOL_WORDS))
            set_at(doc, data.draw(st.sampled_from(BOOLS)), data.draw(bad))
        else:
            set_at(doc, data.draw(st.sampled_from(LISTS)), data.draw(st.one_of(st.integers(), letters)))
    elif kind == "negative":
        path = data.draw(st.sampled_from(POSITIVE))
        set_at(doc, path, data.draw(st.one_of(st.integers(-(10**6), -1), st.floats(-1e9, -1e-3))))
    elif kind == "missing_file":
        target = data.draw(st.sampled_from([("hpa", "manifest"), ("jobs", 0, "manifest"), ("jobs", 1, "manifest")]))
        set_at(doc, target, f"/nonexistent/{data.draw(letters)}.yaml")
    elif kind == "wrong_kind":
        if data.draw(st.booleans()):
            set_at(
                doc,
                ("jobs", data.draw(st.integers(0, 1)), "manifest"),
                data.draw(st.sampled_from([HPA_MANIFEST, *OTHER_KINDS])),
            )
        else:
            set_at(doc, ("hpa", "manifest"), data.draw(st.sampled_from([JOB_TEMPLATE, *OTHER_KINDS])))
    elif kind == "bad_name":
        name = data.draw(
            st.one_of(
                st.text(min_size=1, max_size=20).filter(
                    lambda s: not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", s)
                ),
                st.sampled_from(["x" * 64, "vllm\n", "a-b\n"]),  # "$" in a regex accepts a trailing newline
            )
        )
        set_at(doc, data.draw(st.sampled_from(K8S_NAMES)), name)
    elif kind == "not_finite":  # NaN, infinities and absurd magnitudes, as YAML or as text
        path = data.draw(st.sampled_from(POSITIVE))
        set_at(doc, path, data.draw(st.sampled_from(ABSURD)))
    elif kind == "bad_run_name":
        doc["name"] = data.draw(st.sampled_from(["..", "../escape", "a/b", "/abs", ".hidden", "x" * 81, ""]))
    else:
        path = data.draw(st.sampled_from(REQUIRED))
        del section_of(doc, path[:-1])[path[-1]]
    return kind


random_documents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


def assert_clean_rejection(code: int | None, err: str, what: str, expected: int = 2) -> None:
    message = err.strip()
    assert code == expected, f"{what}: exit {code}: {err}"
    assert message, f"{what}: empty message"
    assert "Traceback" not in message and "internal error" not in message, f"{what}: {message}"
    assert "\n\n" not in message, f"{what}: more than one paragraph: {message}"


@pytest.mark.slow
@settings(max_examples=1800, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), command=st.sampled_from(["validate", "run"]))
def test_mutated_configs_exit_2_with_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: st.DataObject, command: str
) -> None:
    doc = copy.deepcopy(VALID)
    kinds = [mutate(doc, data)]
    for _ in range(data.draw(st.integers(0, 2))):  # more changes, where the earlier ones left a place for them
        attempt = copy.deepcopy(doc)
        try:
            kinds.append(mutate(attempt, data))
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
        doc = attempt
    path = tmp_path / "mutated.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    args = [command, str(path)] + (
        ["--backend", "sim", "-o", str(tmp_path / "out"), "--plain"] if command == "run" else []
    )
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    _, err = capsys.readouterr()
    assert_clean_rejection(exit_info.value.code, err, f"{command} after {kinds}")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=st.one_of(st.text(max_size=200), random_documents.map(yaml.safe_dump)),
    command=st.sampled_from(["validate", "run"]),
)
def test_random_yaml_exits_2_with_one_paragraph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, command: str
) -> None:
    path = tmp_path / "random.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(path)])
    _, err = capsys.readouterr()
    assert_clean_rejection(exit_info.value.code, err, f"{command} of {text!r}")


def test_the_unmutated_base_config_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Otherwise the mutation test would prove nothing."""
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(VALID))
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(path)])
    assert exit_info.value.code == 0, capsys.readouterr()


@pytest.mark.slow
def test_other_commands_reject_bad_input_without_traceback(tmp_path: Path) -> None:
    """As a user runs them: separate processes, several at once."""
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(VALID))
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "not-a-run").mkdir()
    (tmp_path / "broken.yaml").write_text("name: x\njobs: [\n  - name: a\n")
    escape = tmp_path / "escape.yaml"
    escape.write_text(yaml.safe_dump({**VALID, "name": "../../etc"}))
    deployment_job = tmp_path / "deployment-job.yaml"
    deployment_job.write_text(yaml.safe_dump({**VALID, "jobs": [{**VALID["jobs"][0], "manifest": OTHER_KINDS[1]}]}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "entries": [{"config": str(good), "overrides": {"jobs[0].rat": 3}}]}))
    not_run = str(tmp_path / "not-a-run")
    listing = tmp_path / "list-kubeconfig"
    listing.write_text("[1, 2]")
    commands = {
        "malformed YAML": ["validate", str(tmp_path / "broken.yaml")],
        "name escaping the data folder": ["run", str(escape), "-b", "sim"],
        "--output-dir is a file": ["run", str(good), "-b", "sim", "-o", str(tmp_path / "a-file")],
        "--output-dir where folders cannot be made": ["run", str(good), "-b", "sim", "-o", "/proc/hpa-exp-runs"],
        "a Deployment as a job manifest": ["run", str(deployment_job), "-b", "sim"],
        "missing config": ["plan", str(tmp_path / "nope.yaml")],
        "report of a non-run": ["report", not_run],
        "compare of non-runs": ["compare", not_run, not_run],
        "cleanup of a non-run": ["cleanup", not_run],
        "suite with a bad override": ["suite", str(suite)],
        "unknown backend": ["run", str(good), "-b", "docker"],
        "namespace that is not a Kubernetes name": ["run", str(good), "-n", "../kube-system"],
        "cleanup namespace that is not a Kubernetes name": ["cleanup", "--all", "-n", "a/b"],
    }
    preflight = {  # exit 3: the cluster connection cannot be set up
        "kubeconfig that is not YAML": ["cleanup", "--all", "--kubeconfig", str(tmp_path / "broken.yaml")],
        "kubeconfig that is a list": [
            "run",
            str(good),
            "-b",
            "kubernetes",
            "--kubeconfig",
            str(listing),
            "--prometheus-url",
            "http://127.0.0.1:9",
        ],
    }
    processes = {
        what: subprocess.Popen(
            [sys.executable, "-m", "hpa_experiments", *args],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for what, args in {**commands, **preflight}.items()
    }
    for what, process in processes.items():
        _, err = process.communicate(timeout=120)
        assert_clean_rejection(process.returncode, err, what, 3 if what in preflight else 2)
    assert not (tmp_path / "experiment-data").exists()
