"""Hardware/model profiles of the simulated vLLM replicas: every tunable number in one place.

Sources (all in /work/shared/reference/sim-model.md unless noted):
- FITTED to the two real reference runs (/work/shared/reference-runs/, H100, llm-d gateway) by
  benchmarks/calibrate.py; method, errors and limits in docs/twin-calibration.md:
  step_per_decode_seq_s, natural_output_len_mean, job_start_delay_s, pod_load_mean_s,
  pod_load_spread_s.  The other numbers are from the sources below.
- step time `b0 + b1*prefill_tokens + b2*decode_seqs`: b0, b1 from the BLIS legacy blackbox fit for
  Llama-3.1-8B-Instruct, H100, TP1, vLLM v0.8.4, beta = [6472.0, 19.797, 304.40] us (section 4.2).
  b2 fitted: 0.06 ms/seq (BLIS: 0.304; section 4.5 brackets it between 0.03 and 0.3 ms/seq); with
  b0 it gives ITL 6.5 ms at batch 1 (measured 6.5-7 ms, section 4.5).
- KV capacity 29,205 blocks x 16 tokens = 467,280 tokens (BLIS defaults.yaml, section 4.2/4.5).
- scheduler limits max_num_seqs 1024, max_num_batched_tokens 8192: vLLM defaults for GPUs with
  >= 70 GiB that are not A100 (section 3, `get_batch_defaults`); the reference runs used defaults.
- pod startup: Pending (scheduling, image cached) then loading (weights + compile + CUDA graphs,
  14-60 s measured for 8B in isolation, section 5) then readiness probe (initialDelay 60 s, period
  5 s in the vLLM k8s docs, section 5).  Loading time fitted: ~165 s from creation to Ready
  (the new pods of the reference runs took 60-180 s).
- prompt lengths: ShareGPT as filtered by vllm bench, mean ~230 tokens, 4..1024, prompt+output
  <= 2048 (section 6.1); the lognormal shape sigma is an assumption (heavy tail, median unknown).
- output length: fixed 1024 as in the reference runs (`--sharegpt-output-len 1024`); when drawn,
  ShareGPT mean ~203 tokens (section 6.1).  A fixed length is max_tokens: the reference runs'
  base model stopped earlier (EOS), fitted as an exponential natural length, mean 550 tokens
  (the KV usage of one pod at 5-20 req/s rules out 1024-token answers).
- load Job start: the Job's pod pulls the image and downloads the ShareGPT file before its first
  request; fitted 70 s (first KV usage 45-75 s after the Jobs were created in the reference runs).
- routing: the reference runs went through the llm-d gateway (load-aware), hence least_loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Literal

from hpa_experiments.errors import ConfigError

RoutingPolicy = Literal["round_robin", "least_loaded"]
ScaleDownPolicy = Literal["abort", "drain"]


@dataclass(frozen=True)
class Profile:
    """All parameters of the serving model, the pods' lifecycle and the request lengths."""

    name: str
    model_name: str = "unsloth/Meta-Llama-3.1-8B"
    # engine step time (seconds)
    step_base_s: float = 6.472e-3
    step_per_prefill_token_s: float = 19.797e-6
    step_per_decode_seq_s: float = 0.06e-3  # fitted (docs/twin-calibration.md)
    # scheduler and KV cache
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 8192
    kv_capacity_tokens: int = 467_280
    block_size: int = 16
    # pod lifecycle (seconds)
    pod_pending_s: float = 5.0
    pod_load_mean_s: float = 160.0  # fitted (docs/twin-calibration.md)
    pod_load_spread_s: float = 5.0  # standard deviation of a normal, clamped at 0; fitted
    readiness_initial_delay_s: float = 60.0  # from container start
    readiness_period_s: float = 5.0
    # request lengths (tokens)
    prompt_len_mean: float = 230.0  # mean after the vLLM filter
    prompt_len_sigma: float = 1.0  # lognormal shape
    prompt_len_min: int = 4
    prompt_len_max: int = 1024
    max_total_len: int = 2048
    output_len: int | None = 1024  # None: drawn like ShareGPT completions
    # EOS before a fixed output_len (exponential mean, tokens; None: never); fitted
    natural_output_len_mean: float | None = 550.0
    output_len_mean: float = 203.0
    output_len_sigma: float = 1.0
    output_len_min: int = 4
    # load Jobs: seconds from the Job's creation to its first request (pod start, dataset download)
    job_start_delay_s: float = 70.0  # fitted (docs/twin-calibration.md)
    # hardware and model: does the model fit, and how many KV tokens are left (validate())
    gpus_per_replica: int = 1  # tensor-parallel size: GPUs each vLLM pod holds
    gpu_memory_gib: float = 79.65  # per GPU; H100 80GB HBM3 as nvidia-smi reports it (81,559 MiB)
    gpu_memory_utilization: float = 0.9  # vLLM --gpu-memory-utilization default
    model_weights_gib: float = 14.96  # 8.03e9 parameters x 2 bytes (bf16), whole model
    kv_bytes_per_token: int = 131_072  # 32 layers x 8 KV heads x 128 dims x 2 (K and V) x 2 bytes
    # GPU power (watts per GPU) by utilization: idle + (busy - idle) x busy share; H100 SXM TDP 700 W
    gpu_idle_w: float = 75.0
    gpu_busy_w: float = 700.0
    # fleet
    routing: RoutingPolicy = "least_loaded"
    scale_down: ScaleDownPolicy = "abort"
    drain_grace_s: float = 30.0  # terminationGracePeriodSeconds default

    @property
    def kv_blocks(self) -> int:
        return self.kv_capacity_tokens // self.block_size

    def validate(self) -> None:
        problems: list[str] = []
        if min(self.step_base_s, self.step_per_prefill_token_s, self.step_per_decode_seq_s) < 0:
            problems.append("step-time coefficients must be >= 0")
        if self.step_base_s + self.step_per_decode_seq_s <= 0:
            problems.append("a decode step must take time (step_base_s + step_per_decode_seq_s > 0)")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < self.max_num_seqs:
            problems.append("need 1 <= max_num_seqs <= max_num_batched_tokens")
        if self.block_size < 1 or self.kv_blocks < 2:
            problems.append("kv_capacity_tokens must hold at least 2 blocks of block_size tokens")
        if not 1 <= self.prompt_len_min <= self.prompt_len_mean <= self.prompt_len_max:
            problems.append("need 1 <= prompt_len_min <= prompt_len_mean <= prompt_len_max")
        if self.output_len is not None and self.output_len < 1:
            problems.append("output_len must be >= 1 (or null to draw lengths)")
        if self.natural_output_len_mean is not None and self.natural_output_len_mean <= 0:
            problems.append("natural_output_len_mean must be > 0 (or null: requests never stop early)")
        if self.job_start_delay_s < 0:
            problems.append("job_start_delay_s must be >= 0")
        if self.routing not in ("round_robin", "least_loaded"):
            problems.append(f"routing must be round_robin or least_loaded, not {self.routing!r}")
        if self.scale_down not in ("abort", "drain"):
            problems.append(f"scale_down must be abort or drain, not {self.scale_down!r}")
        if min(self.pod_pending_s, self.pod_load_mean_s, self.pod_load_spread_s, self.drain_grace_s) < 0:
            problems.append("pod delays must be >= 0")
        if self.readiness_period_s <= 0:
            problems.append("readiness_period_s must be > 0")
        if problems:
            raise ConfigError([f"simulation profile {self.name!r}: {p}" for p in problems])


