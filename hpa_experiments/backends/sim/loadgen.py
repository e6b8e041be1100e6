"""Simulated load-generator Job: `vllm bench serve` with the ShareGPT dataset.

Behaviour (vllm/benchmarks/serve.py, /work/shared/reference/sim-model.md section 6):
- arrivals: gaps ~ Gamma(shape=burstiness, scale=1/(rate*burstiness)) (Poisson for burstiness 1),
  first request at the Job's start; `rate=inf` sends everything at once.  vLLM's final rescaling
  of the schedule (last request exactly at N/rate, a 1-2 % correction) is not modelled.
- `max_concurrency`: the arrival schedule runs on regardless; a request whose turn has come while
  `max_concurrency` requests are outstanding is sent when one completes (the client's semaphore).
  Backlogged requests are not stored: they are the next entries of the arrival stream.
- lengths: prompt from a lognormal fitted so that its mean after vLLM's filter (4..1024 tokens,
  prompt + output <= 2048) is ~230 (ShareGPT); output fixed (`--sharegpt-output-len`, 1024 in the
  reference runs) or drawn the same way (mean ~203).  A fixed length is a `max_tokens` cap: with
  the profile's `natural_output_len_mean` set, a request stops earlier at an exponentially
  distributed length (the model emits EOS; vllm bench does not set ignore_eos by default).
- stop: at the Job's stop time it sends nothing more; `stop()` returns the in-flight requests,
  which the caller aborts on the servers: deleting the Job kills the client pod, and vLLM
  cancels requests whose connection closed.  With `num_prompts`, the Job completes after the
  last response.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from hpa_experiments.backends.sim.serving import Request
from hpa_experiments.twin_profiles import Profile

_DRAW_BLOCK = 2048
_INF: Final = float("inf")


def fit_lognormal_mu(mean: float, sigma: float, low: float, high: float) -> float:
    """mu such that a lognormal(mu, sigma) truncated to [low, high] has the given mean (bisection)."""

    def phi(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))

    def truncated_mean(mu: float) -> float:
        a, b = (math.log(low) - mu) / sigma, (math.log(high) - mu) / sigma
        mass = phi(b) - phi(a)
        if mass <= 1e-300:
            return low if mu < math.log(low) else high
        return math.exp(mu + sigma * sigma / 2) * (phi(b - sigma) - phi(a - sigma)) / mass

    lo, hi = math.log(low) - 10 * sigma, math.log(high) + 10 * sigma
    for _ in range(200):
        mid = (lo + hi) / 2
        if truncated_mean(mid) < mean:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


class LengthSampler:
    """ShareGPT-like (prompt, output) token lengths, filtered like vLLM's `is_valid_sequence`."""

    def __init__(self, profile: Profile, rng: np.random.Generator, output_len: int | None) -> None:
        self._p = profile
        self._rng = rng
        self._output_len = output_len
        self._prompt_mu = fit_lognormal_mu(
            profile.prompt_len_mean, profile.prompt_len_sigma, profile.prompt_len_min, profile.prompt_len_max
        )
        self._output_mu = fit_lognormal_mu(
            profile.output_len_mean,
            profile.output_len_sigma,
            profile.output_len_min,
            profile.max_total_len - profile.prompt_len_min,
        )
        # the current block of valid pairs as two lists and a read position (no iterator, no tuple per
        # pair: the compiled core reads them natively)
        self._prompts: list[int] = []
        self._outputs: list[int] = []
        self._i = 0

    def next(self) -> tuple[int, int]:
        i = self._i
        while i >= len(self._prompts):  # block used up (a block with no valid pair: draw again)
            self._draw_block()
            i = 0
        self._i = i + 1
        return self._prompts[i], self._outputs[i]

    def _draw_block(self) -> None:
        p, rng = self._p, self._rng
        prompts = np.rint(rng.lognormal(self._prompt_mu, p.prompt_len_sigma, _DRAW_BLOCK)).astype(np.int64)
        valid = (prompts >= p.prompt_len_min) & (prompts <= p.prompt_len_max)
        if self._output_len is None:
            drawn = rng.lognormal(self._output_mu, p.output_len_sigma, _DRAW_BLOCK)
            outputs = np.rint(drawn).astype(np.int64)
            valid &= (outputs >= p.output_len_min) & (prompts + outputs <= p.max_total_len)
        else:
            outputs = np.full(_DRAW_BLOCK, self._output_len, dtype=np.int64)
            if p.natural_output_len_mean is not None:  # the model may emit EOS before max_tokens
                natural = np.ceil(rng.exponential(p.natural_output_len_mean, _DRAW_BLOCK)).astype(np.int64)
                outputs = np.minimum(outputs, np.maximum(natural, 1))
        self._prompts = prompts[valid].tolist()
        self._outputs = outputs[valid].tolist()
        self._i = 0


