"""Both notebooks executed headless (nbclient) on an imported reference run and a simulated run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.analysis_runs import HIGH_LOAD, REPO, imported_reference_run, simulated_run

NOTEBOOKS = REPO / "notebooks"
pytestmark = pytest.mark.slow  # starts Jupyter kernels


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    data = tmp_path_factory.mktemp("nb") / "experiment-data"
    return {"imported": imported_reference_run(HIGH_LOAD, data), "simulated": simulated_run(data)}


def execute(name: str, env: dict[str, str], monkeypatch) -> nbformat.NotebookNode:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]


def png_count(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in outputs(notebook))


def text_of(notebook: nbformat.NotebookNode) -> str:
    """Plain and HTML representations (pandas truncates the plain one)."""
    data = [out.get("data", {}) for out in outputs(notebook)]
    return "\n".join(d.get("text/html", "") + d.get("text/markdown", "") + d.get("text/plain", "") for d in data)


def test_notebooks_have_one_parameter_cell():
    expected = {"analyze-hpa-experiment.ipynb": "RUN_DIR = None", "compare-runs.ipynb": "RUN_DIRS = []"}
    for name, parameter in expected.items():
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        cells = notebook.cells
        tagged = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
        assert [c.source for c in tagged] == [parameter]
        assert all(not c.get("outputs") for c in cells if c.cell_type == "code")  # committed without outputs


@pytest.mark.parametrize("kind", ["imported", "simulated"])
def test_analysis_notebook_runs_headless(runs, kind, monkeypatch):
    notebook = execute("analyze-hpa-experiment.ipynb", {"HPA_EXP_RUN_DIR": str(runs[kind])}, monkeypatch)
    text = text_of(notebook)
    assert runs[kind].name in text
    if kind == "imported":  # the original system recorded no power and no requests: said so, no figures
        assert png_count(notebook) == 2  # the standard figure and the why figure
        assert "legacy-import" in text and "no data" in text  # TTFT never collected: said, not 0
        assert "limit unknown (no HPA conditions recorded)" in text and "ready lag unknown" in text
        assert "This run has no GPU power data" in text
        assert "This run has no requests.csv" in text
        assert "kept no latency histograms" in text  # no p90 over the run: said why
        assert "This run has no job-results.csv" in text  # no client-side results: said so
    else:  # the standard figure, the why figure, the energy figure and the per-request distributions
        assert png_count(notebook) == 4
        assert "simulation" in text
        assert "capped by maxReplicas 10" in text and "ready after" in text  # the scale-event lines
        assert "GPU energy" in text and " kWh" in text and "energy per output token" in text
        assert "completed" in text and "TTFT per completed request" in text
        assert "ttft p90 (ms)" in text  # the per-job table
        assert "TTFT over the run 0–900 s (histogram)" in text
        assert re.search(r"first scale-up \d+ s after the load rose", text)
        assert "ttft observations" in text  # the window table: the run, each phase, the cooldown
        assert "TTFT mean / median / P99 client" in text and "TTFT mean / p50 / p99 server" in text


def test_compare_notebook_runs_headless(runs, monkeypatch):
    env = {"HPA_EXP_RUN_DIRS": os.pathsep.join(str(runs[k]) for k in ("imported", "simulated"))}
    notebook = execute("compare-runs.ipynb", env, monkeypatch)
    assert png_count(notebook) == 3  # the overlay and each run's standard figure
    text = text_of(notebook)
    assert "Δ vs" in text and runs["simulated"].name in text


def test_notebook_execute_writes_the_page_into_the_run_directory(runs):
    """`hpa-exp notebook RUN --execute`, as a pipeline calls it: the executed notebook as HTML."""
    import subprocess
    import sys

    run = runs["simulated"]
    done = subprocess.run(
        [sys.executable, "-m", "hpa_experiments", "notebook", str(run), "--execute"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    page = run / "notebook.html"
    assert f"notebook page: {page}" in done.stdout
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 3  # the figures, embedded
    assert run.name in html and "Traceback" not in html


def test_notebook_execute_on_several_runs_needs_an_output(runs):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hpa_experiments",
            "notebook",
            str(runs["simulated"]),
            str(runs["imported"]),
            "--execute",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "--execute on several runs needs --output FILE.html" in done.stderr
