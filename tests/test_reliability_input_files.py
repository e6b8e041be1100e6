"""Input files that parse "fine" but mean something else, or cannot be read safely (issue 16, item 7).

Duplicate keys (the last `jobs:` used to win silently), alias bombs, special files and oversized
files as configs, suites and manifests; NaN, infinities and absurd magnitudes for durations,
delays, rates and intervals.  Every case goes through the command line and must end with exit
code 2 and one exact message, never "internal error" or a traceback.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from hpa_experiments.cli import main
from hpa_experiments.yaml_io import load_yaml
from tests.support.cli import hpa_exp

REPO = Path(__file__).resolve().parents[1]
HPA = REPO / "manifests" / "hpa-vllm-combined.yaml"
JOB = REPO / "workloads" / "vllm-bench-serve.yaml"

CONFIG = f"""\
name: dup
hpa: {{manifest: {HPA}}}
jobs:
  - {{name: first, rate: 2, duration: 60}}
gap: 10
jobs:
  - {{name: second, rate: 9, duration: 600}}
"""


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int | None, str]:
    with pytest.raises(SystemExit) as info:
        main(["validate", *args])
    out, err = capsys.readouterr()
    return info.value.code, (out + err).strip()


def assert_rejected(code: int | None, message: str, expected: str) -> None:
    assert code == 2, message
    assert message == expected
    assert "Traceback" not in message and "internal error" not in message


# --- duplicate keys ------------------------------------------------------------------------


def test_a_second_jobs_key_is_an_error_with_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(CONFIG)
    code, message = validate(capsys, str(path))
    assert_rejected(
        code,
        message,
        f"✗ {path}: invalid experiment config: line 6, column 1: not valid YAML: "
        "duplicate key 'jobs' (first at line 3); each key may appear once",
    )


def test_duplicate_keys_in_a_json_config_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "dup.json"
    path.write_text(
        f'{{"name": "dup", "hpa": {{"manifest": "{HPA}"}}, "jobs": [], '
        '"jobs": [{"name": "a", "rate": 1, "duration": 60}]}'
    )
    code, message = validate(capsys, str(path))
    assert_rejected(
        code,
        message,
        f"✗ {path}: invalid experiment config: not valid JSON: duplicate key 'jobs'; each key may appear once",
    )


def test_duplicate_keys_in_the_hpa_and_job_manifests_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hpa = tmp_path / "hpa.yaml"
    hpa.write_text(HPA.read_text() + "spec: {maxReplicas: 1000}\n")  # a second spec at the end
    spec_line = HPA.read_text().splitlines().index("spec:") + 1
    last_line = len(HPA.read_text().splitlines()) + 1
    job = tmp_path / "job.yaml"
    job.write_text(JOB.read_text().replace("  backoffLimit: 2\n", "  backoffLimit: 2\n  backoffLimit: 0\n"))
    backoff_line = job.read_text().splitlines().index("  backoffLimit: 0") + 1
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "m",
                "hpa": {"manifest": str(hpa)},
                "jobs": [{"name": "a", "rate": 1, "duration": 60, "manifest": str(job)}],
            }
        )
    )
    code, message = validate(capsys, str(config))
    assert_rejected(
        code,
        message,
        f"✗ {config}: invalid experiment config\n"
        f"  - jobs[0].manifest: {job}: not valid YAML: line {backoff_line}, column 3: duplicate key 'backoffLimit' "
        f"(first at line {backoff_line - 1}); each key may appear once\n"
        f"  - hpa.manifest: {hpa}: not valid YAML: line {last_line}, column 1: duplicate key 'spec' "
        f"(first at line {spec_line}); each key may appear once",
    )


def test_duplicate_keys_in_a_suite_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"name": "c", "hpa": {"manifest": str(HPA)}, "jobs": [{"name": "a", "rate": 1, "duration": 60}]})
    )
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\nentries:\n  - config: {config}\nentries:\n  - config: {config}\n    repeats: 9\n")
    with pytest.raises(SystemExit) as info:
        main(["suite", str(suite), "--check"])
    _, err = capsys.readouterr()
    assert info.value.code == 2, err
    assert err.strip().endswith(
        "line 4, column 1: not valid YAML: duplicate key 'entries' (first at line 2); each key may appear once"
    ), err
    assert str(suite) in err and "Traceback" not in err


def test_merge_keys_may_still_be_overridden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`<<: *defaults` followed by a key of the defaults is an override, not a duplicate."""
    path = tmp_path / "merge.yaml"
    path.write_text(
        f"name: merge\nhpa: {{manifest: {HPA}}}\ndefaults: &d {{rate: 2, duration: 60}}\n".replace("defaults", "values")
        + "jobs:\n  - <<: *d\n    name: a\n    rate: 3\n"
    )
    code, message = validate(capsys, str(path))
    assert code == 0, message


