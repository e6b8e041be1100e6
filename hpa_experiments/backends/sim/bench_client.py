"""The twin's load-Job log: what `vllm bench serve` would print, computed from requests.csv's rows.

The runner reads a Job's log before deleting it (Backend.job_logs) and parses the result block
(bench_log.py); the twin prints that block from its own request log (the rows' values are
tallied per job as they are written, job_tally.py, not read back from the file), so a simulated run
gets the same job-logs/ and job-results.csv as a cluster run.  Like the real client, the twin
prints the block only once its Job has finished (every prompt sent and answered); a Job deleted
before that has no block.

Definitions, as vllm/benchmarks/serve.py (`calculate_metrics`) computes them, over the Job's rows:
- successful requests: outcome `completed`; failed: `rejected`, `aborted_scale_down` and
  `failed_no_replica` (the client gets an error response).
- duration: from the Job's first request being sent to the last response (failed ones included).
- total input / generated tokens: prompt and output tokens of the successful requests; request,
  output and total token throughput: those over the duration.
- TTFT: `ttft_ms`; TPOT (excl. 1st token): (latency - TTFT) / (output tokens - 1), i.e. `itl_mean_ms`,
  over requests with at least 2 output tokens; E2EL: `e2e_ms`; all over successful requests.
- ITL: vLLM pools every gap between consecutive streamed chunks of every request.  The mean is
  exact here (sum of (E2EL - TTFT) over sum of (output tokens - 1)); requests.csv keeps only each
  request's mean gap, so median and percentiles treat each request's gaps as equal to its mean
  (the twin's real gaps vary with the batch, so its ITL tail is somewhat understated).
- mean, median, P<p> (numpy's linear-interpolation percentile); `metric_percentiles` from the
  job's template values (vLLM's default "99").  E2EL is printed as with
  `--percentile-metrics ttft,tpot,itl,e2el`.
- peak concurrent requests: vLLM's per-second count: each successful request counts in every
  whole second (since the first send) from the one it was sent in to the one it ended in.
- peak output token throughput: vLLM's largest count of tokens in one such second; token times
  are the first token, then the rest evenly spaced up to the last (the mean gap, as for ITL).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hpa_experiments.backends.sim.job_tally import JobRows, JobTally
from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.bench_log import render_result_block

_CHUNK = 4096  # requests per step of the token-time expansion


def job_log_text(generator: LoadGenerator, tally: JobTally | None, values: dict[str, Any]) -> str:
    """The simulated client's log: its start lines, and the result block once it has finished
    (`tally`: its job's requests as requests.csv has them; None when no requests.csv is written)."""
    concurrency = generator.max_concurrency
    lines = [
        f"hpa-exp digital twin: simulated `vllm bench serve` client of job {generator.job} (Job {generator.name})",
        "Starting main benchmark run...",
        f"Traffic request rate: {generator.rate}",
        f"Burstiness factor: {values.get('burstiness', 1.0)}",
        f"Maximum request concurrency: {concurrency if math.isfinite(concurrency) else None}",
    ]
    text = "\n".join(lines) + "\n"
    if not generator.finished or tally is None:
        return text
    fields = bench_fields(tally.rows(), generator.rate, generator.max_concurrency, values)
    return text + render_result_block(fields)


def bench_fields(rows: JobRows, rate: float, max_concurrency: float, values: dict[str, Any]) -> dict[str, Any]:
    """The result block's fields, in vLLM's order (definitions in the module docstring)."""
    first, last = rows.first_send_s, rows.last_end_s
    duration = float(last - first) if first is not None and last is not None else 0.0
    output, ttft, e2e, tpot = rows.output_tokens, rows.ttft_ms, rows.e2e_ms, rows.tpot_ms
    multi = output > 1
    completed, total_in, total_out = len(output), rows.prompt_tokens, int(output.sum())
    fields: dict[str, Any] = {
        "successful_requests": completed,
        "failed_requests": rows.failed,
    }
    if math.isfinite(max_concurrency):
        fields["max_concurrency"] = int(max_concurrency)
    if math.isfinite(rate):
        fields["request_rate_configured_rps"] = float(rate)
    per_s = (lambda x: x / duration) if duration > 0 else (lambda x: 0.0)
    peak_tokens, peak_concurrent = _peaks(rows.arrival_s, ttft, e2e, output)
    fields |= {
        "duration_s": duration,
        "total_input_tokens": total_in,
        "total_generated_tokens": total_out,
        "request_throughput_rps": per_s(completed),
        "output_throughput_tok_s": per_s(total_out),
        "peak_output_throughput_tok_s": float(peak_tokens),
        "peak_concurrent_requests": float(peak_concurrent),
        "total_throughput_tok_s": per_s(total_in + total_out),
    }
    gaps = output[multi] - 1
    itl_mean = float((e2e[multi] - ttft[multi]).sum() / gaps.sum()) if gaps.sum() > 0 else 0.0
    percentiles = [float(p) for p in str(values.get("metric_percentiles", "99")).split(",")]
    for metric, data, weights in (("ttft", ttft, None), ("tpot", tpot, None), ("itl", tpot, gaps), ("e2el", e2e, None)):
        mean = itl_mean if metric == "itl" else (float(data.mean()) if len(data) else 0.0)
        fields[f"{metric}_mean_ms"] = mean
        median, *tail = weighted_percentiles(data, [50.0, *percentiles], weights)
        fields[f"{metric}_median_ms"] = median
        for p, value in zip(percentiles, tail, strict=True):
            word = str(int(p)) if p.is_integer() else str(p).replace(".", "_")
            fields[f"{metric}_p{word}_ms"] = value
    return fields


def weighted_percentiles(values: np.ndarray, qs: list[float], weights: np.ndarray | None = None) -> list[float]:
    """`np.percentile(np.repeat(values, weights), q)` for each q without building the repeated array
    (0 if empty); the values are sorted once for all q."""
    if weights is None:
        return [float(np.percentile(values, q)) if len(values) else 0.0 for q in qs]
    keep = weights > 0
    if not keep.all():
        values, weights = values[keep], weights[keep]
    n = int(weights.sum())
    if n == 0:
        return [0.0 for _ in qs]
    order = np.argsort(values, kind="stable")
    ends = np.cumsum(weights[order].astype(np.int64))
    values = values[order]
    del order
    out = []
    for q in qs:
        position = q / 100.0 * (n - 1)
        lo, hi = math.floor(position), math.ceil(position)
        v_lo = values[np.searchsorted(ends, lo, side="right")]
        v_hi = values[np.searchsorted(ends, hi, side="right")]
        out.append(float(v_lo + (v_hi - v_lo) * (position - lo)))
    return out


def _peaks(start_s: np.ndarray, ttft_ms: np.ndarray, e2e_ms: np.ndarray, output: np.ndarray) -> tuple[int, int]:
    """vLLM's peak tokens in one second and peak requests active in one second (whole seconds since
    the first send of a successful request).  Done in chunks of requests: every step is element by
    element, and the counts per second are integers, so chunking changes no number."""
    if len(start_s) == 0:
        return 0, 0
    origin = start_s.min()
    steps = [slice(lo, lo + _CHUNK) for lo in range(0, len(start_s), _CHUNK)]
    last_end = max(float((start_s[step] + e2e_ms[step] / 1000.0).max()) for step in steps)
    seconds = math.ceil(last_end - origin) + 1
    concurrent = np.zeros(seconds + 1, dtype=np.int64)
    tokens = np.zeros(seconds, dtype=np.int64)
    for step in steps:
        sent = start_s[step]
        end_s = sent + e2e_ms[step] / 1000.0
        np.add.at(concurrent, (sent - origin).astype(np.int64), 1)
        np.add.at(concurrent, (end_s - origin).astype(np.int64) + 1, -1)
        first = sent + ttft_ms[step] / 1000.0 - origin
        n = output[step].astype(np.int64)
        gap = np.where(n > 1, (end_s - origin - first) / np.maximum(n - 1, 1), 0.0)
        tokens += _tokens_per_second(first, gap, n, seconds)
    return int(tokens.max()), int(np.cumsum(concurrent)[:seconds].max())


def _tokens_per_second(first: np.ndarray, gap: np.ndarray, n: np.ndarray, seconds: int) -> np.ndarray:
    """Tokens at first + k * gap (k = 0 .. n-1) counted per whole second, without listing each token:
    per request and second b, (tokens before b + 1) - (tokens before b)."""
    last = first + (n - 1) * gap
    lo, hi = np.floor(first).astype(np.int64), np.floor(last).astype(np.int64)
    spans = hi - lo + 1
    owner = np.repeat(np.arange(len(n)), spans)
    b = np.repeat(lo, spans) + (np.arange(int(spans.sum())) - np.repeat(np.cumsum(spans) - spans, spans))
    f, g, count = first[owner], gap[owner], n[owner]

    def before(x: np.ndarray) -> np.ndarray:  # how many of a request's tokens come before time x
        with np.errstate(divide="ignore", invalid="ignore"):
            stepped = np.ceil((x - f) / np.where(g > 0, g, 1.0))
        single = (x > f).astype(np.float64)  # one token (or all at once): before x or not
        return np.clip(np.where(g > 0, stepped, single * count), 0, count)

    per = (before(b + 1.0) - before(b.astype(np.float64))).astype(np.int64)
    keep = (b >= 0) & (b < seconds)
    return np.bincount(b[keep], weights=per[keep], minlength=seconds).astype(np.int64)
