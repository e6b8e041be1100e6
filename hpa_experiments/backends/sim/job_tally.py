"""What the simulated client's result block needs, kept per job while requests.csv is written.

The result block (bench_client.py) used to read requests.csv back at the Job's end: a 1 h run at
200 replicas has 3.6 M rows and 350 MB, and reading it peaked at ~850 MiB.  Instead RequestLog
hands every ended request to its job's tally: counts, token totals, first send and last end as
scalars, and for each completed request the values of its requests.csv cells that the block
uses: arrival, TTFT, E2E, TPOT and output length (36 bytes per request, rounded in chunks of
16,384 requests).  Percentiles and vLLM's means need every value, so those columns are the
least that gives the same numbers.

The numbers are those of requests.csv, bit for bit: a cell is the value rounded to 3 or 6
decimals and read back (Python and pandas read such a cell to the nearest double), and
`decimal_round` does that rounding for whole arrays at once; the columns are in the file's row
order, so numpy's sums see the same values in the same order.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

import numpy as np

from hpa_experiments.backends.sim.csv_columns import rounded_scaled

FAILED_OUTCOMES = ("rejected", "aborted_scale_down", "failed_no_replica")


@dataclass
class JobRows:
    """A job's requests as the result block uses them: the completed ones as arrays (`tpot` for those
    with at least 2 output tokens), the rest as totals.  Times as requests.csv has them."""

    first_send_s: float | None  # over all of the job's rows
    last_end_s: float | None  # over the rows that have an end
    failed: int
    prompt_tokens: int  # of the completed requests
    arrival_s: np.ndarray
    ttft_ms: np.ndarray
    e2e_ms: np.ndarray
    output_tokens: np.ndarray  # float64, as read from the file
    tpot_ms: np.ndarray


class JobTally:
    """One job's ended requests (times on the backend's clock; `t0` is the run's t0).

    Completed requests are buffered raw and, every `_FOLD` of them, rounded into the columns the
    result block uses (so the Job's end does not build them all at once); rows() returns views of
    the columns, valid until the tally gets another request."""

    _FOLD = 1 << 14

    def __init__(self, t0: float) -> None:
        self._t0 = t0
        self._sent = array("d")
        self._first = array("d")
        self._end = array("d")
        self._output = array("i")
        # requests.csv's values of the folded requests
        self._arrival_s = array("d")
        self._ttft_ms = array("d")
        self._e2e_ms = array("d")
        self._tpot_ms = array("d")
        self._output_tokens = array("i")
        self.prompt_tokens = 0
        self.failed = 0
        self._min_sent = math.inf
        self._max_end = -math.inf

    def completed(
        self, sent: np.ndarray, first: np.ndarray, end: np.ndarray, prompt: np.ndarray, output: np.ndarray
    ) -> None:
        """Requests that completed (RequestLog's rows, in the file's order): when each was sent, got
        its first token and its last (`end`), and its prompt and output lengths."""
        if not len(sent):
            return
        self._sent.frombytes(np.ascontiguousarray(sent, dtype=np.float64).tobytes())
        self._first.frombytes(np.ascontiguousarray(first, dtype=np.float64).tobytes())
        self._end.frombytes(np.ascontiguousarray(end, dtype=np.float64).tobytes())
        self._output.frombytes(np.ascontiguousarray(output, dtype=np.int32).tobytes())
        self.prompt_tokens += int(np.sum(prompt, dtype=np.int64))
        self._min_sent = min(self._min_sent, float(np.min(sent)))
        self._max_end = max(self._max_end, float(np.max(end)))
        if len(self._sent) >= self._FOLD:
            self._fold()

    def completed_one(self, sent: float, first: float, end: float, prompt: int, output: int) -> None:
        """One completed request (`completed` for a single row)."""
        self._sent.append(sent)
        self._first.append(first)
        self._end.append(end)
        self._output.append(output)
        self.prompt_tokens += prompt
        if sent < self._min_sent:
            self._min_sent = sent
        if end > self._max_end:
            self._max_end = end
        if len(self._sent) >= self._FOLD:
            self._fold()

    def ended(self, sent: float, end: float | None, outcome: str) -> None:
        """A request ended without completing (`end` None: still running at the run's end)."""
        if outcome in FAILED_OUTCOMES:
            self.failed += 1
        if sent < self._min_sent:
            self._min_sent = sent
        if end is not None and end > self._max_end:
            self._max_end = end

    def _fold(self) -> None:
        """Round the buffered requests into the columns (element by element, so folding in chunks
        changes no value), then empty the buffer."""
        if not self._sent:
            return
        t0 = self._t0
        sent, first, end = (np.frombuffer(a, dtype=np.float64) for a in (self._sent, self._first, self._end))
        output = np.frombuffer(self._output, dtype=np.int32).astype(np.int64)
        multi = output > 1
        # the same IEEE operations as RequestLog's rows, then their rounding
        tpot = (end[multi] - first[multi]) * 1000.0 / (output[multi] - 1).astype(np.float64)
        self._arrival_s.frombytes(decimal_round(sent - t0, 6).tobytes())
        self._ttft_ms.frombytes(decimal_round((first - sent) * 1000.0, 3).tobytes())
        self._e2e_ms.frombytes(decimal_round((end - sent) * 1000.0, 3).tobytes())
        self._tpot_ms.frombytes(decimal_round(tpot, 3).tobytes())
        self._output_tokens.extend(self._output)
        del sent, first, end  # the views, before the arrays are emptied
        for raw in (self._sent, self._first, self._end, self._output):
            del raw[:]

    def rows(self) -> JobRows:
        """The job's requests so far, with requests.csv's values (see the module docstring)."""
        self._fold()
        t0 = self._t0
        return JobRows(
            first_send_s=_round_scalar(self._min_sent - t0, 6) if math.isfinite(self._min_sent) else None,
            last_end_s=_round_scalar(self._max_end - t0, 6) if math.isfinite(self._max_end) else None,
            failed=self.failed,
            prompt_tokens=self.prompt_tokens,
            arrival_s=_view(self._arrival_s),
            ttft_ms=_view(self._ttft_ms),
            e2e_ms=_view(self._e2e_ms),
            output_tokens=np.frombuffer(self._output_tokens, dtype=np.int32).astype(np.float64),
            tpot_ms=_view(self._tpot_ms),
        )


def _view(column: array) -> np.ndarray:
    return np.frombuffer(column, dtype=np.float64) if len(column) else np.zeros(0)


def decimal_round(x: np.ndarray, digits: int) -> np.ndarray:
    """`float(f"{v:.{digits}f}")` for every element, exactly (numpy's `round` is not: it scales, rounds
    and divides back).  The scaled value's integer part is right wherever the scaled double is not
    within its own rounding error of a half (csv_columns.rounded_scaled); those few elements are
    formatted in Python."""
    out, near_half = rounded_scaled(x, digits)  # rint(x * scale), and where it may be off
    out /= 10.0**digits
    for i in np.flatnonzero(near_half):
        out[i] = _round_scalar(float(x[i]), digits)
    return out


def _round_scalar(value: float, digits: int) -> float:
    return float(f"{value:.{digits}f}")
