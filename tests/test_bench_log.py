"""The `vllm bench serve` result-block parser on every real job log of the reference runs.

Expectations for three logs are written by hand from the text of their blocks; for every log the
test checks, line by line against the block's own text, that each printed number was parsed into
its column with the printed value, none missing and none extra.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from hpa_experiments.bench_log import (
    INCOMPLETE,
    NO_BLOCK,
    OK,
    JobResult,
    choose_result,
    field_name,
    parse_bench_log,
    render_result_block,
    write_job_results,
)
from tests.support.tools import missing

RUNS = Path("/work/shared/reference-runs/latency-vs-load/runs")
LOGS = sorted(RUNS.glob("*/job-logs/*.log.gz"))


def _read(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
        return fh.read()


def _block_lines(text: str) -> list[tuple[str, str]]:
    """(label, value text) of each number line of the block, read independently of the parser."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Serving Benchmark Result" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "=" * 50)
    out = []
    for line in lines[start + 1 : end]:
        if ":" in line:
            label, value = line.split(":", 1)
            out.append((label.strip(), value.strip()))
    return out


def test_the_reference_logs_are_there() -> None:
    if not LOGS:
        missing(f"the reference runs' Job logs are not in {RUNS}")
    assert len(LOGS) == 42


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.parent.parent.name + "/" + p.name[-16:-7])
def test_every_printed_number_is_parsed(path: Path) -> None:
    text = _read(path)
    parsed = parse_bench_log(text)
    assert parsed.status == OK, parsed.note
    printed = _block_lines(text)
    assert len(printed) == 21  # the block of these runs: 12 totals + TTFT, TPOT, ITL x (mean, median, P99)
    assert len(parsed.fields) == len(printed), "a printed number was dropped or invented"
    for label, value in printed:
        column = field_name(label)
        assert column in parsed.fields, f"{label!r} not parsed"
        assert parsed.fields[column] == pytest.approx(float(value), abs=0), label


HAND = {
    # model-based-high-parallel-20251209-224705, job high-20 (block copied by eye from the log)
    "vllm-bench-sharegpt-load-high-20-g7ngv": {
        "successful_requests": 17984,
        "failed_requests": 16,
        "max_concurrency": 512,
        "request_rate_configured_rps": 20.0,
        "duration_s": 910.11,
        "total_input_tokens": 4234711,
        "total_generated_tokens": 8180193,
        "request_throughput_rps": 19.76,
        "output_throughput_tok_s": 8988.12,
        "peak_output_throughput_tok_s": 17840.0,
        "peak_concurrent_requests": 585.0,
        "total_throughput_tok_s": 13641.07,
        "ttft_mean_ms": 486.0,
        "ttft_median_ms": 40.25,
        "ttft_p99_ms": 18768.45,
        "tpot_mean_ms": 25.82,
        "tpot_median_ms": 13.96,
        "tpot_p99_ms": 84.76,
        "itl_mean_ms": 24.86,
        "itl_median_ms": 13.16,
        "itl_p99_ms": 96.63,
    },
    "vllm-bench-sharegpt-load-moderate-10-phase4-xbqqm": {
        "successful_requests": 5968,
        "failed_requests": 32,
        "max_concurrency": 512,
        "request_rate_configured_rps": 10.0,
        "duration_s": 607.76,
        "total_input_tokens": 1393057,
        "total_generated_tokens": 2683299,
        "request_throughput_rps": 9.82,
        "output_throughput_tok_s": 4415.04,
        "peak_output_throughput_tok_s": 6503.0,
        "peak_concurrent_requests": 76.0,
        "total_throughput_tok_s": 6707.14,
        "ttft_mean_ms": 26.77,
        "ttft_median_ms": 25.13,
        "ttft_p99_ms": 47.73,
        "tpot_mean_ms": 9.08,
        "tpot_median_ms": 9.14,
        "tpot_p99_ms": 11.52,
        "itl_mean_ms": 9.07,
        "itl_median_ms": 8.78,
        "itl_p99_ms": 21.06,
    },
    "vllm-bench-sharegpt-load-3-qm5tr": {
        "successful_requests": 5040,
        "failed_requests": 0,
        "max_concurrency": 512,
        "request_rate_configured_rps": 14.0,
        "duration_s": 369.7,
        "total_input_tokens": 1163828,
        "total_generated_tokens": 2309742,
        "request_throughput_rps": 13.63,
        "output_throughput_tok_s": 6247.58,
        "peak_output_throughput_tok_s": 9561.0,
        "peak_concurrent_requests": 319.0,
        "total_throughput_tok_s": 9395.59,
        "ttft_mean_ms": 61.45,
        "ttft_median_ms": 55.63,
        "ttft_p99_ms": 139.91,
        "tpot_mean_ms": 24.44,
        "tpot_median_ms": 23.54,
        "tpot_p99_ms": 48.98,
        "itl_mean_ms": 24.55,
        "itl_median_ms": 22.43,
        "itl_p99_ms": 62.13,
    },
}