class LoadGenerator:
    """One Job's client.  The fleet asks `next_send_time()`, calls `pop_send(t)` and routes the request."""

    def __init__(
        self,
        name: str,
        profile: Profile,
        rate: float,
        start_t: float,
        stop_t: float = math.inf,
        *,
        seed: int = 0,
        max_concurrency: int | None = 512,
        burstiness: float = 1.0,
        num_prompts: int | None = None,
        output_len: int | None = -1,
        job: str | None = None,
    ) -> None:
        """`output_len=-1` takes the profile's; None draws ShareGPT-like output lengths.

        `name` is the Job's resource name; `job` its name in the experiment config (default: `name`)."""
        if not rate > 0:
            raise ValueError(f"load generator {name!r}: rate must be > 0, got {rate}")
        if not burstiness > 0:
            raise ValueError(f"load generator {name!r}: burstiness must be > 0, got {burstiness}")
        self.name = name
        self.job = job or name
        self.rate = rate
        self.start_t = start_t
        self.stop_t = stop_t
        self.max_concurrency = max_concurrency if max_concurrency is not None else math.inf
        self.num_prompts = num_prompts if num_prompts is not None else math.inf
        # the same two limits as floats, for the per-event comparisons (native when compiled)
        self.concurrency_limit = float(self.max_concurrency)
        self._prompt_limit = float(self.num_prompts)
        self._burstiness = burstiness
        fixed = profile.output_len if output_len == -1 else output_len
        self._fixed_output = fixed
        arrival_seed, length_seed = np.random.SeedSequence(seed).spawn(2)
        self._arrival_rng = np.random.default_rng(arrival_seed)
        self._lengths = LengthSampler(profile, np.random.default_rng(length_seed), fixed)
        self._gaps: list[float] = []  # the current block of arrival gaps, read from `_gap_i`
        self._gap_i = 0
        self._next_sched = start_t
        self._last_free_t = -math.inf
        self.in_flight: dict[Request, None] = {}  # an ordered set
        self._next_id = 1  # request numbers within this Job (informational)
        self.stopped = False
        self.sent = self.completed = self.failed = self.aborted = 0

    # ------------------------------------------------------------ driven by the fleet
    def next_send_time(self) -> float:
        """When the next request leaves the client (inf: none before some completion, or never)."""
        if self.stopped or len(self.in_flight) >= self.concurrency_limit or self.sent >= self._prompt_limit:
            return _INF
        t = self._next_sched if self._next_sched >= self._last_free_t else self._last_free_t
        return t if t < self.stop_t else _INF

    def pop_send(self, t: float) -> Request:
        """Emit the next request at `t` (= `next_send_time()`) and move the schedule on."""
        prompt_len, output_len = self._lengths.next()
        reason = "stop" if self._fixed_output is None or output_len < self._fixed_output else "length"
        uid = self._next_id
        self._next_id = uid + 1
        req = Request(uid, t, prompt_len, output_len, self, reason)
        self.in_flight[req] = None
        self.sent += 1
        self._next_sched += self._next_gap()
        return req

    def on_finished(self, req: Request, t: float, ok: bool) -> None:
        """A response came back (ok) or the request failed (server gone, rejected)."""
        if self.in_flight.pop(req, 0) is not None:
            return  # not ours any more (already aborted by stop())
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        self._last_free_t = t

    def stop(self) -> list[Request]:
        """The Job is deleted: send nothing more; returns the in-flight requests to abort."""
        self.stopped = True
        gone = list(self.in_flight)
        self.aborted += len(gone)
        self.in_flight.clear()
        return gone

    @property
    def finished(self) -> bool:
        """All prompts sent and answered (only possible with `num_prompts`)."""
        return self.sent >= self.num_prompts and not self.in_flight

    # ------------------------------------------------------------ internals
    def _next_gap(self) -> float:
        i = self._gap_i
        if i >= len(self._gaps):
            if math.isinf(self.rate):
                self._gaps = [0.0] * _DRAW_BLOCK
            elif math.isinf(self._burstiness):
                self._gaps = [1.0 / self.rate] * _DRAW_BLOCK
            else:
                shape = self._burstiness
                self._gaps = self._arrival_rng.gamma(shape, 1.0 / (self.rate * shape), _DRAW_BLOCK).tolist()
            i = 0
        self._gap_i = i + 1
        return self._gaps[i]
