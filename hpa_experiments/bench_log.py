"""The result block that `vllm bench serve` prints at its end, read from a load Job's log.

The block (vllm/benchmarks/serve.py, `benchmark()`), as in the reference runs' job logs:

```
============ Serving Benchmark Result ============
Successful requests:                     12573
Failed requests:                         27
...
---------------Time to First Token----------------
Mean TTFT (ms):                          32.58
Median TTFT (ms):                        25.68
P99 TTFT (ms):                           112.59
-----Time per Output Token (excl. 1st token)------
...
==================================================
```

Every `label: number` line of the block becomes one field: known labels get the column names
of `KNOWN_FIELDS`, latency lines `Mean|Median|Std|P<p> <METRIC> (ms)` become `<metric>_<stat>_ms`
(`ttft_p99_ms`, `itl_p99_9_ms`), and a label this module does not know is kept under a name made
from its text, so that no printed number is dropped.  The log around the block (tqdm progress
redrawn with carriage returns, warnings, a traceback) is ignored; a log without a complete block
is reported as such, with its last meaningful line, never as zeros.

This module has no heavy imports: the runner uses it while a run goes on, and the twin uses
`render_result_block` to print the same block from its request log.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

JOB_RESULTS_FILE = "job-results.csv"
JOB_LOGS_DIR = "job-logs"

HEADER = " Serving Benchmark Result "
BLOCK_WIDTH = 50

# label printed by vllm bench serve -> column, in vllm's order; counts are integers
KNOWN_FIELDS: dict[str, str] = {
    "Successful requests": "successful_requests",
    "Failed requests": "failed_requests",
    "Maximum request concurrency": "max_concurrency",
    "Request rate configured (RPS)": "request_rate_configured_rps",
    "Benchmark duration (s)": "duration_s",
    "Total input tokens": "total_input_tokens",
    "Total generated tokens": "total_generated_tokens",
    "Request throughput (req/s)": "request_throughput_rps",
    "Request goodput (req/s)": "request_goodput_rps",
    "Output token throughput (tok/s)": "output_throughput_tok_s",
    "Peak output token throughput (tok/s)": "peak_output_throughput_tok_s",
    "Peak concurrent requests": "peak_concurrent_requests",
    "Total Token throughput (tok/s)": "total_throughput_tok_s",
}
INTEGER_FIELDS = frozenset(
    {"successful_requests", "failed_requests", "max_concurrency", "total_input_tokens", "total_generated_tokens"}
)
# metric name in the block -> section header vLLM prints above it
METRIC_HEADERS: dict[str, str] = {
    "TTFT": "Time to First Token",
    "TPOT": "Time per Output Token (excl. 1st token)",
    "ITL": "Inter-token Latency",
    "E2EL": "End-to-end Latency",
}
_LINE = re.compile(r"^(?P<label>[^:]+):\s+(?P<value>\S+)\s*$")
_LATENCY = re.compile(r"^(?P<stat>Mean|Median|Std|P(?P<p>\d+(?:\.\d+)?)) (?P<metric>[A-Za-z0-9]+) \(ms\)$")

# statuses of a job-results.csv row
OK = "ok"  # a complete block
INCOMPLETE = "incomplete_block"  # the block started but the log ends inside it
NO_BLOCK = "no_result_block"  # the log has no block (killed before it printed, or crashed)
NO_LOG = "no_log"  # no log could be read (no pod, API error)

BASE_COLUMNS = ["job", "resource_name", "pod", "source", "status", "note"]


def field_name(label: str) -> str:
    """The column for a block label: `P99 TTFT (ms)` -> `ttft_p99_ms`; unknown labels by their text."""
    label = label.strip()
    if label in KNOWN_FIELDS:
        return KNOWN_FIELDS[label]
    latency = _LATENCY.match(label)
    if latency:
        stat = latency["stat"].lower() if latency["p"] is None else "p" + latency["p"].replace(".", "_")
        return f"{latency['metric'].lower()}_{stat}_ms"
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _number(text: str, column: str) -> float | int:
    value = float(text)
    if column in INTEGER_FIELDS and value.is_integer():
        return int(value)
    return value


@dataclass
class BenchLog:
    """What one pod's log says: the fields of its last result block and how complete it is."""

    status: str
    fields: dict[str, float | int] = field(default_factory=dict)
    note: str = ""