@pytest.mark.parametrize("pod", sorted(HAND))
def test_hand_written_expectations(pod: str) -> None:
    (path,) = [p for p in LOGS if p.name.endswith(f"_{pod}.log.gz")]
    fields = parse_bench_log(_read(path)).fields
    assert fields == HAND[pod]
    assert isinstance(fields["successful_requests"], int)


def _a_log() -> str:
    return _read(next(p for p in LOGS if p.name.endswith("-g7ngv.log.gz")))


def test_truncated_log_has_no_block_and_says_where_it_stopped() -> None:
    text = _a_log()
    cut = text[: text.index("tip: install termplotlib")]
    parsed = parse_bench_log(cut)
    assert parsed.status == NO_BLOCK and parsed.fields == {}
    assert parsed.note.startswith("no result block; the log ends with: Maximum request concurrency: 512")


def test_log_cut_inside_the_block() -> None:
    text = _a_log()
    cut = text[: text.index("Median TPOT")]
    parsed = parse_bench_log(cut)
    assert parsed.status == INCOMPLETE
    assert parsed.fields["successful_requests"] == 17984 and parsed.fields["tpot_mean_ms"] == 25.82
    assert "tpot_median_ms" not in parsed.fields


def test_traceback_without_block_names_the_exception() -> None:
    text = (
        "Starting main benchmark run...\n  5%|▌   | 900/18000 [00:45<14:10, 20.1it/s]\r"
        'Traceback (most recent call last):\n  File "/usr/bin/vllm", line 8, in <module>\n'
        "aiohttp.client_exceptions.ServerDisconnectedError: Server disconnected\n"
    )
    parsed = parse_bench_log(text)
    assert parsed.status == NO_BLOCK
    assert parsed.note.endswith("ServerDisconnectedError: Server disconnected")


def test_warnings_and_a_traceback_before_the_block_do_not_disturb_it() -> None:
    text = _a_log()
    noisy = text.replace(
        "tip: install termplotlib",
        "WARNING 12-09 20:02:11 [serve.py:1] Request failed: timeout\nTraceback (most recent call last):\n"
        '  File "x.py", line 1\nTimeoutError: read timeout\ntip: install termplotlib',
    )
    assert parse_bench_log(noisy).fields == HAND["vllm-bench-sharegpt-load-high-20-g7ngv"]


def test_two_blocks_the_last_counts() -> None:
    text = _a_log()
    second = text.replace("Successful requests:                     17984", "Successful requests:  1")
    assert parse_bench_log(text + second).fields["successful_requests"] == 1


def test_unknown_labels_and_other_percentiles_are_kept() -> None:
    text = (
        "============ Serving Benchmark Result ============\n"
        "Successful requests:                     10        \n"
        "Request goodput (req/s):                 1.50      \n"
        "Some future metric (x):                  7.00      \n"
        "----------------End-to-end Latency----------------\n"
        "P99.9 E2EL (ms):                         12.50     \n"
        "==================================================\n"
    )
    assert parse_bench_log(text).fields == {
        "successful_requests": 10,
        "request_goodput_rps": 1.5,
        "some_future_metric_x": 7.0,
        "e2el_p99_9_ms": 12.5,
    }


def test_render_prints_what_the_parser_reads_back() -> None:
    fields = HAND["vllm-bench-sharegpt-load-3-qm5tr"] | {"e2el_mean_ms": 1234.5, "e2el_p99_9_ms": 2000.25}
    block = render_result_block(fields)
    assert "-----Time per Output Token (excl. 1st token)------" in block
    assert re.search(r"^P99\.9 E2EL \(ms\):\s+2000\.25\s*$", block, re.M)
    assert parse_bench_log(block).fields == fields
    # vllm's layout: label padded to 40, value to 10
    assert "Successful requests:                     5040      \n" in block


def test_job_results_file(tmp_path: Path) -> None:
    ok = JobResult("a", "a-r1", "a-r1-x", "vllm bench serve log", OK, fields={"successful_requests": 3, "x": 1.5})
    missing = JobResult("b", "b-r1", "b-r1-y", "vllm bench serve log", NO_BLOCK, "no result block")
    path = tmp_path / "job-results.csv"
    write_job_results(path, [ok, missing])
    lines = path.read_text().splitlines()
    assert lines[0] == "job,resource_name,pod,source,status,note,successful_requests,x"
    assert lines[2] == "b,b-r1,b-r1-y,vllm bench serve log,no_result_block,no result block,,"
    assert choose_result([ok, missing]) is ok and choose_result([missing]) is missing
