"""Run statuses are an enum in the code and the same plain strings on disk as before."""

from __future__ import annotations

import json

from hpa_experiments.rundir import RUN_STATUSES, RunStatus


def test_statuses_are_the_strings_run_json_has_always_held() -> None:
    assert [s.value for s in RUN_STATUSES] == ["running", "completed", "interrupted", "failed"]
    assert json.dumps({"status": RunStatus.INTERRUPTED}) == '{"status": "interrupted"}'
    assert f"{RunStatus.FAILED}: reason" == "failed: reason"
    assert str(RunStatus.COMPLETED) == "completed"
    assert RunStatus("running") is RunStatus.RUNNING


def test_a_status_read_back_from_run_json_compares_equal_to_the_enum() -> None:
    read = json.loads(json.dumps({"status": RunStatus.COMPLETED}))["status"]
    assert type(read) is str and read == RunStatus.COMPLETED and read in RUN_STATUSES
