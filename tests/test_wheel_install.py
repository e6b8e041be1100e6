"""hpa-exp as people install it: a wheel in a clean virtual environment, used outside the repository.

The wheel is built from this checkout (uv build), installed with its notebooks extra into a new
venv, and every command that needs a shipped file runs from a folder far from the checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).parent / "uv"
pytestmark = pytest.mark.slow  # builds a wheel and a virtual environment


def run(*args: str | Path, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the installed hpa-exp executable, an empty work folder outside the repository)."""
    assert UV.exists(), f"uv not found next to {sys.executable} (scripts/test.sh installs it)"
    root = tmp_path_factory.mktemp("wheel")
    run(UV, "build", "--wheel", "-o", root / "dist", REPO, cwd=root)
    (wheel,) = (root / "dist").glob("*.whl")
    run(UV, "venv", "-q", "--python", sys.executable, root / "venv", cwd=root)
    run(UV, "pip", "install", "-q", "--python", root / "venv" / "bin" / "python", f"{wheel}[notebooks]", cwd=root)
    work = root / "work"
    work.mkdir()
    return root / "venv" / "bin" / "hpa-exp", work


def test_the_wheel_carries_the_kit_and_no_checkout_is_needed(installed: tuple[Path, Path]) -> None:
    exe, work = installed
    where = run(exe.parent / "python", "-c", "import hpa_experiments, sys; print(hpa_experiments.__file__)", cwd=work)
    assert not where.stdout.strip().startswith(str(REPO)), "the installed package, not the checkout, is imported"
    kit = Path(where.stdout.strip()).parent / "kit"
    for shipped in (
        "workloads/vllm-bench-serve.yaml",
        "manifests/hpa-vllm-combined.yaml",
        "manifests/kind/cluster.yaml",
        "notebooks/analyze-hpa-experiment.ipynb",
        "experiment-configs/high-load-hpa.yaml",
    ):
        assert (kit / shipped).is_file(), shipped


def test_init_validate_run_report_notebook_and_cluster_dry_run(installed: tuple[Path, Path]) -> None:
    exe, work = installed
    run(exe, "init", "exp", cwd=work)
    config = work / "exp" / "experiment-configs" / "my-experiment.yaml"
    assert "✓" in run(exe, "validate", config, cwd=work).stdout
    done = run(exe, "run", config, "--backend", "sim", "-o", "runs", "--plain", "--quiet", cwd=work)
    (run_dir,) = (work / "runs").iterdir()
    assert "completed" in done.stdout
    run(exe, "report", run_dir, cwd=work)
    assert (run_dir / "report.html").is_file()
    run(exe, "notebook", run_dir, "--execute", cwd=work)
    assert "data:image/png;base64," in (run_dir / "notebook.html").read_text()
    dry = run(exe, "cluster", "up", "--dry-run", cwd=work)
    assert "kind create cluster" in dry.stdout


def test_a_config_without_job_manifests_uses_the_shipped_template(installed: tuple[Path, Path]) -> None:
    exe, work = installed
    bare = "name: bare\nhpa: {enabled: false}\njobs:\n  - name: only\n    rate: 5\n    duration: 60\n"
    (work / "bare.yaml").write_text(bare)
    assert "✓" in run(exe, "validate", work / "bare.yaml", cwd=work).stdout
