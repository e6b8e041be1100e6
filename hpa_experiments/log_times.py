"""Line times of a load Job's log: when its client began and ended `vllm bench serve`'s initial test.

The runner reads pod logs with `timestamps=true`: Kubernetes then prefixes every line with the
RFC3339 time the container runtime received it ("2026-12-04T13:51:17.123456789Z text").
`split_stamped` removes the prefixes (the saved log and bench_log.py see the plain text) and
keeps the times of two lines `vllm bench serve` prints around its initial single-prompt request,
which it retries until the endpoint answers (up to --ready-check-timeout-sec):

    Starting initial single prompt test run...
    Initial test run completed.

Their difference is the initial request's end-to-end time as the client saw it; when the
Deployment stood at zero replicas, it includes the whole cold start.
"""

from __future__ import annotations

import re
from datetime import datetime

INITIAL_START_LINE = "Starting initial single prompt test run..."
INITIAL_DONE_LINE = "Initial test run completed."
# JobResult.fields columns (job-results.csv)
INITIAL_START_COLUMN = "initial_test_start_unix"  # when the client sent its first request
INITIAL_TEST_COLUMN = "initial_test_s"  # until that request (or a retry of it) completed

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d) ?")


def _parse_stamp(match: re.Match[str]) -> float:
    fraction = float(match[2]) if match[2] else 0.0  # up to nanoseconds: more than fromisoformat takes
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(match[1] + zone).timestamp() + fraction


def split_stamped(text: str) -> tuple[str, dict[str, float]]:
    """(log without the line times, initial-test columns); the columns are empty when a line is missing."""
    plain: list[str] = []
    started: float | None = None
    done: float | None = None
    for line in text.split("\n"):  # the API server stamps at "\n" only (tqdm's "\r" stays inside a line)
        match = _STAMP.match(line)
        if match is None:
            plain.append(line)
            continue
        body = line[match.end() :]
        plain.append(body)
        content = body.strip()
        if content == INITIAL_START_LINE and started is None:
            started = _parse_stamp(match)
        elif content == INITIAL_DONE_LINE and started is not None and done is None:
            done = _parse_stamp(match)
    marks: dict[str, float] = {}
    if started is not None and done is not None:
        marks = {INITIAL_START_COLUMN: round(started, 3), INITIAL_TEST_COLUMN: round(done - started, 3)}
    return "\n".join(plain), marks
