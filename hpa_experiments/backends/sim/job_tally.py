"""What the simulated client's result block needs, kept per job while requests.csv is written.

The result block (bench_client.py) used to read requests.csv back at the Job's end: a 1 h run at
200 replicas has 3.6 M rows and 350 MB, and reading it peaked at ~850 MiB.  Instead RequestLog
hands every ended request to its job's tally: counts, token totals, first send and last end as
scalars, and for each completed request its send, first-token and end times and output length
(4 compact columns, 28 bytes per request).  Percentiles and vLLM's means need every value, so
those columns are the least that gives the same numbers.

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
    """One job's ended requests (times on the backend's clock; `t0` is the run's t0)."""

    def __init__(self, t0: float) -> None:
        self._t0 = t0
        self._sent = array("d")
        self._first = array("d")
        self._end = array("d")
        self._output = array("i")
        self.prompt_tokens = 0
        self.failed = 0
        self._min_sent = math.inf
        self._max_end = -math.inf

    def completed(self, sent: float, first: float, end: float, prompt: int, output: int) -> None:
        """A request completed at `end` (RequestLog.completed's row)."""
        self._sent.append(sent)
        self._first.append(first)
        self._end.append(end)
        self._output.append(output)
        self.prompt_tokens += prompt
        if sent < self._min_sent:
            self._min_sent = sent
        if end > self._max_end:
            self._max_end = end

    def ended(self, sent: float, end: float | None, outcome: str) -> None:
        """A request ended without completing (`end` None: still running at the run's end)."""
        if outcome in FAILED_OUTCOMES:
            self.failed += 1
        if sent < self._min_sent:
            self._min_sent = sent
        if end is not None and end > self._max_end:
            self._max_end = end

    def rows(self) -> JobRows:
        """The job's requests so far, with requests.csv's values (see the module docstring)."""
        t0 = self._t0
        sent = np.frombuffer(self._sent, dtype=np.float64) if len(self._sent) else np.zeros(0)
        first = np.frombuffer(self._first, dtype=np.float64) if len(self._first) else np.zeros(0)
        end = np.frombuffer(self._end, dtype=np.float64) if len(self._end) else np.zeros(0)
        output = np.asarray(self._output, dtype=np.int64)
        multi = output > 1
        # the same IEEE operations as RequestLog.completed's f-string, then its rounding
        tpot = (end[multi] - first[multi]) * 1000.0 / (output[multi] - 1).astype(np.float64)
        return JobRows(
            first_send_s=_round_scalar(self._min_sent - t0, 6) if math.isfinite(self._min_sent) else None,
            last_end_s=_round_scalar(self._max_end - t0, 6) if math.isfinite(self._max_end) else None,
            failed=self.failed,
            prompt_tokens=self.prompt_tokens,
            arrival_s=decimal_round(sent - t0, 6),
            ttft_ms=decimal_round((first - sent) * 1000.0, 3),
            e2e_ms=decimal_round((end - sent) * 1000.0, 3),
            output_tokens=output.astype(np.float64),
            tpot_ms=decimal_round(tpot, 3),
        )


def decimal_round(x: np.ndarray, digits: int) -> np.ndarray:
    """`float(f"{v:.{digits}f}")` for every element, exactly (numpy's `round` is not: it scales, rounds
    and divides back).  The scaled value's integer part is right wherever the scaled double is not
    within its own rounding error of a half; those few elements are formatted in Python."""
    scale = 10.0**digits
    scaled = x * scale
    distance = np.trunc(scaled)  # becomes |fraction - 1/2|, in place (a few arrays of millions of requests)
    np.subtract(scaled, distance, out=distance)
    np.abs(distance, out=distance)
    distance -= 0.5
    np.abs(distance, out=distance)
    tolerance = np.abs(scaled)
    tolerance *= 2.0**-48
    tolerance += 2.0**-60
    near_half = distance <= tolerance
    del distance, tolerance
    near_half |= ~np.isfinite(scaled)
    out = np.rint(scaled, out=scaled)
    out /= scale
    for i in np.flatnonzero(near_half):
        out[i] = _round_scalar(float(x[i]), digits)
    return out


def _round_scalar(value: float, digits: int) -> float:
    return float(f"{value:.{digits}f}")