# --- alias bombs --------------------------------------------------------------------------


def laughs(levels: int) -> str:
    """A 'billion laughs' document: each level repeats the previous one ten times."""
    lines = ["  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_a_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(
        f"name: bomb\nhpa: {{manifest: {HPA}}}\njobs:\n  - {{name: a, rate: 1, duration: 60}}\nvalues:\n" + laughs(7)
    )
    code, message = validate(capsys, str(path))
    assert_rejected(
        code,
        message,
        f"✗ {path}: invalid experiment config: line 11, column 7: not valid YAML: the document expands to more "
        "than 1,000,000 values (through &anchor/*alias references)",
    )


def test_an_alias_bomb_in_a_job_template_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB.read_text() + "x-bomb:\n" + laughs(7))
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "m",
                "hpa": {"manifest": str(HPA)},
                "jobs": [{"name": "a", "rate": 1, "duration": 60, "manifest": str(job)}],
            }
        )
    )
    code, message = validate(capsys, str(config))
    bomb_line = len(JOB.read_text().splitlines()) + 7
    assert_rejected(
        code,
        message,
        f"✗ {config}: invalid experiment config: jobs[0].manifest: {job}: not valid YAML: line {bomb_line}, "
        "column 7: the document expands to more than 1,000,000 values (through &anchor/*alias references)",
    )


def test_a_self_referencing_alias_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "loop.yaml"
    path.write_text(
        f"name: loop\nhpa: {{manifest: {HPA}}}\njobs:\n  - {{name: a, rate: 1, duration: 60}}\n"
        "values: &v {again: *v}\n"
    )
    code, message = validate(capsys, str(path))
    assert_rejected(
        code,
        message,
        f"✗ {path}: invalid experiment config: line 5, column 9: not valid YAML: an alias refers to a node "
        "that contains it",
    )


# --- special and oversized files -----------------------------------------------------------


def limited_memory() -> None:
    """At most 1 GiB of address space: code that reads /dev/zero whole dies instead of the machine."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return hpa_exp(*args, cwd=cwd, timeout=60, preexec_fn=limited_memory)


@pytest.mark.slow
def test_special_and_oversized_files_are_refused_before_reading(tmp_path: Path) -> None:
    """A FIFO without writer used to block forever, /dev/zero to fill memory; all are refused at once."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    big = tmp_path / "big.yaml"
    big.write_text(
        f"name: big\nhpa: {{manifest: {HPA}}}\njobs:\n  - {{name: a, rate: 1, duration: 60}}\n"
        + "#" * (16 * 1024 * 1024)
        + "\n"
    )
    cases = {
        fifo: "is a FIFO (named pipe), not a regular file",
        Path("/dev/zero"): "is a character device, not a regular file",
        folder: "is a directory, not a regular file",
        big: "is larger than 16 MiB; not read",
    }
    for path, problem in cases.items():
        done = cli("validate", str(path), cwd=tmp_path)
        assert (done.returncode, done.stderr.strip()) == (2, f"✗ {path}: invalid experiment config: {problem}")
        done = cli("run", str(path), "-b", "sim", "-o", str(tmp_path / "out"), cwd=tmp_path)
        assert (done.returncode, done.stderr.strip()) == (2, f"error: {path}: invalid experiment config: {problem}")
    assert not (tmp_path / "out").exists()


