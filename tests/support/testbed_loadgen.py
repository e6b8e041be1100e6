"""What a load Job's `vllm bench serve` does, for the test bed (no container runtime here).

    python -m tests.support.testbed_loadgen --base-url=http://127.0.0.1:PORT --model=M \
        --request-rate=R --num-prompts=N --max-concurrency=C --sharegpt-output-len=L --seed=S [...]

Takes the Job's own arguments (unknown ones are ignored), sends N streamed OpenAI completions
with Poisson arrivals at rate R and at most C outstanding, and prints the result block of
`vllm bench serve` in its format (the one in the reference runs' job logs).  There is no
ShareGPT file here (the Job's init container ran nothing), so prompts are synthetic: seeded
lengths of 20-400 words.  Exit 0 when the run finished, 1 when the endpoint never came up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TextIO

import aiohttp
import numpy as np

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "models",
    "serve",
    "tokens",
    "to",
    "many",
    "users",
]


@dataclass
class Result:
    ok: bool = False
    ttft: float = 0.0
    latency: float = 0.0
    itl: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    output_tokens: int = 0
    start: float = 0.0
    token_times: list[float] = field(default_factory=list)
    error: str = ""


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vllm bench serve (test bed)")
    p.add_argument("--base-url", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--request-rate", type=float, default=float("inf"))
    p.add_argument("--num-prompts", type=int, default=1000)
    p.add_argument("--max-concurrency", type=int, default=None)
    p.add_argument("--sharegpt-output-len", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--endpoint", default="/v1/completions")
    p.add_argument("--ready-check-timeout-sec", type=int, default=600)
    args, _unknown = p.parse_known_args(argv)
    return args


def prompts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 400))) for _ in range(n)]


async def one_request(
    session: aiohttp.ClientSession, url: str, model: str, prompt: str, max_tokens: int | None
) -> Result:
    payload = {
        "model": model,
        "prompt": prompt,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": False,
    }
    if max_tokens:
        payload["max_tokens"] = max_tokens
    result = Result(start=time.perf_counter())
    last = result.start
    try:
        async with session.post(url, json=payload) as response:
            if response.status != 200:
                result.error = f"HTTP {response.status}: {(await response.text())[:200]}"
                return result
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    line = line.strip()
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        continue
                    event = json.loads(data)
                    now = time.perf_counter()
                    if event.get("choices") and event["choices"][0].get("text"):
                        if not result.token_times:
                            result.ttft = now - result.start
                        else:
                            result.itl.append(now - last)
                        result.token_times.append(now)
                        last = now
                    usage = event.get("usage")
                    if usage:
                        result.prompt_tokens = usage.get("prompt_tokens", 0)
                        result.output_tokens = usage.get("completion_tokens", 0)
        result.latency = time.perf_counter() - result.start
        result.output_tokens = result.output_tokens or len(result.token_times)
        result.ok = bool(result.token_times)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


async def wait_for_endpoint(session: aiohttp.ClientSession, url: str, model: str, timeout_s: int) -> bool:
    print("Starting initial single prompt test run...", flush=True)
    print(f"Waiting for endpoint to become up in {timeout_s} seconds", flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await one_request(session, url, model, "hello", 4)).ok:
            print("Initial test run completed.", flush=True)
            return True
        await asyncio.sleep(1)
    return False


async def run(args: argparse.Namespace) -> int:
    url = args.base_url.rstrip("/") + args.endpoint
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=6 * 3600)) as session:
        if not await wait_for_endpoint(session, url, args.model, args.ready_check_timeout_sec):
            print(f"RuntimeError: Endpoint {url} did not become ready in {args.ready_check_timeout_sec} s", flush=True)
            return 1
        print("Starting main benchmark run...", flush=True)
        print(f"Traffic request rate: {args.request_rate}", flush=True)
        print("Burstiness factor: 1.0 (Poisson process)", flush=True)
        print(f"Maximum request concurrency: {args.max_concurrency}", flush=True)
        rng = np.random.default_rng(args.seed)
        limit = asyncio.Semaphore(args.max_concurrency or args.num_prompts)
        state = {"running": 0, "peak": 0}

        async def limited(prompt: str) -> Result:
            async with limit:
                state["running"] += 1
                state["peak"] = max(state["peak"], state["running"])
                try:
                    return await one_request(session, url, args.model, prompt, args.sharegpt_output_len)
                finally:
                    state["running"] -= 1

        start = time.perf_counter()
        tasks = []
        for prompt in prompts(args.num_prompts, args.seed):
            tasks.append(asyncio.create_task(limited(prompt)))
            if args.request_rate != float("inf"):
                await asyncio.sleep(rng.exponential(1.0 / args.request_rate))
        results = await asyncio.gather(*tasks)
        duration = time.perf_counter() - start
    print_result(args, results, duration, start, state["peak"])
    return 0


def _ms(values: list[float], q: float | None = None) -> float:
    if not values:
        return 0.0
    return float(np.mean(values) if q is None else np.percentile(values, q)) * 1000


def print_result(args: argparse.Namespace, results: list[Result], duration: float, start: float, peak: int) -> None:
    ok = [r for r in results if r.ok]
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    ttfts = [r.ttft for r in ok]
    tpots = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    itls = [x for r in ok for x in r.itl]
    seconds = np.floor(np.array([t - start for r in ok for t in r.token_times] or [0.0]))
    peak_tokens = float(np.bincount(seconds.astype(int)).max()) if total_out else 0.0
    rate = args.request_rate
    print("tip: install termplotlib and gnuplot to plot the metrics")
    print("{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="="))
    print("{:<40} {:<10}".format("Successful requests:", len(ok)))
    print("{:<40} {:<10}".format("Failed requests:", len(results) - len(ok)))
    if args.max_concurrency is not None:
        print("{:<40} {:<10}".format("Maximum request concurrency:", args.max_concurrency))
    if rate != float("inf"):
        print("{:<40} {:<10.2f}".format("Request rate configured (RPS):", rate))
    print("{:<40} {:<10.2f}".format("Benchmark duration (s):", duration))
    print("{:<40} {:<10}".format("Total input tokens:", total_in))
    print("{:<40} {:<10}".format("Total generated tokens:", total_out))
    print("{:<40} {:<10.2f}".format("Request throughput (req/s):", len(ok) / duration))
    print("{:<40} {:<10.2f}".format("Output token throughput (tok/s):", total_out / duration))
    print("{:<40} {:<10.2f}".format("Peak output token throughput (tok/s):", peak_tokens))
    print("{:<40} {:<10.2f}".format("Peak concurrent requests:", peak))
    print("{:<40} {:<10.2f}".format("Total Token throughput (tok/s):", (total_in + total_out) / duration))
    for title, name, values in (
        ("Time to First Token", "TTFT", ttfts),
        ("Time per Output Token (excl. 1st token)", "TPOT", tpots),
        ("Inter-token Latency", "ITL", itls),
    ):
        print("{s:{c}^{n}}".format(s=title, n=50, c="-"))
        print("{:<40} {:<10.2f}".format(f"Mean {name} (ms):", _ms(values)))
        print("{:<40} {:<10.2f}".format(f"Median {name} (ms):", _ms(values, 50)))
        print("{:<40} {:<10.2f}".format(f"P99 {name} (ms):", _ms(values, 99)))
    print("=" * 50, flush=True)
    errors = sorted({r.error for r in results if r.error})
    for error in errors[:5]:
        print(f"error: {error}", file=sys.stderr)


class CriTee:
    """Copies a stream's lines into a container log file in the CRI format kwok's kubelet API
    serves (`<RFC 3339 time> stdout F <line>`), as the container runtime writes it."""

    def __init__(self, stream: TextIO, log: TextIO, name: str):
        self.stream, self.log, self.name, self.partial = stream, log, name, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            self.log.write(f"{stamp} {self.name} F {line}\n")
        self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()
        self.log.flush()


def main(argv: list[str]) -> int:
    cri_path = os.environ.get("TESTBED_CRI_LOG")
    if cri_path:
        log = open(cri_path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
        sys.stdout = CriTee(sys.stdout, log, "stdout")  # type: ignore[assignment]
        sys.stderr = CriTee(sys.stderr, log, "stderr")  # type: ignore[assignment]
    return asyncio.run(run(parse(argv)))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
