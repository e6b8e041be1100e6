"""The profile fields added for the calibration: EOS before max_tokens, and the load Job's start delay."""

from __future__ import annotations

import numpy as np
import pytest

from hpa_experiments.backends.sim.loadgen import LoadGenerator
from hpa_experiments.errors import ConfigError
from hpa_experiments.twin_profiles import load_profile


def sent(profile_overrides: dict, n: int = 4000, output_len: int | None = -1) -> list:
    profile = load_profile(overrides=profile_overrides)
    gen = LoadGenerator("job", profile, rate=100.0, start_t=0.0, seed=5, max_concurrency=None, output_len=output_len)
    return [gen.pop_send(gen.next_send_time()) for _ in range(n)]


def test_natural_length_cuts_answers_below_max_tokens_with_the_given_mean() -> None:
    reqs = sent({"natural_output_len_mean": 200.0, "output_len": 1024})
    lengths = np.array([r.output_len for r in reqs])
    assert lengths.min() >= 1 and lengths.max() <= 1024
    # exponential(200) capped at 1024 has mean 200 * (1 - exp(-1024 / 200)) ~ 198.8 (+0.5 from ceil)
    assert lengths.mean() == pytest.approx(200 * (1 - np.exp(-1024 / 200)) + 0.5, rel=0.06)
    reasons = {r.finish_reason for r in reqs if r.output_len < 1024}
    assert reasons == {"stop"}
    assert all(r.finish_reason == "length" for r in reqs if r.output_len == 1024)


def test_small_cap_binds_most_requests() -> None:
    reqs = sent({"natural_output_len_mean": 2000.0}, output_len=64)
    capped = sum(r.output_len == 64 for r in reqs)
    assert capped / len(reqs) == pytest.approx(np.exp(-64 / 2000), abs=0.02)


def test_without_natural_length_every_answer_is_max_tokens() -> None:
    reqs = sent({"natural_output_len_mean": None, "output_len": 300}, n=500)
    assert {r.output_len for r in reqs} == {300}
    assert {r.finish_reason for r in reqs} == {"length"}


@pytest.mark.parametrize(
    ("key", "value"), [("natural_output_len_mean", 0), ("job_start_delay_s", -1.0), ("natural_output_len_mean", "long")]
)
def test_bad_values_are_config_errors(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key):
        load_profile(overrides={key: value})
