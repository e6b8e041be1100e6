"""The twin's per-request log: `requests.csv` in the run directory, one row per request.

A row is written when the request ends (or, for requests still in flight, when the run ends), so
finished requests are never kept in memory: a 24-hour run streams millions of rows through a
1 MiB write buffer, flushed when full and at `close()` (a killed process may lose the rows of
the last buffer).  Rows are in the order requests end, not the order they were sent.

Columns (times in seconds since the run's t0, as `elapsed_s` in metrics.csv; durations in ms;
an empty cell means the value does not exist for this request, never 0):

- `request_id`: the request's number within its Job (1, 2, ...); (`job`, `request_id`) is unique.
- `job`: the job's name in the experiment config (phases.csv `job`).
- `replica`: the vLLM pod that served it; empty if it never reached one (it waited at the
  gateway while no pod was Ready).
- `arrival_s`: when the load generator sent it.
- `end_s`: when it completed (last token) or was aborted/rejected; empty for `running_at_end`.
- `queue_wait_ms`: from arrival to the start of the first engine step that scheduled it (gateway
  wait included; a preempted request's later waits are not); empty if never scheduled.
- `ttft_ms`: from arrival to its first output token; empty if none came before it ended.
- `itl_mean_ms`: (last token - first token) / (output tokens - 1), the mean of its inter-token
  gaps (vllm bench's TPOT); completed requests with at least 2 output tokens only.
- `e2e_ms`: from arrival to the last token; completed requests only.
- `prompt_tokens`: its prompt length.  `output_tokens`: output tokens produced by `end_s` (by the
  end of the run for `running_at_end`); the whole answer for `completed`.
- `outcome`: `completed`; `aborted_scale_down` (its pod was removed under it); `aborted_job_stopped`
  (the runner deleted its load Job while it was in flight: the client is gone and vLLM cancels
  it); `rejected` (prompt + output can never fit in one replica's KV cache: vLLM refuses it);
  `running_at_end` (still in flight when the run ended, e.g. with `--keep-jobs`); `failed_no_replica`
  (no pod was Ready when it arrived and the gateway refuses such requests: `gateway_at_zero: fail`).
- `gateway_wait_ms`: how long it waited at the gateway for a Ready pod: 0 when one was Ready at its
  arrival; until a pod took it, or until it ended if none did; empty for `running_at_end` requests
  still held.  Non-zero (or `failed_no_replica`) marks a request that arrived at zero Ready replicas.

vLLM's own histograms measure from the request's arrival at the server; the two agree except for
requests that waited at the gateway.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from hpa_experiments.backends.sim.job_tally import JobTally
from hpa_experiments.backends.sim.serving import Request
from hpa_experiments.rundir import REQUEST_COLUMNS, REQUEST_OUTCOMES

COMPLETED, ABORTED_SCALE_DOWN, ABORTED_JOB_STOPPED, REJECTED, RUNNING_AT_END, FAILED_NO_REPLICA = REQUEST_OUTCOMES
BUFFER_BYTES = 1 << 20
# a completed request's row (REQUEST_COLUMNS): times to 6 decimals, durations to 3, as every row
_COMPLETED_ROW = "%d,%s,%s,%.6f,%.6f,%.3f,%.3f,%s,%.3f,%d,%d,completed,%.3f\n"


class RequestLog:
    """Streams requests.csv; `t0` is the run's t0 on the backend's clock.  Each row also goes to its
    job's tally (job_tally.py), from which the simulated client prints its result block."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path = path
        self.t0 = t0
        self.tallies: dict[str, JobTally] = {}
        self._fh = path.open("w", newline="", encoding="utf-8", buffering=BUFFER_BYTES)
        self._write = csv.writer(self._fh, lineterminator="\n").writerow
        self._write(REQUEST_COLUMNS)

    def completed(self, req: Request, t: float) -> None:
        """`req` produced its last token at `t` (the hot path: one %-format of the whole line, a third
        cheaper than an f-string's per-field formats; no csv quoting needed because job and pod names
        are Kubernetes names, validated by the config)."""
        sent, first, t0 = req.sent_t, req.first_token_t, self.t0
        assert first is not None and req.scheduled_t is not None and req.replica is not None
        output = req.output_len
        job = req.client.job
        itl = "%.3f" % ((t - first) * 1000.0 / (output - 1)) if output > 1 else ""
        self._fh.write(
            _COMPLETED_ROW
            % (
                req.uid,
                job,
                req.replica.pod,
                sent - t0,
                t - t0,
                (req.scheduled_t - sent) * 1000.0,
                (first - sent) * 1000.0,
                itl,
                (t - sent) * 1000.0,
                req.prompt_len,
                output,
                (req.arrival_t - sent) * 1000.0,
            )
        )
        tally = self.tallies.get(job)
        if tally is None:
            tally = self.tallies[job] = JobTally(t0)
        tally.completed(sent, first, t, req.prompt_len, output)

    def ended(self, req: Request, t: float | None, outcome: str, output_tokens: int) -> None:
        """`req` ended at `t` without completing (None: still running when the run ended)."""
        sent, first, scheduled = req.sent_t, req.first_token_t, req.scheduled_t
        job = _job(req)
        self._write(
            (
                req.uid,
                job,
                _replica(req),
                f"{sent - self.t0:.6f}",
                "" if t is None else f"{t - self.t0:.6f}",
                "" if scheduled is None else f"{(scheduled - sent) * 1000.0:.3f}",
                "" if first is None else f"{(first - sent) * 1000.0:.3f}",
                "",
                "",
                req.prompt_len,
                output_tokens,
                outcome,
                _gateway_wait(req, t),
            )
        )
        tally = self.tallies.get(job)
        if tally is None:
            tally = self.tallies[job] = JobTally(self.t0)
        tally.ended(sent, t, outcome)

    def close(self, in_flight: Iterable[Request], t: float) -> None:
        """Write the requests still in flight at the run's end `t` as `running_at_end`, then close."""
        if self._fh.closed:
            return
        for req in in_flight:
            engine = req.replica
            self.ended(req, None, RUNNING_AT_END, engine.tokens_by(req, t) if engine is not None else 0)
        self._fh.close()


def _gateway_wait(req: Request, t: float | None) -> str:
    """Arrival at a pod (Replica.submit resets arrival_t) or the end, minus the send; see the module docstring."""
    if req.replica is not None:
        return f"{(req.arrival_t - req.sent_t) * 1000.0:.3f}"
    return "" if t is None else f"{(t - req.sent_t) * 1000.0:.3f}"


def _job(req: Request) -> str:
    client = req.client
    return getattr(client, "job", "") if client is not None else ""


def _replica(req: Request) -> str:
    return req.replica.pod if req.replica is not None else ""
