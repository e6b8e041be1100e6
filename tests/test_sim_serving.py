"""The simulated vLLM engine against closed forms and against a plain step-by-step reference."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpa_experiments.backends.sim.histogram import ITL_BUCKETS, TTFT_BUCKETS
from hpa_experiments.backends.sim.serving import DECODE, Replica, Request
from hpa_experiments.errors import ConfigError
from hpa_experiments.twin_profiles import Profile, load_profile

# Behaviour is tested on fixed numbers (the BLIS blackbox fit, section 4.2 of the reference), not on
# the default profile, whose numbers are calibrated against the reference runs and may change.
PINNED = {
    "step_base_s": 6.472e-3,
    "step_per_prefill_token_s": 19.797e-6,
    "step_per_decode_seq_s": 0.3044e-3,
    "step_floor_s": 0.0,  # the linear model, no roofline floor
    "max_num_seqs": 1024,
    "max_num_batched_tokens": 8192,
    "kv_capacity_tokens": 467_280,
    "gpu_memory_gib": 80.0,  # BLIS's capacity is 80 GiB x 0.9 - the weights (79.65 GiB leaves less)
    "block_size": 16,
    "output_len": 1024,
    "natural_output_len_mean": None,
    "prompt_len_mean": 230.0,
    "prompt_len_sigma": 1.0,
    "output_len_mean": 203.0,
    "output_len_sigma": 1.0,
    "job_start_delay_s": 0.0,
    "pod_pending_s": 5.0,
    "pod_load_mean_s": 60.0,
    "pod_load_spread_s": 10.0,
    "pod_image_cached_share": 1.0,  # every node has the image: one draw per pod, as before
    "readiness_initial_delay_s": 60.0,
    "readiness_period_s": 5.0,
    "routing": "least_loaded",
    "scale_down": "abort",
    "drain_grace_s": 30.0,
}


def pinned(overrides: dict | None = None) -> Profile:
    return load_profile(overrides={**PINNED, **(overrides or {})})


def _replica(profile: Profile) -> tuple[Replica, dict[int, tuple[float, bool]]]:
    done: dict[int, tuple[float, bool]] = {}
    replica = Replica(profile, on_finished=lambda req, t, ok: done.__setitem__(req.uid, (t, ok)))
    return replica, done


def _samples(replica: Replica, t: float) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(name, tuple(sorted(labels.items()))): v for name, labels, v in replica.metric_families(t)}


def test_single_request_matches_the_step_time_formula():
    p = pinned()
    replica, done = _replica(p)
    req = Request(1, 2.0, prompt_len=230, output_len=1024)
    replica.submit(req, 2.0)
    replica.advance_to(1000.0)

    prefill = p.step_base_s + p.step_per_prefill_token_s * 230
    decode = p.step_base_s + p.step_per_decode_seq_s
    assert req.first_token_t == pytest.approx(2.0 + prefill)
    assert done[1][0] == pytest.approx(2.0 + prefill + 1023 * decode)
    assert replica.ttft.count == 1 and replica.ttft.sum == pytest.approx(prefill)
    assert replica.itl.count == 1023 and replica.itl.sum / replica.itl.count == pytest.approx(decode)
    assert replica.e2e.sum == pytest.approx(prefill + 1023 * decode)
    assert replica.generation_tokens == 1024 and replica.prompt_tokens == 230
    assert replica.used_blocks == 0 and replica.idle


def test_light_load_latencies_close_to_unloaded_values():
    p = pinned()
    replica, done = _replica(p)
    rng = np.random.default_rng(3)
    arrivals = np.cumsum(rng.exponential(1 / 0.5, 200))  # 0.5 req/s: about 3.5 requests in the batch
    for uid, a in enumerate(arrivals):
        replica.advance_to(a)
        replica.submit(Request(uid, a, 200, 1024), a)
    replica.advance_to(math.inf)
    assert len(done) == 200 and all(ok for _, ok in done.values())
    prefill = p.step_base_s + p.step_per_prefill_token_s * 200
    # TTFT = waiting for the running step to end (< one decode step) + the prefill step with decodes in it
    assert (
        prefill <= replica.ttft.sum / replica.ttft.count < prefill + 3 * (p.step_base_s + 10 * p.step_per_decode_seq_s)
    )
    mean_itl = replica.itl.sum / replica.itl.count
    assert p.step_base_s + p.step_per_decode_seq_s < mean_itl < p.step_base_s + 8 * p.step_per_decode_seq_s
    assert replica.preemptions == 0


def test_chunked_prefill_splits_a_long_prompt_over_steps():
    p = pinned({"max_num_batched_tokens": 64, "max_num_seqs": 8})
    replica, _ = _replica(p)
    req = Request(1, 0.0, prompt_len=200, output_len=5)
    replica.submit(req, 0.0)
    replica.advance_to(10.0)
    # 200 tokens in chunks 64, 64, 64, 8: four steps, the last one samples the first token
    assert req.first_token_t == pytest.approx(4 * p.step_base_s + 200 * p.step_per_prefill_token_s)


def test_histogram_sum_and_count_match_the_simulated_latencies():
    p = pinned({"kv_capacity_tokens": 16 * 3000})
    replica, done = _replica(p)
    rng = np.random.default_rng(7)
    reqs = []
    for uid, a in enumerate(np.cumsum(rng.exponential(1 / 20, 600))):
        replica.advance_to(a)
        req = Request(uid, a, int(rng.integers(4, 600)), int(rng.integers(1, 400)))
        reqs.append(req)
        replica.submit(req, a)
    replica.advance_to(math.inf)
    assert replica.preemptions > 0  # the small cache forces recomputation
    e2e = [done[r.uid][0] - r.arrival_t for r in reqs]
    ttft = [r.first_token_t - r.arrival_t for r in reqs]
    assert replica.e2e.count == len(e2e) and replica.e2e.sum / replica.e2e.count == pytest.approx(np.mean(e2e))
    assert replica.ttft.count == len(ttft) and replica.ttft.sum / replica.ttft.count == pytest.approx(np.mean(ttft))
    assert replica.itl.count == sum(r.output_len - 1 for r in reqs)
    assert replica.generation_tokens == sum(r.output_len for r in reqs)


def test_saturation_grows_the_queue_fills_the_cache_and_preempts():
    p = pinned()
    replica, _ = _replica(p)
    rng = np.random.default_rng(11)
    waiting, load, kv = [], [], []
    arrivals = np.cumsum(rng.exponential(1 / 8.0, 8 * 600))  # ~3 req/s is this profile's capacity
    for uid, a in enumerate(arrivals, start=1):
        replica.advance_to(a)
        replica.submit(Request(uid, a, int(rng.integers(50, 400)), 1024), a)
        if uid % 800 == 0:
            samples = _samples(replica, a)
            waiting.append(samples[("vllm:num_requests_waiting", (("engine", "0"), ("model_name", p.model_name)))])
            kv.append(replica.kv_usage(a))
            load.append(replica.load)
    assert load == sorted(load) and waiting[0] < waiting[len(waiting) // 2] < waiting[-1]
    assert max(kv) > 0.98 and all(0 <= k <= 1 for k in kv)
    assert replica.preemptions > 0


def test_kv_blocks_match_a_direct_count_and_reads_do_not_change_results():
    """Cutting decode runs for reads must not change anything; blocks = sum ceil(tokens / block)."""
    p = pinned({"kv_capacity_tokens": 16 * 2000, "max_num_seqs": 64})
    results = []
    for read_every in (None, 0.013):
        replica, done = _replica(p)
        rng = np.random.default_rng(5)
        next_read = 0.0
        for uid, a in enumerate(np.cumsum(rng.exponential(1 / 30, 400))):
            while read_every and next_read < a:
                replica.metric_families(next_read)
                # during a step the blocks for that step are already allocated (private state, on purpose)
                s = replica._s + int(replica._plan == 1)
                running = replica.running
                direct = sum(math.ceil((r.offset + s) / 16) if r.state == DECODE else r.blocks for r in running)
                assert replica.used_blocks == direct
                next_read += read_every
            replica.advance_to(a)
            replica.submit(Request(uid, a, int(rng.integers(4, 500)), int(rng.integers(1, 300))), a)
        replica.advance_to(math.inf)
        results.append((done, replica.itl.counts, replica.ttft.counts, replica.preemptions))
    assert results[0] == results[1]


def _reference_run(p: Profile, arrivals: list[tuple[float, int, int]]) -> dict[int, tuple[float, float]]:
    """Plain per-step vLLM-V1-like scheduler with the same rules: returns uid -> (first token, last token)."""
    block, usable = p.block_size, p.kv_blocks - 1
    pending = deque((a, uid, pl, ol) for uid, (a, pl, ol) in enumerate(arrivals))
    waiting: deque[dict] = deque()
    running: list[dict] = []
    out: dict[int, tuple[float, float]] = {}
    t = 0.0
    while pending or waiting or running:
        if not waiting and not running:
            t = max(t, pending[0][0])
        while pending and pending[0][0] <= t:
            a, uid, pl, ol = pending.popleft()
            waiting.append(
                {"uid": uid, "a": a, "p": pl, "o": ol, "gen": 0, "comp": 0, "blk": 0, "first": None, "dec": False}
            )
        preempted = False
        while True:
            used = sum(r["blk"] for r in running)
            decoding = [r for r in running if r["dec"]]
            need = sum(1 for r in decoding if math.ceil((r["comp"] + 1) / block) > r["blk"])
            budget = p.max_num_batched_tokens - len(decoding)
            chunks = []
            for r in running:
                if r in decoding or budget <= 0:
                    continue
                c = min(r["p"] + r["gen"] - r["comp"], budget)
                budget -= c
                chunks.append((r, c))
                need += math.ceil((r["comp"] + c) / block) - r["blk"]
            if need <= usable - used:
                break
            victim = running.pop()
            victim.update(comp=0, blk=0, dec=False)
            waiting.appendleft(victim)
            preempted = True
        while not preempted and waiting and len(running) < p.max_num_seqs and budget > 0:
            r = waiting[0]
            c = min(r["p"] + r["gen"], budget)
            if need + math.ceil(c / block) > usable - used:
                break
            running.append(waiting.popleft())
            chunks.append((r, c))
            need += math.ceil(c / block)
            budget -= c
        t += p.step_base_s + p.step_per_prefill_token_s * sum(c for _, c in chunks)
        t += p.step_per_decode_seq_s * len(decoding)
        for r in decoding:
            r["comp"] += 1
            r["gen"] += 1
            r["blk"] = math.ceil(r["comp"] / block)
        for r, c in chunks:
            r["comp"] += c
            r["blk"] = math.ceil(r["comp"] / block)
            if r["comp"] == r["p"] + r["gen"]:
                r["gen"] += 1
                r["dec"] = True
                r["first"] = t if r["first"] is None else r["first"]
        for r in [r for r in running if r["gen"] == r["o"]]:
            running.remove(r)
            out[r["uid"]] = (r["first"], t)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_equals_a_plain_step_by_step_reference(seed):
    p = pinned({"kv_capacity_tokens": 16 * 200, "max_num_seqs": 12, "max_num_batched_tokens": 256})
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / 40, 250))
    arrivals = [(float(a), int(rng.integers(4, 400)), int(rng.integers(1, 120))) for a in times]
    expected = _reference_run(p, arrivals)

    replica, done = _replica(p)
    reqs = []
    for uid, (a, pl, ol) in enumerate(arrivals):
        replica.advance_to(a)
        reqs.append(Request(uid, a, pl, ol))
        replica.submit(reqs[-1], a)
    replica.advance_to(math.inf)
    assert replica.preemptions > 0
    for req in reqs:
        first, last = expected[req.uid]
        assert req.first_token_t == pytest.approx(first, abs=1e-9)
        assert done[req.uid][0] == pytest.approx(last, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    block=st.sampled_from([1, 4, 16]),
    max_seqs=st.integers(1, 16),
    extra_budget=st.integers(0, 300),
    kv_blocks=st.integers(8, 120),
    rate=st.floats(5.0, 80.0),
    read_every=st.one_of(st.none(), st.floats(0.003, 0.2)),
)
def test_engine_equals_the_reference_on_random_configurations(
    seed, block, max_seqs, extra_budget, kv_blocks, rate, read_every
):
    p = pinned(
        {
            "block_size": block,
            "kv_capacity_tokens": block * kv_blocks,
            "max_num_seqs": max_seqs,
            "max_num_batched_tokens": max_seqs + extra_budget,
        }
    )
    largest = (kv_blocks - 1) * block  # every request must fit alone, or the engine rejects it
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate, 60))
    arrivals = []
    for a in times:
        prompt = int(rng.integers(1, max(2, largest // 2)))
        arrivals.append((float(a), prompt, int(rng.integers(1, largest - prompt + 1))))
    expected = _reference_run(p, arrivals)

    replica, done = _replica(p)
    reqs = []
    next_read = 0.0
    for uid, (a, pl, ol) in enumerate(arrivals):
        while read_every and next_read < a:
            replica.metric_families(next_read)
            next_read += read_every
        replica.advance_to(a)
        reqs.append(Request(uid, a, pl, ol))
        replica.submit(reqs[-1], a)
    replica.advance_to(math.inf)
    for req in reqs:
        first, last = expected[req.uid]
        assert req.first_token_t == pytest.approx(first, abs=1e-9)
        assert done[req.uid][0] == pytest.approx(last, abs=1e-9)
    assert replica.used_blocks == 0 and replica.load == 0


def test_metric_families_have_vllm_names_and_cumulative_buckets():
    p = pinned()
    replica, _ = _replica(p)
    for uid in range(5):
        replica.advance_to(uid * 0.5)
        replica.submit(Request(uid, uid * 0.5, 100, 50), uid * 0.5)
    samples = replica.metric_families(30.0)
    names = {name for name, _, _ in samples}
    for gauge in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"):
        assert gauge in names
    for counter in ("vllm:num_preemptions_total", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert counter in names
    success = [(dict(lab), v) for name, lab, v in samples if name == "vllm:request_success_total"]
    assert [v for _, v in success] == [0.0, 5.0, 0.0]
    assert [lab for lab, _ in success] == [
        {"model_name": p.model_name, "engine": "0", "finished_reason": reason} for reason in ("stop", "length", "abort")
    ]
    for name, bounds in (
        ("vllm:time_to_first_token_seconds", TTFT_BUCKETS),
        ("vllm:inter_token_latency_seconds", ITL_BUCKETS),
    ):
        buckets = [(lab["le"], v) for n, lab, v in samples if n == name + "_bucket"]
        assert [le for le, _ in buckets] == [*map(repr, bounds), "+Inf"]
        values = [v for _, v in buckets]
        assert values == sorted(values)
        count = next(v for n, _, v in samples if n == name + "_count")
        assert values[-1] == count
    assert next(v for n, _, v in samples if n == "vllm:time_to_first_token_seconds_count") == 5
    assert next(v for n, _, v in samples if n == "vllm:inter_token_latency_seconds_count") == 5 * 49


def test_abort_frees_the_engine_and_counts_as_abort():
    p = pinned()
    replica, done = _replica(p)
    reqs = [Request(uid, 0.0, 300, 1024) for uid in range(3)]
    for r in reqs:
        replica.submit(r, 0.0)
    replica.advance_to(1.0)
    assert replica.abort(reqs[:2], 1.0) == 2
    assert replica.load == 3  # removed when the step in progress ends
    replica.advance_to(1.1)
    assert replica.load == 1
    replica.advance_to(100.0)
    assert set(done) == {2} and replica.successes == {"abort": 2, "length": 1}
    assert replica.used_blocks == 0


def test_request_larger_than_the_cache_is_rejected():
    p = pinned({"kv_capacity_tokens": 16 * 10})
    replica, done = _replica(p)
    replica.submit(Request(1, 0.0, 200, 100), 0.0)
    assert done == {1: (0.0, False)} and replica.idle


def test_profile_overrides_are_checked_with_a_suggestion():
    assert load_profile(overrides={"max_num_seqs": 256}).max_num_seqs == 256
    with pytest.raises(ConfigError, match=r"'max_num_seq'.*did you mean 'max_num_seqs'"):
        load_profile(overrides={"max_num_seq": 256})
    with pytest.raises(ConfigError, match=r"unknown simulation profile 'llama-3\.1-8b-h10'.*llama-3\.1-8b-h100"):
        load_profile("llama-3.1-8b-h10")
    with pytest.raises(ConfigError, match="step_base_s"):
        load_profile(overrides={"step_base_s": "fast"})
    with pytest.raises(ConfigError, match="max_num_seqs <= max_num_batched_tokens"):
        pinned({"max_num_seqs": 10_000})


def test_abort_of_a_waiting_request_leaves_the_queue_in_order():
    p = pinned({"max_num_seqs": 1})
    replica, done = _replica(p)
    reqs = [Request(uid, 0.0, 100, 20) for uid in range(4)]
    for r in reqs:
        replica.submit(r, 0.0)
    replica.advance_to(0.05)
    assert [r.uid for r in replica.waiting] == [1, 2, 3]
    replica.abort([reqs[2]], 0.05)
    replica.advance_to(0.1)
    assert [r.uid for r in replica.waiting] == [1, 3]
    replica.advance_to(100.0)
    assert sorted(done) == [0, 1, 3] and replica.successes == {"abort": 1, "length": 3}
