"""`hpa-exp menu` driven as a person would: keys into a tmux pane of a fixed size, assertions on the screen.

Each test runs the menu with the current folder set to a temporary copy of experiment-configs/,
workloads/ and manifests/, so runs land in a temporary experiment-data/.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hpa_experiments.config import load_config
from tests.support.terminal import TmuxTerminal
from tests.support.tools import require_executable

pytestmark = [pytest.mark.tmux, pytest.mark.slow]  # drives the menu in a tmux pane

REPO = Path(__file__).resolve().parents[1]
MENU = [sys.executable, "-m", "hpa_experiments", "menu"]
# SGR parameters that set a colour (30-38, 40-48, 90-97, 100-107); bold/dim/reverse are not colours.
COLOUR_SGR = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])[;m]")


SHIPPED_CONFIGS = sorted(p.name for p in (REPO / "experiment-configs").glob("*.yaml"))  # the home list's order


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    for name in ("experiment-configs", "workloads", "manifests"):
        shutil.copytree(REPO / name, folder / name)
    return folder


@pytest.fixture
def open_terminal(tmp_path: Path, workspace: Path) -> Iterator:
    require_executable("tmux", "apt-get install tmux")
    terminals: list[TmuxTerminal] = []

    def start(width: int = 80, height: int = 24, **env: str) -> TmuxTerminal:
        folder = tmp_path / f"tmux{len(terminals)}"
        folder.mkdir()
        settings = {"KUBECONFIG": str(tmp_path / "no-kubeconfig"), "PYTHONPATH": str(REPO), **env}
        terminal = TmuxTerminal(folder, width, height).start(MENU, workspace, settings)
        terminals.append(terminal)
        return terminal

    yield start
    for terminal in terminals:
        terminal.close()


def _quit(terminal: TmuxTerminal) -> None:
    terminal.press("q")
    terminal.wait_for("bye: hpa-exp menu closed")
    assert terminal.exit_status() == 0


def _run_dirs(workspace: Path) -> list[Path]:
    data = workspace / "experiment-data"
    return sorted(p for p in data.iterdir() if (p / "run.json").exists()) if data.exists() else []


def _kubeconfig(path: Path, context: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": context,
                "clusters": [{"name": context, "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "me", "user": {"token": "x"}}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": "me"}}],
            }
        )
    )
    return path


def test_home_then_a_simulation_to_completion_then_its_summary_at_80x24(open_terminal, workspace: Path) -> None:
    terminal = open_terminal(80, 24)
    screen = terminal.wait_for(r"no runs yet under experiment-data")
    assert "no cluster: simulation available" in screen
    for key, name in enumerate(SHIPPED_CONFIGS, start=1):
        assert re.search(rf"^ {key} {re.escape(name)} +\S", screen, re.MULTILINE), name
    assert "no runs yet under experiment-data" in screen
    assert all(len(line) <= 80 for line in screen.splitlines())
    assert COLOUR_SGR.search(terminal.screen(colours=True)), "expected colours without NO_COLOR"
    terminal.press("h")
    assert "Ctrl-C or q asks" in terminal.wait_for(r"^Help")
    terminal.press("b")
    terminal.wait_for(r"Recent runs")

    terminal.press("2")  # high-load-hpa.yaml
    screen = terminal.wait_for(r"\[s\] simulate")
    assert "3 jobs · total 900 s · peak load 70 req/s" in screen
    assert "[k]" not in screen  # no kubeconfig context, no Kubernetes choice
    terminal.press("s")
    terminal.wait_for(r"pace: watchable")
    terminal.press("p")
    terminal.wait_for(r"pace: slow")
    terminal.press("p")
    terminal.wait_for(r"pace: full speed")
    terminal.press("Enter")
    screen = terminal.wait_for(r"completed: run saved in", timeout=60)
    [run_dir] = _run_dirs(workspace)
    assert run_dir.name in screen.replace("\n", "")
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"

    terminal.press("b")
    screen = terminal.wait_for(r"Recent runs")
    assert re.search(rf"{run_dir.name}\s+completed\s+simulation", screen)
    terminal.press("e")
    screen = terminal.wait_for(r"\[1-9\] open", timeout=30)
    assert re.search(rf"1\s+{run_dir.name}\s+completed", screen)
    terminal.press("1")
    screen = terminal.wait_for(r"backend / status", timeout=30)
    assert "simulation / completed" in screen
    assert re.search(r"peak \(at\)\s+│\s+\d+ \(at \d+ s\)", screen)
    terminal.press("f")
    screen = terminal.wait_for(r"generated now", timeout=60)
    assert "report.html" in screen
    assert (run_dir / "report.html").is_file() and (run_dir / "plots" / "overview.png").is_file()
    terminal.press("b")
    terminal.wait_for(r"backend / status")
    terminal.press("n")
    screen = terminal.wait_for(r"Start Jupyter Lab now.*\[y/N\]")
    assert "HPA_EXP_RUN_DIR=" in screen and "analyze-hpa-experiment.ipynb" in screen.replace("\n", "")
    terminal.press("n")
    terminal.wait_for(r"backend / status")

    twin = shutil.copytree(run_dir, run_dir.with_name(run_dir.name + "-again"))  # a second run to compare with
    terminal.press("c")
    screen = terminal.wait_for(rf"1\s+{twin.name}", timeout=30)
    terminal.press("1")
    screen = terminal.wait_for(r"KPI comparison \(deltas vs the first run\)", timeout=60)
    assert re.search(r"peak replicas\s+│\s+\d+\s+│\s+\d+\s+│\s+\+0 \(\+0%\)", screen)
    [compared] = (workspace / "experiment-data" / "comparisons").iterdir()
    assert {p.name for p in compared.iterdir()} == {"compare.png", "compare.html", "compare.json"}
    _quit(terminal)


def test_interrupt_a_running_simulation_at_80x24_without_colour(open_terminal, workspace: Path, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path / "kubeconfig", "kind-hpa-lab")
    terminal = open_terminal(80, 24, NO_COLOR="1", KUBECONFIG=str(kubeconfig))
    screen = terminal.wait_for(r"no runs yet under experiment-data")
    assert "kubernetes context kind-hpa-lab" in screen
    assert "no cluster" not in screen
    assert not COLOUR_SGR.search(terminal.screen(colours=True)), "NO_COLOR must remove every colour"
    terminal.press("2")
    screen = terminal.wait_for(r"\[s\] simulate")
    assert "[k] kubernetes, context kind-hpa-lab" in screen
    terminal.press("k")  # the context points at a closed port: the preflight lists the problems
    screen = terminal.wait_for(r"Preflight failed: nothing was applied", timeout=60)
    unreachable = r"Kubernetes API https://127\.0\.0\.1:1\s+\(context\s+kind-hpa-lab\)\s+is\s+not\s+reachable"
    assert re.search(unreachable, screen), screen
    terminal.press("b")
    terminal.wait_for(r"Recent runs")
    assert not (workspace / "experiment-data").exists()
    terminal.press("2")
    terminal.wait_for(r"\[s\] simulate")
    terminal.press("s")
    terminal.wait_for(r"pace: watchable")
    terminal.press("Enter")  # watchable pace: 900 s of experiment in about 12 s
    screen = terminal.wait_for(r"job_started: phase-2-peak-load", timeout=30)
    assert "remaining" in screen and "current" in screen and "queue" in screen

    terminal.press("C-c")
    screen = terminal.wait_for(r"Stop the experiment\? Jobs will be deleted \[y/N\]")
    # The whole dashboard and the question fit in 80x24.
    assert re.search(r"^╭─+ high-load-hpa · simulation ─+╮$", screen, re.MULTILINE)
    assert re.search(r"^╰─+ high-load-hpa-\d{8}-\d{6} ─+╯$", screen, re.MULTILINE)
    assert all(len(line) <= 80 for line in screen.splitlines())
    terminal.press("n")  # changed my mind: the run goes on
    terminal.wait_for(r"job_started: phase-3-sustained", timeout=30)
    terminal.press("C-c")
    terminal.wait_for(r"Stop the experiment\? Jobs will be deleted \[y/N\]")
    terminal.press("y")
    screen = terminal.wait_for(r"stopped: \d job\(s\) deleted, partial run kept in", timeout=30)
    assert not COLOUR_SGR.search(terminal.screen(colours=True))
    [run_dir] = _run_dirs(workspace)
    assert f"experiment-data/{run_dir.name}" in screen
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert "interrupted from the menu" in json.dumps(info)
    assert "(interrupted)" in (run_dir / "events.csv").read_text()
    with (run_dir / "metrics.csv").open(newline="") as fh:
        last_elapsed = float(list(csv.DictReader(fh))[-1]["elapsed_s"])
    assert 240 <= last_elapsed < 900
    _quit(terminal)


def test_create_a_config_by_answering_questions_wide_without_colour(open_terminal, workspace: Path) -> None:
    terminal = open_terminal(120, 36, NO_COLOR="1")
    terminal.wait_for(r"\[q\] quit")
    terminal.press("c")
    screen = terminal.wait_for(r"\[n\] new experiment")
    assert len(re.findall(r"✓ +\S+\.yaml", screen)) == len(SHIPPED_CONFIGS)
    terminal.press("n")
    terminal.wait_for(r"Start from which experiment")
    terminal.press("1")  # baseline-hpa.yaml: sequential
    answers = [
        (r"Name \[baseline-hpa-custom\]:$", "short-steps"),
        (r"Description \[.*\]:$", ""),
        (r"Number of load jobs \[3\]:$", "2"),
        (r"  name \[job-1\]:$", ""),
        (r"rate \(requests per second\) \[7\]:$", "12"),
        (r"duration \[360\]:$", "2m"),
        (r"start delay \[0\]:$", ""),
        (r"  name \[job-2\]:$", "job-1"),
        (r"'job-1' is already the name of an earlier job\n.*name \[job-2\]:$", "second"),
        (r"rate \(requests per second\) \[7\]:$", "lots"),
        (r"must be a number \(got 'lots'\)\n.*rate \(requests per second\) \[7\]:$", "15"),
        (r"duration \[360\]:$", ""),
        (r"start delay \[0\]:$", ""),
        (r"Gap between jobs \[30\]:$", "45"),
        (r"Cooldown after the last job \(0: none\) \[300\]:$", "90s"),
    ]
    for prompt, answer in answers:
        terminal.wait_for(prompt)
        terminal.type_line(answer)
    screen = terminal.wait_for(r"is valid", timeout=30)
    assert "experiment-configs/short-steps.yaml is valid: 2 jobs, sequential" in screen

    written = workspace / "experiment-configs" / "short-steps.yaml"
    text = written.read_text()
    assert "# Sequential mode" in text and "# requests per second" in text
    config = load_config(written)
    assert [(j.name, j.rate, j.duration) for j in config.jobs] == [("job-1", 12.0, 120.0), ("second", 15.0, 360.0)]
    assert (config.gap, config.cooldown.enabled, config.cooldown.duration) == (45.0, True, 90.0)

    assert "[r] run it now" in screen
    terminal.press("b")
    screen = terminal.wait_for(r"\[n\] new experiment")
    assert re.search(r"✓ +short-steps\.yaml +2 +sequential", screen)
    assert not COLOUR_SGR.search(terminal.screen(colours=True))

    terminal.press("b")  # home, then run the new config by typing its path
    terminal.wait_for(r"Recent runs")
    terminal.press("r")
    terminal.wait_for(r"\[t\] type a path")
    terminal.press("t")
    terminal.wait_for(r"Config file:$")
    terminal.type_line("experiment-configs/nope.yaml")
    terminal.wait_for(r"experiment-configs/nope.yaml: no such file")
    terminal.type_line("experiment-configs/short-steps.yaml")
    screen = terminal.wait_for(r"\[s\] simulate")
    assert "2 jobs · total 615 s · peak load 15 req/s" in screen
    terminal.press("b")
    terminal.wait_for(r"Recent runs")
    _quit(terminal)


def test_an_ensemble_from_the_plan_screen_shows_the_spread_at_100x40(open_terminal, workspace: Path) -> None:
    """`e` on the plan screen: the number of seeds, then each KPI's median (p10, p90) and the page."""
    terminal = open_terminal(100, 40)
    terminal.wait_for(r"Recent runs")
    terminal.press(str(SHIPPED_CONFIGS.index("baseline-hpa.yaml") + 1))
    screen = terminal.wait_for(r"\[e\] ensemble")
    terminal.press("e")
    terminal.wait_for(r"Seeds \(from \d+\) \[10\]:")
    terminal.type_line("1")
    terminal.wait_for(r"a whole number from 2 to 1000")
    terminal.type_line("2")
    screen = terminal.wait_for(r"Ensemble finished", timeout=300)
    assert "2 of 2 seeds completed" in screen
    assert "KPIs across seeds: median (p10, p90)" in screen and "GPU-hours" in screen
    [folder] = (workspace / "experiment-data" / "ensembles").iterdir()
    summary = json.loads((folder / "ensemble.json").read_text())
    assert summary["completed"] == 2 and (folder / "replicas-band.png").is_file()
    assert len(_run_dirs(workspace)) == 2
    terminal.press("b")
    terminal.wait_for(r"Recent runs")
    _quit(terminal)
