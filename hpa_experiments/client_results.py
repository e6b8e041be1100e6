"""Client-side truth: a load Job's pod logs and its `vllm bench serve` results, kept before deletion.

The runner calls `collect` just before it deletes a Job (at its planned end, after the results
grace, on interrupt or cleanup).  The logs go to `job-logs/<pod>.log`; the result block of each
log is parsed (bench_log.py) and one row per Job is (re)written to `job-results.csv`.
A Job whose log has no complete block is said so: a warning event now, and the row's status and
note, which the summary's `client` section and the report repeat.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hpa_experiments.backends.base import Backend, PodLog
from hpa_experiments.bench_log import (
    JOB_LOGS_DIR,
    JOB_RESULTS_FILE,
    NO_LOG,
    OK,
    JobResult,
    choose_result,
    parse_bench_log,
    write_job_results,
)
from hpa_experiments.errors import HpaExpError


class ClientResults:
    """Collects the load Jobs' logs and results of one run into its directory."""

    def __init__(self, run_dir: Path, backend: Backend, event: Callable[[str, str], None]):
        self.run_dir = run_dir
        self.backend = backend
        self._event = event
        self.results: list[JobResult] = []

    def collect(self, job: str, resource: str, why_missing: str = "") -> JobResult:
        """Save the Job's logs, parse them and record its row; `why_missing` explains a missing block."""
        try:
            logs = self.backend.job_logs(resource)
        except HpaExpError as exc:
            result = JobResult(job, resource, "", "", NO_LOG, f"logs not read: {exc}")
        else:
            if logs:
                result = choose_result([self._one(job, resource, log) for log in logs])
            else:
                result = JobResult(job, resource, "", "", NO_LOG, "the Job has no pods to read a log from")
        if result.status == OK:
            f = result.fields
            self._event(
                "job_results",
                f"{job}: {f.get('successful_requests', '?')} requests ok, {f.get('failed_requests', '?')} failed, "
                f"TTFT median {f.get('ttft_median_ms', '?')} ms (client side, job-results.csv)",
            )
        else:
            if why_missing:
                result.note = f"{result.note}; {why_missing}" if result.note else why_missing
            self._event("warning", f"{job}: no vllm bench serve results ({result.status}): {result.note}")
        self.results.append(result)
        write_job_results(self.run_dir / JOB_RESULTS_FILE, self.results)
        return result

    def _one(self, job: str, resource: str, log: PodLog) -> JobResult:
        folder = self.run_dir / JOB_LOGS_DIR
        folder.mkdir(exist_ok=True)
        name = log.pod if not log.container else f"{log.pod}_{log.container}"
        (folder / f"{name}.log").write_text(log.text, encoding="utf-8")
        parsed = parse_bench_log(log.text)
        fields = parsed.fields | log.line_times  # the initial test's times, when the log had line times
        return JobResult(job, resource, log.pod, log.source, parsed.status, parsed.note, fields)