def test_a_fifo_as_a_manifest_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "hpa.yaml"
    os.mkfifo(fifo)
    config = tmp_path / "c.yaml"
    config.write_text(
        json.dumps(
            {
                "name": "m",
                "hpa": {"manifest": str(fifo)},
                "jobs": [{"name": "a", "rate": 1, "duration": 60, "manifest": "/dev/zero"}],
            }
        )
    )
    done = cli("validate", str(config), cwd=tmp_path)
    assert (done.returncode, done.stderr.strip()) == (
        2,
        f"✗ {config}: invalid experiment config\n"
        "  - jobs[0].manifest: /dev/zero: is a character device, not a regular file\n"
        f"  - hpa.manifest: {fifo}: is a FIFO (named pipe), not a regular file",
    )


# --- NaN, infinities and absurd magnitudes ------------------------------------------------

NUMBERS = [
    ("jobs[0].duration", ".inf", "must be a finite number of seconds (got inf)"),
    ("jobs[0].duration", "'1e400'", "must be a finite number of seconds (got '1e400')"),
    ("jobs[0].duration", ".nan", "must be a finite number of seconds (got nan)"),
    ("jobs[0].duration", "'31d'", "must be at most 30 days (2592000 s) (got '31d')"),
    ("jobs[0].start_delay", ".inf", "must be a finite number of seconds (got inf)"),
    (
        "jobs[0].start_delay",
        "1" + "0" * 400,
        "must be at most 30 days (2592000 s) (got 1000000000000000000000000000000000000...)",
    ),
    ("gap", "-.inf", "must be a finite number of seconds (got -inf)"),
    ("cooldown.duration", "1000000000000", "must be at most 30 days (2592000 s) (got 1000000000000)"),
    ("metrics.interval", "0.001", "must be at least 0.1 s (got 0.001)"),
    ("metrics.interval", ".nan", "must be a finite number of seconds (got nan)"),
    ("metrics.warm_up_duration_s", ".inf", "must be a finite number of seconds (got inf)"),
    ("simulation.scrape_interval", "1.0e-300", "must be at least 0.1 s (got 1e-300)"),
    ("jobs[0].rate", ".inf", "must be a finite number (got inf)"),
    ("jobs[0].rate", ".nan", "must be a finite number (got nan)"),
    ("jobs[0].rate", "1000000000", "must be <= 100000 (got 1000000000)"),
    ("slo.ttft_ms", ".inf", "must be a finite number (got inf)"),
    ("cost.price_per_gpu_hour", ".nan", "must be a finite number (got nan)"),
    ("simulation.seed", "-1", "must be >= 0 (got -1)"),
    ("simulation.initial_replicas", "100000000", "must be <= 1000 (got 100000000)"),
]


def config_with(key: str, value: str) -> str:
    """The base config with `key` (a path as messages write it) set to the YAML text `value`."""
    job = {"name": "a", "rate": "2", "duration": "60"}
    sections: dict[str, dict[str, str]] = {
        "metrics": {},
        "cooldown": {"enabled": "true"},
        "simulation": {},
        "slo": {},
        "cost": {},
    }
    top: dict[str, str] = {}
    if key.startswith("jobs[0]."):
        job[key.split(".")[1]] = value
    elif "." in key:
        section, field = key.split(".")
        sections[section][field] = value
    else:
        top[key] = value
    lines = [
        f"name: numbers\nhpa: {{manifest: {HPA}}}",
        "jobs:\n  - {" + ", ".join(f"{k}: {v}" for k, v in job.items()) + "}",
    ]
    lines += [f"{k}: {v}" for k, v in top.items()]
    lines += [f"{s}: {{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}" for s, fields in sections.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("key", "value", "problem"), NUMBERS, ids=[f"{k}={v[:10]}" for k, v, _ in NUMBERS])
