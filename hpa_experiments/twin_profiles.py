"""Hardware/model profiles of the simulated vLLM replicas: every tunable number in one place.

Sources (all in /work/shared/reference/sim-model.md unless noted):
- FITTED to the two real reference runs (/work/shared/reference-runs/, H100, llm-d gateway) by
  benchmarks/calibrate.py; method, errors and limits in docs/twin-calibration.md:
  step_per_decode_seq_s, natural_output_len_mean, job_start_delay_s.  REFIT (issue 18) on the
  steady latency points of the latency-vs-load runs jointly with them (benchmarks/twin_fit.py):
  step_base_s, step_floor_s, the pod start (pod_load_*, pod_image_*).  The other numbers are from
  the sources below.
- step time `max(floor, b0 + b1*prefill_tokens + b2*decode_seqs)` (a roofline): b1 from the BLIS
  legacy blackbox fit for Llama-3.1-8B-Instruct, H100, TP1, vLLM v0.8.4, beta = [6472.0, 19.797,
  304.40] us (section 4.2).  b2 fitted: 0.06 ms/seq (BLIS: 0.304; section 4.5 brackets it between
  0.03 and 0.3 ms/seq).  b0 5.5 ms (BLIS 6.47) and the floor 8 ms refitted on the real ITL under
  load: 7.8-9.8 ms at low load, 12.4 ms at 17 req/s and 37.5 ms at 26 req/s on one replica.
- KV capacity: derived from the hardware and model fields (`kv_capacity`), as vLLM sizes its cache:
  79.65 GiB x 0.9 - 14.96 GiB of weights = 56.73 GiB, at 128 KiB per token 464,704 tokens
  (29,044 blocks of 16).  BLIS's 467,280 tokens (29,205 blocks, defaults.yaml, section 4.2/4.5) is
  the same formula on the nominal 80 GiB; nvidia-smi reports 79.65 GiB (81,559 MiB), so the
  derived figure is the one consistent with the stated memory (0.55 % smaller).  Both ignore the
  activation and CUDA-graph memory vLLM also reserves, so a real server holds somewhat less.
- scheduler limits max_num_seqs 1024, max_num_batched_tokens 8192: vLLM defaults for GPUs with
  >= 70 GiB that are not A100 (section 3, `get_batch_defaults`); the reference runs used defaults.
- pod startup (pod_startup.py): Pending (scheduling; an image pull unless the node has the image)
  then loading (weights + compile + CUDA graphs, 14-60 s measured for 8B in isolation, section 5)
  then readiness probe (initialDelay 60 s, period 5 s in the vLLM k8s docs, section 5).  Fitted:
  a quarter of the nodes have the image; Ready ~100 s (cached) or ~165 s (pulled) after creation
  (the new pods of the reference runs took 60-120 s in one run, 130-180 s in the other).
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
import math
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
    step_base_s: float = 5.5e-3  # fitted on latency under load (docs/twin-calibration.md)
    step_per_prefill_token_s: float = 19.797e-6
    step_per_decode_seq_s: float = 0.06e-3  # fitted (docs/twin-calibration.md)
    step_floor_s: float = 8.0e-3  # no step is shorter (roofline: weights read at small batches); fitted
    # scheduler and KV cache
    max_num_seqs: int = 1024
    max_num_batched_tokens: int = 8192
    kv_capacity_tokens: int | None = None  # None: derived from the memory fields below (kv_capacity)
    block_size: int = 16
    # pod lifecycle (seconds)
    pod_pending_s: float = 5.0
    pod_load_mean_s: float = 95.0  # engine start (weights, compile, CUDA graphs); fitted (docs/twin-calibration.md)
    pod_load_spread_s: float = 20.0  # standard deviation of a normal, clamped at 0; fitted
    pod_image_cached_share: float = 0.25  # share of new pods whose node already has the image; fitted
    pod_image_pull_mean_s: float = 65.0  # image pull when it is not cached (normal, clamped at 0); fitted
    pod_image_pull_spread_s: float = 15.0
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
    model_weights_gib: float = 14.9575  # 8,030,261,248 parameters x 2 bytes (bf16), whole model
    # whole model (split over the GPUs of a replica): 32 layers x 8 KV heads x 128 dims x 2 (K and V) x 2 bytes
    kv_bytes_per_token: int = 131_072
    # GPU power (watts per GPU) by utilization: idle + (busy - idle) x busy share; H100 SXM TDP 700 W
    gpu_idle_w: float = 75.0
    gpu_busy_w: float = 700.0
    # fleet
    routing: RoutingPolicy = "least_loaded"
    scale_down: ScaleDownPolicy = "abort"
    drain_grace_s: float = 30.0  # terminationGracePeriodSeconds default
    gateway_at_zero: str = "wait"  # requests finding no Ready pod: wait at the gateway, or fail (gateway.py)

    @property
    def usable_gib(self) -> float:
        """GPU memory vLLM may use per replica: gpu_memory_gib x gpus_per_replica x gpu_memory_utilization."""
        return self.gpu_memory_gib * self.gpus_per_replica * self.gpu_memory_utilization

    @property
    def kv_memory_gib(self) -> float:
        """What is left for the KV cache after the weights (may be <= 0: the model does not fit)."""
        return self.usable_gib - self.model_weights_gib

    @property
    def kv_capacity(self) -> int:
        """KV cache tokens per replica: `kv_capacity_tokens` if set, else derived from memory in whole blocks."""
        if self.kv_capacity_tokens is not None:
            return self.kv_capacity_tokens
        tokens = math.floor(self.kv_memory_gib * 2**30 / self.kv_bytes_per_token)
        return max(0, tokens) // self.block_size * self.block_size

    @property
    def kv_blocks(self) -> int:
        return self.kv_capacity // self.block_size

    def kv_cache_facts(self) -> dict[str, Any]:
        """The KV cache per replica and where its size comes from (run.json's backend_info)."""
        return {
            "capacity_tokens": self.kv_capacity,
            "blocks": self.kv_blocks,
            "source": "derived from memory" if self.kv_capacity_tokens is None else "kv_capacity_tokens",
            "usable_gib": self.usable_gib,
            "left_after_weights_gib": self.kv_memory_gib,
            "kv_cache_gib": self.kv_capacity * self.kv_bytes_per_token / 2**30,
        }

    def validate(self) -> None:
        problems: list[str] = []
        if min(self.step_base_s, self.step_per_prefill_token_s, self.step_per_decode_seq_s, self.step_floor_s) < 0:
            problems.append("step-time coefficients must be >= 0")
        if max(self.step_floor_s, self.step_base_s + self.step_per_decode_seq_s) <= 0:
            problems.append("a decode step must take time (step_base_s + step_per_decode_seq_s > 0)")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < self.max_num_seqs:
            problems.append("need 1 <= max_num_seqs <= max_num_batched_tokens")
        memory_problems = self._memory_problems()
        problems += memory_problems
        if not memory_problems and (self.block_size < 1 or self.kv_blocks < 2):
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
        if self.gateway_at_zero not in ("wait", "fail"):
            problems.append(f"gateway_at_zero must be wait or fail, not {self.gateway_at_zero!r}")
        delays = (self.pod_pending_s, self.pod_load_mean_s, self.pod_load_spread_s, self.drain_grace_s)
        if min(*delays, self.pod_image_pull_mean_s, self.pod_image_pull_spread_s) < 0:
            problems.append("pod delays must be >= 0")
        if not 0.0 <= self.pod_image_cached_share <= 1.0:
            problems.append("pod_image_cached_share must be between 0 and 1")
        if self.readiness_period_s <= 0:
            problems.append("readiness_period_s must be > 0")
        if problems:
            raise ConfigError([f"simulation profile {self.name!r}: {p}" for p in problems])

    def _memory_problems(self) -> list[str]:
        """Does the model fit, and does the KV cache (derived or explicit) fit next to it?"""
        if self.gpus_per_replica < 1 or self.gpu_memory_gib <= 0 or self.kv_bytes_per_token < 1:
            return ["need gpus_per_replica >= 1, gpu_memory_gib > 0 and kv_bytes_per_token >= 1"]
        if not 0 < self.gpu_memory_utilization <= 1 or self.model_weights_gib < 0:
            return ["need 0 < gpu_memory_utilization <= 1 and model_weights_gib >= 0"]
        if self.block_size < 1:
            return []  # reported by validate()
        gpus = f"{self.gpus_per_replica} GPU{'s' if self.gpus_per_replica > 1 else ''}"
        usable = f"{self.gpu_memory_gib:g} GiB x {gpus} x {self.gpu_memory_utilization:g} = {self.usable_gib:.1f} GiB"
        left = self.kv_memory_gib
        if left <= 0:
            relation = ">" if self.model_weights_gib > self.usable_gib else "="
            return [f"the model does not fit: {self.model_weights_gib:.1f} GiB of weights {relation} {usable} usable"]
        leaves = f"{usable} usable - {self.model_weights_gib:.2f} GiB of weights leaves {left:.2f} GiB"
        if self.kv_capacity_tokens is None:
            if self.kv_capacity < self.max_total_len:
                return [
                    f"the KV cache cannot hold one sequence of max_total_len {self.max_total_len:,} tokens: "
                    f"{leaves} = {self.kv_capacity:,} tokens at {self.kv_bytes_per_token:,} bytes per token"
                ]
            return []
        needed = self.kv_capacity_tokens * self.kv_bytes_per_token / 2**30
        if needed > left:
            return [
                f"kv_capacity_tokens {self.kv_capacity_tokens:,} needs {needed:.2f} GiB at "
                f"{self.kv_bytes_per_token:,} bytes per token, but {leaves}"
            ]
        return []


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
    if key in ("output_len", "kv_capacity_tokens"):
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
