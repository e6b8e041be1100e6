"""The twin's optional compiled core (backends/sim/twin_core.py): used only when current, same bytes.

The slow test runs one experiment with the compiled core and one with HPA_EXP_TWIN_CORE=python,
each in its own process (the choice is made at import), and requires identical output files.
It needs the build (scripts/twin-core-build.sh): in CI (`CI` set) a missing build fails it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from hpa_experiments.backends.sim import twin_core, twin_core_build
from hpa_experiments.backends.sim.twin_core_build import current_build
from tests.support.tools import missing

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("metrics.csv", "requests.csv", "events.csv", "phases.csv")


def copy_package(dest: Path) -> Path:
    package = dest / "hpa_experiments"
    shutil.copytree(twin_core.PACKAGE_ROOT, package, ignore=shutil.ignore_patterns("__pycache__"))
    return package


def test_the_key_follows_the_compiled_sources_and_what_they_import(tmp_path: Path) -> None:
    package = copy_package(tmp_path)
    key = twin_core.build_key(package)
    assert key == twin_core.build_key(package)  # stable
    deps = twin_core.closure(twin_core.COMPILED, package)
    assert "hpa_experiments.twin_profiles" in deps  # imported by serving.py: its constants may be inlined
    assert "hpa_experiments.backends.sim.backend" not in deps  # not imported by a compiled module
    profiles = package / "twin_profiles.py"
    profiles.write_text(profiles.read_text() + "\n# edited\n")
    assert twin_core.build_key(package) != key
    key = twin_core.build_key(package)
    (package / "backends" / "sim" / "backend.py").write_text("# edited\n")
    assert twin_core.build_key(package) == key  # outside the closure


def test_a_build_for_other_sources_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(twin_core.CACHE_ENV, str(tmp_path))
    monkeypatch.delenv(twin_core.ENV, raising=False)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    monkeypatch.setattr(twin_core, "_state", twin_core.state())  # this process's record, restored after
    old = tmp_path / "0123456789abcdef01234567"
    old.mkdir()
    (old / twin_core.MANIFEST).write_text(json.dumps({"key": old.name, "files": {}}))
    state = twin_core.install()
    assert state["core"] == "python" and state["reason"].startswith("stale build")
    shutil.rmtree(old)
    assert twin_core.install()["reason"].startswith("not built")
    monkeypatch.setenv(twin_core.ENV, "python")
    assert twin_core.install() == {"core": "python", "reason": "HPA_EXP_TWIN_CORE=python"}


def test_the_build_says_what_is_missing_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no C compiler on PATH
    assert twin_core_build.main(["--force"]) == 2
    err = capsys.readouterr().err
    assert "twin-core-build: missing a C compiler" in err
    assert "the twin runs in pure Python" in err


CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from hpa_experiments.backends.factory import BackendOptions, make_backend
    from hpa_experiments.config import load_config
    from hpa_experiments.plan import build_plan
    from hpa_experiments.runner import Runner

    config_path = Path(sys.argv[1])
    config = load_config(config_path)
    plan = build_plan(config)
    run_id = "20260101-000000-core"  # fixed: Job resource names in phases.csv and events.csv carry it
    backend, names = make_backend("simulation", config, plan, run_id, BackendOptions())
    runs = config_path.parent / "runs"
    result = Runner(config, plan, backend, base_dir=runs, metric_names=names, run_id=run_id).run()
    print(json.dumps({"exit": result.exit_code, "run_dir": str(result.run_dir)}))
    """
)


def run_child(folder: Path, core: str) -> tuple[dict[str, bytes], dict]:
    """One run of high-load (drain at scale-down, fast pods) in a fresh process with HPA_EXP_TWIN_CORE=core."""
    folder.mkdir()
    doc = yaml.safe_load((REPO / "experiment-configs" / "high-load-hpa.yaml").read_text())
    doc.setdefault("simulation", {}).update(
        seed=3, parameters={"scale_down": "drain", "pod_load_mean_s": 20.0, "drain_grace_s": 60.0}
    )
    doc["hpa"]["manifest"] = str((REPO / "experiment-configs" / doc["hpa"]["manifest"]).resolve())
    for job in doc["jobs"]:
        if job.get("manifest"):
            job["manifest"] = str((REPO / "experiment-configs" / job["manifest"]).resolve())
    doc.setdefault("output", {})["base_dir"] = str(folder / "runs")
    config = folder / "high-load.yaml"
    config.write_text(yaml.safe_dump(doc))
    env = {**os.environ, twin_core.ENV: core}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(config)], env=env, capture_output=True, text=True, check=True, cwd=REPO
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["exit"] == 0
    run_dir = Path(result["run_dir"])
    info = json.loads((run_dir / "run.json").read_text())
    return {name: (run_dir / name).read_bytes() for name in OUTPUTS}, info["backend_info"]["twin_core"]


@pytest.mark.slow
def test_the_compiled_core_writes_the_same_bytes_as_python(tmp_path: Path) -> None:
    if current_build(twin_core.build_key()) is None:
        missing("the twin's compiled core is not built for these sources (scripts/twin-core-build.sh)")
    compiled, compiled_core = run_child(tmp_path / "compiled", "auto")
    python, python_core = run_child(tmp_path / "python", "python")
    assert compiled_core["core"] == "compiled"
    assert compiled_core["loaded_compiled"] == list(twin_core.COMPILED)  # every listed module came from the build
    assert python_core["core"] == "python"
    assert compiled["requests.csv"].count(b"\n") > 10_000  # the run did serve requests
    for name in OUTPUTS:
        assert compiled[name] == python[name], f"{name} differs between the compiled core and pure Python"