def test_non_finite_and_absurd_numbers_are_rejected_with_their_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str, value: str, problem: str
) -> None:
    path = tmp_path / "numbers.yaml"
    path.write_text(config_with(key, value))
    for command in (["validate", str(path)], ["run", str(path), "-b", "sim", "-o", str(tmp_path / "out")]):
        with pytest.raises(SystemExit) as info:
            main(command)
        _, err = capsys.readouterr()
        prefix = "✗ " if command[0] == "validate" else "error: "
        assert (info.value.code, err.strip()) == (2, f"{prefix}{path}: invalid experiment config: {key}: {problem}")
    assert not (tmp_path / "out").exists()


def test_the_base_of_the_number_cases_is_valid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Otherwise the cases above would prove nothing."""
    path = tmp_path / "numbers.yaml"
    path.write_text(config_with("gap", "10"))
    code, message = validate(capsys, str(path))
    assert code == 0, message


def test_load_values_read_as_numbers_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The load generator (the twin's, and `vllm bench serve` through the template) reads these as
    numbers when a Job starts; a value it cannot use used to break the run there."""
    path = tmp_path / "values.yaml"
    path.write_text(
        f"name: values\nhpa: {{manifest: {HPA}}}\n"
        "values: {output_len: .inf, max_concurrency: many, burstiness: 0}\n"
        "jobs:\n  - {name: a, rate: 2, duration: 60}\n"
        "  - {name: b, rate: 2, duration: 60, values: {num_prompts: 2.5}}\n"
    )
    code, message = validate(capsys, str(path))
    assert_rejected(
        code,
        message,
        f"✗ {path}: invalid experiment config\n"
        "  - values.output_len: must be a whole number from 1 to 1000000000 (got inf)\n"
        "  - values.max_concurrency: must be a number (got 'many')\n"
        "  - values.burstiness: must be a finite number > 0 (got 0)\n"
        "  - jobs[1].values.num_prompts: must be a whole number from 1 to 1000000000 (got 2.5)",
    )


def test_a_negative_seed_on_the_command_line_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "seed.yaml"
    path.write_text(config_with("gap", "10"))
    with pytest.raises(SystemExit) as info:
        main(["run", str(path), "--seed", "-5", "-o", str(tmp_path / "out")])
    _, err = capsys.readouterr()
    assert (info.value.code, err.strip()) == (2, "error: seed -5: must be a whole number >= 0")


def test_non_finite_numbers_in_the_hpa_manifest_are_rejected_at_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """They used to pass `validate` and break the run when the twin (or the API server) read them."""
    hpa = yaml.safe_load(HPA.read_text())
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = float("inf")
    hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["periodSeconds"] = float("nan")
    manifest = tmp_path / "hpa.yaml"
    manifest.write_text(yaml.safe_dump(hpa))
    path = tmp_path / "c.yaml"
    path.write_text(config_with("gap", "10").replace(str(HPA), str(manifest)))
    code, message = validate(capsys, str(path))
    assert_rejected(
        code,
        message,
        f"✗ {path}: invalid experiment config\n"
        "  - hpa.manifest: spec.behavior.scaleUp.policies[0].periodSeconds must be an integer from 1 to 1800, "
        "got nan\n"
        "  - hpa.manifest: spec.behavior.scaleDown.stabilizationWindowSeconds must be an integer from 0 to 3600, "
        "got inf",
    )


documents = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(doc=documents, flow=st.booleans())
def test_the_strict_loader_reads_valid_documents_as_pyyaml_does(doc: object, flow: bool) -> None:
    """Strictness only refuses; whatever it accepts means what PyYAML's SafeLoader says it means."""
    text = yaml.safe_dump(doc, default_flow_style=flow)
    assert load_yaml(text) == yaml.safe_load(text)
    shared = yaml.safe_dump({"a": doc, "b": doc}, default_flow_style=flow)  # containers: &id001 / *id001
    assert load_yaml(shared) == yaml.safe_load(shared)
