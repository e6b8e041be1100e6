"""The simulated `vllm bench serve` client: arrivals, concurrency cap, lengths, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpa_experiments.backends.sim.loadgen import LoadGenerator, fit_lognormal_mu
from tests.test_sim_serving import pinned  # the model is tested on fixed, uncalibrated numbers


def _send_all(gen: LoadGenerator, limit: int = 1_000_000) -> list:
    """Drain the generator with instant responses (no concurrency limit reached)."""
    sent = []
    while len(sent) < limit:
        t = gen.next_send_time()
        if math.isinf(t):
            break
        req = gen.pop_send(t)
        sent.append(req)
        gen.on_finished(req, t, True)
    return sent


def test_poisson_rate_within_statistical_bounds():
    gen = LoadGenerator("j", pinned(), rate=20.0, start_t=100.0, stop_t=1100.0, seed=4)
    sent = _send_all(gen)
    times = np.array([r.arrival_t for r in sent])
    expected = 20.0 * 1000
    assert abs(len(sent) - expected) < 4 * math.sqrt(expected)
    assert times[0] == 100.0 and times[-1] < 1100.0 and np.all(np.diff(times) >= 0)
    gaps = np.diff(times)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, abs=0.05)  # exponential gaps


def test_burstiness_sets_the_gap_variability():
    gen = LoadGenerator("j", pinned(), rate=10.0, start_t=0.0, stop_t=2000.0, burstiness=4.0, seed=1)
    gaps = np.diff([r.arrival_t for r in _send_all(gen)])
    assert np.mean(gaps) == pytest.approx(0.1, rel=0.03)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(0.5, abs=0.03)  # gamma shape 4: cv = 1/2


def test_max_concurrency_holds_requests_until_a_completion():
    gen = LoadGenerator("j", pinned(), rate=100.0, start_t=0.0, stop_t=100.0, max_concurrency=3, seed=2)
    first = [gen.pop_send(gen.next_send_time()) for _ in range(3)]
    assert len(gen.in_flight) == 3 and math.isinf(gen.next_send_time())
    gen.on_finished(first[1], 5.0, True)  # its turn came long ago: it leaves at the completion
    assert gen.next_send_time() == 5.0
    fourth = gen.pop_send(5.0)
    assert fourth.arrival_t == 5.0 and math.isinf(gen.next_send_time())
    gen.on_finished(first[0], 6.0, False)
    assert gen.next_send_time() == 6.0 and (gen.completed, gen.failed) == (1, 1)


def test_same_seed_same_requests_other_seed_different():
    def run(seed: int) -> list[tuple[float, int]]:
        gen = LoadGenerator("j", pinned(), rate=5.0, start_t=0.0, stop_t=200.0, seed=seed, output_len=None)
        return [(r.arrival_t, r.prompt_len, r.output_len) for r in _send_all(gen)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_sharegpt_like_lengths_follow_the_vllm_filter():
    profile = pinned()
    gen = LoadGenerator("j", profile, rate=50.0, start_t=0.0, stop_t=400.0, seed=3)
    fixed = _send_all(gen)
    prompts = np.array([r.prompt_len for r in fixed])
    assert prompts.min() >= 4 and prompts.max() <= 1024
    assert np.mean(prompts) == pytest.approx(230, rel=0.05)
    assert {r.output_len for r in fixed} == {1024} and {r.finish_reason for r in fixed} == {"length"}

    drawn = _send_all(LoadGenerator("k", profile, rate=50.0, start_t=0.0, stop_t=400.0, seed=3, output_len=None))
    outputs = np.array([r.output_len for r in drawn])
    totals = np.array([r.prompt_len + r.output_len for r in drawn])
    assert outputs.min() >= 4 and totals.max() <= 2048
    assert np.mean(outputs) == pytest.approx(203, rel=0.08)  # the joint filter trims the tail a little
    assert {r.finish_reason for r in drawn} == {"stop"}


def test_fit_lognormal_mu_matches_a_sampled_truncated_mean():
    mu = fit_lognormal_mu(230.0, 1.0, 4, 1024)
    x = np.random.default_rng(0).lognormal(mu, 1.0, 400_000)
    x = x[(x >= 4) & (x <= 1024)]
    assert np.mean(x) == pytest.approx(230.0, rel=0.01)


def test_stop_returns_in_flight_requests_and_ends_sending():
    gen = LoadGenerator("j", pinned(), rate=10.0, start_t=0.0, seed=5)
    reqs = [gen.pop_send(gen.next_send_time()) for _ in range(4)]
    gen.on_finished(reqs[0], 1.0, True)
    gone = gen.stop()
    assert {r.uid for r in gone} == {r.uid for r in reqs[1:]}
    assert math.isinf(gen.next_send_time()) and gen.aborted == 3


def test_num_prompts_limits_the_job_and_marks_it_finished():
    gen = LoadGenerator("j", pinned(), rate=10.0, start_t=0.0, seed=5, num_prompts=25)
    assert len(_send_all(gen)) == 25 and gen.finished


def test_invalid_rate_is_rejected():
    with pytest.raises(ValueError, match="rate"):
        LoadGenerator("j", pinned(), rate=0.0, start_t=0.0)


def test_natural_eos_shortens_answers_below_the_cap():
    gen = LoadGenerator("j", pinned({"natural_output_len_mean": 100.0}), rate=50.0, start_t=0.0, stop_t=200.0, seed=6)
    sent = _send_all(gen)
    outputs = np.array([r.output_len for r in sent])
    assert outputs.min() >= 1 and outputs.max() <= 1024
    assert np.mean(outputs) == pytest.approx(100.5, rel=0.05)  # ceil of an exponential with mean 100
    assert all((r.finish_reason == "stop") == (r.output_len < 1024) for r in sent)
