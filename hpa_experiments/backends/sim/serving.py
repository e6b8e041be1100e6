"""One simulated vLLM engine (V1 scheduler): continuous batching on virtual time.

What is modelled, per engine step (exact at step granularity):
- FCFS waiting queue and a running batch in admission order; `max_num_seqs`;
  `max_num_batched_tokens` shared by one decode token per running sequence and prefill
  chunks (chunked prefill: a prompt larger than the remaining budget is split over steps).
- KV cache in blocks of `block_size` tokens: a sequence holds ceil(computed tokens / block)
  blocks; a waiting request is admitted only if its first chunk's blocks are free (strict FCFS:
  a blocked head blocks the queue); when a step cannot allocate its decode blocks the most
  recently admitted sequence is preempted (recompute: blocks freed, put back at the head of the
  queue, later re-prefilled with prompt + generated tokens); no admissions in a step that
  preempted.  KV usage = used blocks / (blocks - 1), as vLLM's BlockPool.
- step time = max(floor, b0 + b1 * prefill tokens + b2 * decoding sequences) (profile): a roofline,
  small batches are bound by reading the weights (the floor), large ones grow with the batch.
- metrics as vLLM exposes them: TTFT at the end of the step that completes the first prefill,
  one inter-token observation per sequence per decode step (the step's duration; after a
  preemption, the gap since the sequence's previous token), E2E at the last token.

How it stays fast: steps that only decode a fixed set of sequences (no prefill, no admission
possible, no preemption needed) are identical, so a run of k such steps is applied at once:
time += k * dt, `k * n` inter-token observations of value dt added to one bucket, KV blocks
advanced with per-phase counters (a sequence's token count modulo the block size decides at
which step it needs a new block), finishing order from a heap of finish steps.  The run ends at
the next event that changes the composition (a finish, KV exhaustion) or is cut at the first
step boundary after a new arrival.  Nothing is approximated by this aggregation (the tests
compare it with a plain step-by-step scheduler: identical token times); the model's
simplifications are elsewhere: no prefix caching, scheduler overheads folded into b0, a
decoding sequence's block needs are served before partial prefills, and preemption picks the
victim once per step for the step's whole demand.

Timing convention: a step's composition is fixed at its start, when every earlier arrival is
known; requests submitted while a step runs wait for the next one (a new arrival ends a decode
run at the first step boundary after it).  A metric read at t applies the decode steps that
started before t, so counters may include the step in progress (less than one step ahead);
gauges describe the batch of the step in progress.  Cancelled requests (client gone) leave the
engine at the next step boundary and count as `finished_reason="abort"`.

Memory: only live requests are kept; finished ones leave no trace besides the counters.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import accumulate, repeat
from types import MappingProxyType
from typing import Any, Final

from hpa_experiments.backends.sim.histogram import (
    ITL_BUCKETS,
    REQUEST_LATENCY_BUCKETS,
    TTFT_BUCKETS,
    Histogram,
    format_le,
)
from hpa_experiments.twin_profiles import Profile

# request states and engine plans (Final: the compiled core inlines them)
WAITING: Final = 0
PREFILL: Final = 1
DECODE: Final = 2
FINISHED: Final = 3
ABORTED: Final = 4
_IDLE: Final = 0
_STEP: Final = 1
_DECODE_RUN: Final = 2
_INF: Final = float("inf")
# a finish-heap entry is one int, (finish step << _SEQ_BITS) | entry seq: it orders as the pair
# (finish step, seq) while seq < 2**_SEQ_BITS (entries per engine), and needs no tuple
_SEQ_BITS: Final = 40
_SEQ_MASK: Final = 0xFF_FFFF_FFFF  # (1 << _SEQ_BITS) - 1

FinishCallback = Callable[["Request", float, bool], None]


class Request:
    """One request as the engine sees it; the client fields (`client`, `finish_reason`) are opaque.

    Requests are tracked by identity; `uid` is only a label (e.g. the number within its Job)."""

    __slots__ = (
        "arrival_t",
        "blocks",
        "cancelled",
        "client",
        "computed",
        "finish_reason",
        "finish_step",
        "first_token_t",
        "generated",
        "heap_seq",
        "last_token_t",
        "offset",
        "output_len",
        "prompt_len",
        "replica",
        "scheduled_t",
        "sent_t",
        "state",
        "uid",
    )

    def __init__(
        self,
        uid: int,
        arrival_t: float,
        prompt_len: int,
        output_len: int,
        client: Any = None,
        finish_reason: str = "length",
    ) -> None:
        self.uid = uid
        self.arrival_t = arrival_t  # reset by `Replica.submit` to when it reaches the server
        self.sent_t = arrival_t  # when the client sent it (kept)
        self.prompt_len = prompt_len
        self.output_len = output_len
        self.client = client
        self.finish_reason = finish_reason
        self.state = WAITING
        self.cancelled = False  # the client went away; removed from the engine at a step boundary
        self.generated = 0  # output tokens produced so far (exact except while DECODE: see finish_step)
        self.computed = 0  # tokens whose KV is computed (while PREFILL)
        self.blocks = 0  # KV blocks held (while PREFILL)
        self.offset = 0  # while DECODE: computed tokens = offset + replica step counter
        self.finish_step = 0  # while DECODE: step counter value at which the last token is produced
        self.heap_seq = -1
        self.scheduled_t: float | None = None  # start of the first engine step that took it in
        self.first_token_t: float | None = None
        self.last_token_t = arrival_t
        self.replica: Replica | None = None


class Replica:
    """A vLLM engine.  Drive it with `advance_to`, `submit`, `abort`; read it with `metric_families`."""

    def __init__(
        self,
        profile: Profile,
        start_t: float = 0.0,
        on_finished: FinishCallback | None = None,
        engine: str = "0",
        pod: str = "",
    ) -> None:
        self.profile = profile
        self.pod = pod  # the pod it runs in, for the per-request log
        self.labels: Mapping[str, str] = MappingProxyType({"model_name": profile.model_name, "engine": engine})
        self._on_finished = on_finished
        self._b0 = profile.step_base_s
        self._b1 = profile.step_per_prefill_token_s
        self._b2 = profile.step_per_decode_seq_s
        self._floor = profile.step_floor_s
        self._max_seqs = profile.max_num_seqs
        self._max_tokens = profile.max_num_batched_tokens
        self._block = profile.block_size
        self.usable_blocks = profile.kv_blocks - 1

        self.index_entry: Any = None  # the fleet's EngineIndex keeps its record here (engine_index._Entry)
        self.t = start_t  # the step boundary the state describes (or idle time)
        self._s = 0  # engine step counter
        self.waiting: deque[Request] = deque()
        self.running: dict[Request, None] = {}  # an ordered set: admission order, the last is preempted first
        self._prefilling: list[Request] = []  # running requests still in (chunked) prefill
        self._n_decode = 0
        self._phase = [0] * self._block  # decoding sequences by offset % block
        self._heap: list[int] = []  # finish-heap entries (see _SEQ_BITS)
        self._heap_reqs: dict[int, Request] = {}  # entry seq -> request, for the entries in the heap
        self._heap_counter = 0
        self.used_blocks = 0
        self._abort_pending = False
        # time spent stepping (a batch on the GPU), for the power model: closed busy periods, and
        # the start of the open one (None while idle)
        self._busy_s = 0.0
        self._busy_since: float | None = None

        # the plan: what runs from self.t until next_event_t
        self._plan = _IDLE
        self.next_event_t = _INF
        self._step_reqs: list[Request] = []  # the step's prefill chunks: requests and chunk sizes
        self._step_sizes: list[int] = []
        self._step_n_decode = 0
        self._step_dur = 0.0
        self._run_t0 = 0.0  # a decode run: k steps of dt from t0, the first `done` already applied
        self._run_dt = 0.0
        self._run_k = 0
        self._run_done = 0

        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(REQUEST_LATENCY_BUCKETS)
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.preemptions = 0
        self.successes: dict[str, int] = {}
        self._reason_labels = {
            reason: MappingProxyType({**self.labels, "finished_reason": reason})
            for reason in ("stop", "length", "abort")
        }
        self._histogram_series = [
            (name, hist, [MappingProxyType({**self.labels, "le": format_le(b)}) for b in (*hist.bounds, _INF)])
            for name, hist in (
                ("vllm:time_to_first_token_seconds", self.ttft),
                ("vllm:inter_token_latency_seconds", self.itl),
                ("vllm:e2e_request_latency_seconds", self.e2e),
            )
        ]

    # ----------------------------------------------------------------- driving
    def advance_to(self, t: float) -> None:
        """Process every step that ends at or before `t`; a decode run spanning `t` stays pending."""
        while self.next_event_t <= t and self._plan != _IDLE:
            if self._plan == _STEP:
                self._complete_step()
            else:
                self._apply_decode_steps(self._run_k - self._run_done)
                self.t = self.next_event_t
                self._pop_finished()
            self._plan_next()
        if self._plan == _IDLE and self.t < t < _INF:
            self.t = t

    def submit(self, req: Request, t: float) -> None:
        """A request reaches the server at `t` (>= the last `advance_to` time); it joins the waiting queue."""
        self.advance_to(t)
        req.replica = self
        req.state = WAITING
        req.arrival_t = req.last_token_t = t  # vLLM's clock starts when the request reaches the server
        if -(-(req.prompt_len + req.output_len) // self._block) > self.usable_blocks:
            self._end(req, t, ok=False)  # can never fit: vLLM rejects it (prompt exceeds max_model_len)
            return
        if self._plan == _IDLE:
            self.t = max(self.t, t)
            self._busy_since = self.t
            self.waiting.append(req)
            self._plan_next()
        else:
            if self._plan == _DECODE_RUN and not self.waiting:
                self._end_run_at(t)  # the next step may admit it
            # otherwise a step is running, or the queue head is blocked until a step ends
            self.waiting.append(req)

    def abort(self, reqs: Iterable[Request], t: float) -> int:
        """Client-side cancellation at `t` (the client went away); returns how many were here."""
        self.advance_to(t)
        hit = 0
        for req in reqs:
            if req.replica is self and req.state in (WAITING, PREFILL, DECODE) and not req.cancelled:
                req.cancelled = True
                req.heap_seq = -1  # its finish-heap entry becomes stale
                hit += 1
        if hit:
            self._abort_pending = True  # removed when the step in progress ends
            self._end_run_at(t)
        return hit

    def take_all(self, t: float) -> list[Request]:
        """Remove every live request at `t` (the pod is killed); the caller tells their clients.

        Their `generated` is left exact: the output tokens produced by `t`."""
        self.advance_to(t)
        live = [r for r in (*self.running, *self.waiting) if not r.cancelled]
        for req in live:
            req.generated = self.tokens_by(req, t)
            req.state = ABORTED
        self.running.clear()
        self.waiting.clear()
        self._prefilling.clear()
        self._heap.clear()
        self._heap_reqs.clear()
        self._phase = [0] * self._block
        self._n_decode = self.used_blocks = 0
        self._plan, self.next_event_t = _IDLE, _INF
        return live

    # ----------------------------------------------------------------- reading
    @property
    def load(self) -> int:
        """Requests on this engine (running + waiting), as a load-aware router counts them."""
        return len(self.running) + len(self.waiting)

    @property
    def idle(self) -> bool:
        return self._plan == _IDLE

    def busy_time(self, t: float) -> float:
        """Seconds spent stepping from the start until `t` (call after `advance_to(t)`): the share of
        an interval it grows by is the GPU utilization DCGM reports.  A killed engine is not read again."""
        since = self._busy_since
        return self._busy_s if since is None else self._busy_s + (t - since)

    def tokens_by(self, req: Request, t: float) -> int:
        """Output tokens `req` has produced in steps ending at or before `t` (call after `advance_to(t)`)."""
        if req.state != DECODE:
            return req.generated
        s = self._s
        if self._plan == _DECODE_RUN:  # the run's steps already applied may include the one in progress at t
            ended = min(self._run_k, math.floor((t - self._run_t0) / self._run_dt + 1e-9))
            s += ended - self._run_done
        return req.output_len - (req.finish_step - s)

    def kv_usage(self, t: float | None = None) -> float:
        if t is not None:
            self._sync(t)
        return self.used_blocks / self.usable_blocks

    def metric_families(self, t: float) -> list[tuple[str, Mapping[str, str], float]]:
        """Current vLLM metric samples `(name, labels, value)` at `t`.

        Labels include `model_name` and `engine` (and `le` / `finished_reason`); they are shared
        read-only mappings: build a new dict to add labels.  Success counters exist from the start
        for stop, length and abort, as vLLM creates them at start-up."""
        self._sync(t)
        base = self.labels
        out: list[tuple[str, Mapping[str, str], float]] = [
            ("vllm:num_requests_running", base, float(len(self.running))),
            ("vllm:num_requests_waiting", base, float(len(self.waiting))),
            ("vllm:kv_cache_usage_perc", base, self.used_blocks / self.usable_blocks),
            ("vllm:num_preemptions_total", base, float(self.preemptions)),
            ("vllm:prompt_tokens_total", base, float(self.prompt_tokens)),
            ("vllm:generation_tokens_total", base, float(self.generation_tokens)),
        ]
        successes = self.successes
        for reason, labels in self._reason_labels.items():
            out.append(("vllm:request_success_total", labels, float(successes.get(reason, 0))))
        for name, hist, bucket_labels in self._histogram_series:
            out.extend(zip(repeat(name + "_bucket"), bucket_labels, map(float, accumulate(hist.counts))))
            out.append((name + "_sum", base, hist.sum))
            out.append((name + "_count", base, float(hist.count)))
        return out

    # ----------------------------------------------------------------- planning
    def _sync(self, t: float) -> None:
        """Bring counters up to `t`: apply the steps of the pending decode run that start before `t`.

        The run itself goes on unchanged (same batch), so no scheduling decision is taken early."""
        self.advance_to(t)
        if self._plan == _DECODE_RUN and t > self.t:
            k = math.ceil((t - self._run_t0) / self._run_dt - 1e-9)  # < _run_k: the run ends after t
            if k > self._run_done:
                self._apply_decode_steps(k - self._run_done)
                self._run_done = k
                self.t = self._run_t0 + k * self._run_dt

    def _end_run_at(self, t: float) -> None:
        """Make the pending decode run end at the first step boundary at or after `t` (then replan)."""
        if self._plan == _DECODE_RUN:
            k = max(self._run_done, math.ceil((t - self._run_t0) / self._run_dt - 1e-9))
            if k < self._run_k:
                self._run_k = k
                self.next_event_t = self._run_t0 + k * self._run_dt

    def _plan_next(self) -> None:
        if self._abort_pending:
            self._purge_aborted()
        if not self.running and not self.waiting:
            self._plan, self.next_event_t = _IDLE, _INF
            assert self._busy_since is not None  # opened by `submit` when the work arrived
            self._busy_s += self.t - self._busy_since
            self._busy_since = None
            return
        free = self.usable_blocks - self.used_blocks
        decode_need = self._phase[-self._s % self._block] if self._n_decode else 0
        if self._prefilling or decode_need > free or (self.waiting and self._head_fits(free - decode_need)):
            self._plan_step()
        else:
            self._plan_decode_run(free)

    def _head_fits(self, free: int) -> bool:
        if len(self.running) >= self._max_seqs:
            return False
        head = self.waiting[0]
        chunk = min(head.prompt_len + head.generated, self._max_tokens - self._n_decode)
        return chunk > 0 and -(-chunk // self._block) <= free

    def _plan_step(self) -> None:
        """One detailed step: preemptions if the KV cache is short, else admissions (V1 scheduler)."""
        block = self._block
        preempted = False
        while True:
            free = self.usable_blocks - self.used_blocks
            need = self._phase[-self._s % block] if self._n_decode else 0
            budget = self._max_tokens - self._n_decode
            reqs: list[Request] = []  # the step's chunks as parallel lists
            sizes: list[int] = []
            adds: list[int] = []
            for req in self._prefilling:
                if budget <= 0:
                    break
                chunk = min(req.prompt_len + req.generated - req.computed, budget)
                budget -= chunk
                new_blocks = -(-(req.computed + chunk) // block) - req.blocks
                reqs.append(req)
                sizes.append(chunk)
                adds.append(new_blocks)
                need += new_blocks
            if need <= free:
                break
            self._preempt_last()
            preempted = True
        if not preempted:
            waiting = self.waiting
            while waiting and len(self.running) < self._max_seqs and budget > 0:
                req = waiting[0]
                chunk = min(req.prompt_len + req.generated, budget)
                new_blocks = -(-chunk // block)
                if need + new_blocks > free:
                    break
                waiting.popleft()
                self.running[req] = None
                if req.scheduled_t is None:
                    req.scheduled_t = self.t
                req.state = PREFILL
                req.computed = req.blocks = 0
                self._prefilling.append(req)
                reqs.append(req)
                sizes.append(chunk)
                adds.append(new_blocks)
                need += new_blocks
                budget -= chunk
        self.used_blocks += need
        prefill_tokens = 0
        for i in range(len(reqs)):
            reqs[i].blocks += adds[i]
            prefill_tokens += sizes[i]
        self._step_reqs = reqs
        self._step_sizes = sizes
        self._step_n_decode = self._n_decode
        self._step_dur = max(self._floor, self._b0 + self._b1 * prefill_tokens + self._b2 * self._n_decode)
        self._plan = _STEP
        self.next_event_t = self.t + self._step_dur

    def _plan_decode_run(self, free: int) -> None:
        """Identical decode steps until the next finish or until the KV cache would overflow."""
        heap, heap_reqs = self._heap, self._heap_reqs
        while True:
            seq = heap[0] & _SEQ_MASK
            if heap_reqs[seq].heap_seq == seq:
                break
            heapq.heappop(heap)  # stale entry (preempted or aborted sequence)
            del heap_reqs[seq]
        n = self._n_decode
        k = (heap[0] >> _SEQ_BITS) - self._s
        if free < n * (k // self._block + 1):  # the cache may run out before the next finish
            k = min(k, self._steps_until_full(free))
        self._run_dt = max(self._floor, self._b0 + self._b2 * n)
        self._run_k = k
        self._run_t0 = self.t
        self._run_done = 0
        self._plan = _DECODE_RUN
        self.next_event_t = self.t + k * self._run_dt

    def _steps_until_full(self, free: int) -> int:
        """Largest k such that the next k decode steps need at most `free` new blocks."""
        block, phase, s = self._block, self._phase, self._s
        periods, left = divmod(free, self._n_decode)
        k = periods * block
        for j in range(1, block):
            c = phase[(1 - s - j) % block]
            if c > left:
                break
            left -= c
            k += 1
        return k

    # ----------------------------------------------------------------- applying
    def _apply_decode_steps(self, k: int) -> None:
        """k identical decode steps of the current decoding set (time is moved by the caller)."""
        n = self._n_decode
        block, phase, s = self._block, self._phase, self._s
        periods, rest = divmod(k, block)
        new_blocks = periods * n
        for j in range(1, rest + 1):
            new_blocks += phase[(1 - s - j) % block]
        self.used_blocks += new_blocks
        self._s = s + k
        self.itl.observe(self._run_dt, n * k)
        self.generation_tokens += n * k

    def _complete_step(self) -> None:
        t_end = self.next_event_t
        self.t = t_end
        self._s += 1
        s = self._s
        n = self._step_n_decode
        if n:
            self.itl.observe(self._step_dur, n)
            self.generation_tokens += n
        reqs, sizes = self._step_reqs, self._step_sizes
        for i in range(len(reqs)):
            req = reqs[i]
            chunk = sizes[i]
            if req.cancelled:
                continue
            req.computed += chunk
            if req.computed < req.prompt_len + req.generated:
                continue
            self._prefilling.remove(req)
            if req.generated == 0:
                self.ttft.observe(t_end - req.arrival_t)
                self.prompt_tokens += req.prompt_len
                req.first_token_t = t_end
            else:
                self.itl.observe(t_end - req.last_token_t)
            req.generated += 1
            self.generation_tokens += 1
            if req.generated >= req.output_len:
                del self.running[req]
                self.used_blocks -= req.blocks
                self._end(req, t_end, ok=True)
                continue
            offset = req.computed - s
            req.offset = offset
            self._phase[offset % self._block] += 1
            self._n_decode += 1
            req.state = DECODE
            req.finish_step = s + req.output_len - req.generated
            self._heap_counter += 1
            seq = self._heap_counter
            req.heap_seq = seq
            self._heap_reqs[seq] = req
            heapq.heappush(self._heap, (req.finish_step << _SEQ_BITS) | seq)
        self._step_reqs = []
        self._step_sizes = []
        self._pop_finished()

    def _pop_finished(self) -> None:
        heap, heap_reqs, s = self._heap, self._heap_reqs, self._s
        while heap and heap[0] >> _SEQ_BITS <= s:
            seq = heapq.heappop(heap) & _SEQ_MASK
            req = heap_reqs.pop(seq)
            if req.heap_seq != seq:
                continue  # stale: the sequence was preempted or cancelled
            self._drop_decoding(req)
            req.generated = req.output_len
            self._end(req, self.t, ok=True)

    def _drop_decoding(self, req: Request) -> None:
        offset = req.offset
        self._phase[offset % self._block] -= 1
        self._n_decode -= 1
        self.used_blocks -= -(-(offset + self._s) // self._block)
        del self.running[req]

    def _preempt_last(self) -> None:
        req = next(reversed(self.running))
        if req.state == DECODE:
            req.generated = req.output_len - (req.finish_step - self._s)
            req.last_token_t = self.t
            self._drop_decoding(req)
        else:
            del self.running[req]
            self.used_blocks -= req.blocks
            self._prefilling.remove(req)
        req.state = WAITING
        req.heap_seq = -1
        req.computed = req.blocks = 0
        self.waiting.appendleft(req)
        self.preemptions += 1

    def _purge_aborted(self) -> None:
        self._abort_pending = False
        gone = [r for r in self.waiting if r.cancelled]
        if gone:
            self.waiting = deque(r for r in self.waiting if not r.cancelled)
        for req in [r for r in self.running if r.cancelled]:
            if req.state == DECODE:
                self._drop_decoding(req)
            else:
                del self.running[req]
                self.used_blocks -= req.blocks
                self._prefilling.remove(req)
            gone.append(req)
        for req in gone:
            req.state = ABORTED
        if gone:
            self.successes["abort"] = self.successes.get("abort", 0) + len(gone)

    def _end(self, req: Request, t: float, ok: bool) -> None:
        req.state = FINISHED if ok else ABORTED
        if ok:
            self.e2e.observe(t - req.arrival_t)
            self.successes[req.finish_reason] = self.successes.get(req.finish_reason, 0) + 1
        if self._on_finished is not None:
            self._on_finished(req, t, ok)
