"""Run directories are claimed by their mkdir: runs started in the same second get -2, -3, ...

An ensemble starts its seeds at once in separate processes; with a check for the name followed
by a later mkdir, two seeds could pick the same free name and the second failed with "File
exists" (seen as an intermittent failure of a tune worker's two-seed ensemble).
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from hpa_experiments.rundir import RunInfo, RunStatus, RunWriter, create_run_dir

STARTED = 1_800_000_000.0


def test_runs_in_the_same_second_get_numbered_folders(tmp_path: Path) -> None:
    made = [create_run_dir(tmp_path / "runs", "exp", STARTED) for _ in range(3)]
    first = made[0].name
    assert [p.name for p in made] == [first, f"{first}-2", f"{first}-3"]
    assert all(p.is_dir() and not any(p.iterdir()) for p in made)


def _claim(base: str, start: multiprocessing.synchronize.Event) -> str:  # a separate process
    start.wait()
    return create_run_dir(Path(base), "exp", STARTED).name


def test_processes_starting_together_never_share_a_folder(tmp_path: Path) -> None:
    """Eight processes released at the same moment each get a folder of their own."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Event()
        with context.Pool(8) as pool:
            pending = [pool.apply_async(_claim, (str(tmp_path), start)) for _ in range(8)]
            start.set()
            names = [p.get(timeout=120) for p in pending]
    assert len(set(names)) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_the_writer_refuses_a_folder_that_already_holds_files(tmp_path: Path) -> None:
    folder = create_run_dir(tmp_path, "exp", STARTED)
    (folder / "metrics.csv").write_text("x\n")
    info = RunInfo(
        id="r",
        name="exp",
        backend="sim",
        status=RunStatus.RUNNING,
        started_at=STARTED,
        t0=STARTED,
        interval=5.0,
        config={},
        backend_info={},
        versions={},
        pid=1,
    )
    with pytest.raises(FileExistsError, match="not empty"):
        RunWriter(folder, info, ["elapsed_s"], None)
    assert (folder / "metrics.csv").read_text() == "x\n"