PROFILES: dict[str, Profile] = {
    "llama-3.1-8b-h100": Profile(name="llama-3.1-8b-h100"),
}


def load_profile(name: str = "llama-3.1-8b-h100", overrides: dict[str, Any] | None = None) -> Profile:
    """The named profile with `overrides` applied; unknown names/keys or bad values raise ConfigError."""
    if name not in PROFILES:
        raise ConfigError(f"unknown simulation profile {name!r}{_suggest(name, PROFILES)}")
    profile = PROFILES[name]
    defaults = {f.name: getattr(profile, f.name) for f in dataclasses.fields(Profile)}
    del defaults["name"]
    for key, value in (overrides or {}).items():
        if key not in defaults:
            raise ConfigError(f"unknown simulation profile parameter {key!r}{_suggest(key, defaults)}")
        _check_type(key, value, defaults[key])
    if overrides:
        profile = dataclasses.replace(profile, **overrides)
    profile.validate()
    return profile


def _check_type(key: str, value: Any, default: Any) -> None:
    numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
    if key == "output_len":
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif key == "natural_output_len_mean":
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
    elif isinstance(default, int) and numeric:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif numeric:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ConfigError(f"simulation profile parameter {key!r}: {value!r} is not a valid value")


def _suggest(word: str, known: Any) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(known))})"