def parse_bench_log(text: str) -> BenchLog:
    """Fields of the last result block in `text` (a whole pod log)."""
    lines = [part.strip() for part in re.split(r"[\r\n]+", text)]
    starts = [i for i, line in enumerate(lines) if HEADER.strip() in line]
    if not starts:
        return BenchLog(NO_BLOCK, note=_last_words(lines))
    fields: dict[str, float | int] = {}
    complete = False
    for line in lines[starts[-1] + 1 :]:
        if line and set(line) == {"="}:
            complete = True
            break
        if not line or set(line) <= {"-"} or line.startswith("-"):
            continue  # a section header such as ---Time to First Token---
        match = _LINE.match(line)
        if match is None:
            continue
        column = field_name(match["label"])
        try:
            fields[column] = _number(match["value"], column)
        except ValueError:
            continue
    if not complete:
        return BenchLog(INCOMPLETE, fields, "the log ends inside the result block")
    return BenchLog(OK, fields)


def _last_words(lines: Sequence[str]) -> str:
    """The last line that says something (an exception after a traceback, or where it stopped)."""
    for line in reversed(lines):
        if line and "%|" not in line and "it/s]" not in line:
            return "no result block; the log ends with: " + line[:200]
    return "no result block; the log is empty"


# --- printing the block (the twin) -------------------------------------------------------------


def render_result_block(fields: Mapping[str, float | int], labels: Mapping[str, str] | None = None) -> str:
    """The block as vllm bench serve prints it; `fields` maps column -> value in print order.

    Latency columns (`ttft_mean_ms`, `itl_p99_ms`) are grouped under vLLM's section headers."""
    names = {column: label for label, column in KNOWN_FIELDS.items()} | dict(labels or {})
    out = ["{s:{c}^{n}}".format(s=HEADER, n=BLOCK_WIDTH, c="=")]
    section = None
    for column, value in fields.items():
        latency = re.fullmatch(r"([a-z0-9]+)_(mean|median|std|p[\d_]+)_ms", column)
        if latency:
            metric = latency[1].upper()
            if metric != section:
                section = metric
                header = METRIC_HEADERS.get(metric, metric)
                out.append("{s:{c}^{n}}".format(s=header, n=BLOCK_WIDTH, c="-"))
            stat = latency[2]
            stat_label = stat.capitalize() if not stat.startswith("p") else "P" + stat[1:].replace("_", ".")
            label = f"{stat_label} {metric} (ms)"
        else:
            label = names.get(column, column)
        number = f"{value:<10}" if isinstance(value, int) else f"{value:<10.2f}"
        out.append(f"{label + ':':<40} {number}")
    out.append("=" * BLOCK_WIDTH)
    return "\n".join(out) + "\n"


# --- job-results.csv ----------------------------------------------------------------------------


@dataclass
class JobResult:
    """One row of job-results.csv."""

    job: str
    resource_name: str
    pod: str
    source: str  # "vllm bench serve log" | "twin requests.csv"
    status: str
    note: str = ""
    fields: dict[str, float | int] = field(default_factory=dict)

    def row(self) -> dict[str, object]:
        base = {c: getattr(self, c) for c in BASE_COLUMNS}
        return base | self.fields


def write_job_results(path: Path, results: Iterable[JobResult]) -> None:
    """(Re)write the whole file atomically: base columns, then every field in order of appearance."""
    rows = [r.row() for r in results]
    columns = list(BASE_COLUMNS)
    for row in rows:
        columns += [c for c in row if c not in columns]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _cell(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return "" if math.isnan(value) else str(value)
    return value


def choose_result(results: Sequence[JobResult]) -> JobResult:
    """A Job may have had several pods (retries): the last one with a complete block, else the last."""
    for result in reversed(results):
        if result.status == OK:
            return result
    return results[-1]
