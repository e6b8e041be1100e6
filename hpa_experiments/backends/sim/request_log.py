"""The twin's per-request log: `requests.csv` in the run directory, one row per request.

A row is written when the request ends (completed ones in chunks of up to `CHUNK_ROWS`; requests
still in flight when the run ends), so finished requests are not kept in memory beyond a chunk: a
24-hour run streams millions of rows through a 1 MiB write buffer, flushed when full and at
`close()` (a killed process may lose the rows of the last buffer).  Rows are in the order the
fleet reports the ends, not the order requests were sent: each replica's rows in time order,
across replicas only roughly (an engine runs on alone until the next send or pod event, so its
rows may come before earlier ends on another replica).

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from hpa_experiments.backends.sim.csv_columns import Fixed, Integers, Labels, Text, format_rows
from hpa_experiments.backends.sim.job_tally import JobTally
from hpa_experiments.backends.sim.serving import Replica, Request
from hpa_experiments.rundir import REQUEST_COLUMNS, REQUEST_OUTCOMES

COMPLETED, ABORTED_SCALE_DOWN, ABORTED_JOB_STOPPED, REJECTED, RUNNING_AT_END, FAILED_NO_REPLICA = REQUEST_OUTCOMES
BUFFER_BYTES = 1 << 20
CHUNK_ROWS = 1 << 14  # completed requests written together
SMALL_CHUNK = 64  # fewer are formatted one by one (the arrays' fixed cost is ~100 us)
# a completed request's row (REQUEST_COLUMNS): times to 6 decimals, durations to 3, as every row
_COMPLETED_ROW = "%d,%s,%s,%.6f,%.6f,%.3f,%.3f,%s,%.3f,%d,%d,completed,%.3f\n"
T = TypeVar("T")


class _Completed:
    """Completed requests not yet written, as columns (appended while the request is fresh in the
    cache; the compiled core appends native values, no attribute lookups by name)."""

    def __init__(self) -> None:
        self.uid: list[int] = []
        self.client: list[object] = []
        self.replica: list[Replica] = []
        self.sent: list[float] = []
        self.scheduled: list[float] = []
        self.first: list[float] = []
        self.arrival: list[float] = []
        self.end: list[float] = []
        self.prompt: list[int] = []
        self.output: list[int] = []

    def add(self, req: Request, t: float) -> int:
        """Keep `req`, completed at `t`; returns how many are kept."""
        first, scheduled, replica = req.first_token_t, req.scheduled_t, req.replica
        assert first is not None and scheduled is not None and replica is not None  # it completed
        self.uid.append(req.uid)
        self.client.append(req.client)
        self.replica.append(replica)
        self.sent.append(req.sent_t)
        self.scheduled.append(scheduled)
        self.first.append(first)
        self.arrival.append(req.arrival_t)
        self.end.append(t)
        self.prompt.append(req.prompt_len)
        self.output.append(req.output_len)
        return len(self.end)


class RequestLog:
    """Streams requests.csv; `t0` is the run's t0 on the backend's clock.  Each row also goes to its
    job's tally (job_tally.py), from which the simulated client prints its result block.

    Completed requests, the bulk of the rows, are kept (up to `CHUNK_ROWS` of them) and written
    together with numpy (csv_columns.py); any other row, a tally read and `close()` write them
    first, so the file's rows stay in the order the fleet reported the ends."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path = path
        self.t0 = t0
        self._tallies: dict[str, JobTally] = {}
        self._done = _Completed()
        self._fh = path.open("w", newline="", encoding="utf-8", buffering=BUFFER_BYTES)
        self._write = csv.writer(self._fh, lineterminator="\n").writerow
        self._write(REQUEST_COLUMNS)

    @property
    def tallies(self) -> dict[str, JobTally]:
        """Each job's tally of the rows written so far (every row, after `flush`)."""
        self.flush()
        return self._tallies

    def tally(self, job: str) -> JobTally:
        """`job`'s tally, with every request that has ended so far."""
        self.flush()
        return self._tally(job)

    def completed(self, req: Request, t: float) -> None:
        """`req` produced its last token at `t` (the hot path: kept for the next chunk)."""
        if self._done.add(req, t) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the completed requests kept so far, and hand them to their jobs' tallies."""
        done = self._done
        n = len(done.end)
        if not n:
            return
        self._done = _Completed()
        if n >= SMALL_CHUNK:
            self._write_chunk(done)
            return
        for i in range(n):  # a few rows, between rows of other outcomes
            self._fh.write(self._completed_row(done, i))
            tally = self._tally(_client_job(done.client[i]))
            tally.completed_one(done.sent[i], done.first[i], done.end[i], done.prompt[i], done.output[i])

    def _write_chunk(self, done: _Completed) -> None:
        """Rows of many completed requests at once (csv_columns.py), and the tallies' share of them."""
        n = len(done.end)
        sent, first, end = np.array(done.sent), np.array(done.first), np.array(done.end)
        prompt, output = np.array(done.prompt, dtype=np.int64), np.array(done.output, dtype=np.int64)
        clients, client_codes = _distinct(done.client)
        replicas, pod_codes = _distinct(done.replica)
        job_index: dict[str, int] = {}  # clients may share a job name: one code per name
        client_jobs = [job_index.setdefault(_client_job(client), len(job_index)) for client in clients]
        job_codes = np.array(client_jobs, dtype=np.intp)[client_codes]
        jobs = list(job_index)
        t0 = self.t0
        multi = output > 1
        itl = np.zeros(n)  # the same IEEE operations as the Python row (_COMPLETED_ROW)
        itl[multi] = (end[multi] - first[multi]) * 1000.0 / (output[multi] - 1).astype(np.float64)
        columns = (
            Integers(np.array(done.uid, dtype=np.int64)),
            Labels(job_codes, jobs),
            Labels(pod_codes, [replica.pod for replica in replicas]),
            Fixed(sent - t0, 6),
            Fixed(end - t0, 6),
            Fixed((np.array(done.scheduled) - sent) * 1000.0, 3),
            Fixed((first - sent) * 1000.0, 3),
            Fixed(itl, 3, present=multi),
            Fixed((end - sent) * 1000.0, 3),
            Integers(prompt),
            Integers(output),
            Text(COMPLETED),
            Fixed((np.array(done.arrival) - sent) * 1000.0, 3),
        )
        self._fh.write(format_rows(columns, n, lambda i: self._completed_row(done, i)))
        for code, job in enumerate(jobs):
            rows = job_codes == code
            self._tally(job).completed(sent[rows], first[rows], end[rows], prompt[rows], output[rows])

    def _completed_row(self, done: _Completed, i: int) -> str:
        """Row `i` of `done`, formatted by Python (csv_columns.py's fallback)."""
        sent, first, t, output, t0 = done.sent[i], done.first[i], done.end[i], done.output[i], self.t0
        itl = "%.3f" % ((t - first) * 1000.0 / (output - 1)) if output > 1 else ""
        return _COMPLETED_ROW % (
            done.uid[i],
            _client_job(done.client[i]),
            done.replica[i].pod,
            sent - t0,
            t - t0,
            (done.scheduled[i] - sent) * 1000.0,
            (first - sent) * 1000.0,
            itl,
            (t - sent) * 1000.0,
            done.prompt[i],
            output,
            (done.arrival[i] - sent) * 1000.0,
        )

    def _tally(self, job: str) -> JobTally:
        tally = self._tallies.get(job)
        if tally is None:
            tally = self._tallies[job] = JobTally(self.t0)
        return tally

    def ended(self, req: Request, t: float | None, outcome: str, output_tokens: int) -> None:
        """`req` ended at `t` without completing (None: still running when the run ended)."""
        self.flush()
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
        self._tally(job).ended(sent, t, outcome)

    def close(self, in_flight: Iterable[Request], t: float) -> None:
        """Write the requests still in flight at the run's end `t` as `running_at_end`, then close."""
        if self._fh.closed:
            return
        self.flush()
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
    return _client_job(req.client)


def _client_job(client: object) -> str:
    return getattr(client, "job", "") if client is not None else ""


def _replica(req: Request) -> str:
    return req.replica.pod if req.replica is not None else ""


def _distinct(objects: Sequence[T]) -> tuple[list[T], np.ndarray]:
    """The distinct objects (by identity) and, for each element, the index of its object among them:
    a sort of their ids in numpy instead of a dict lookup per element."""
    ids = np.fromiter(map(id, objects), np.intp, len(objects))
    _, first, codes = np.unique(ids, return_index=True, return_inverse=True)
    return [objects[i] for i in first.tolist()], codes
