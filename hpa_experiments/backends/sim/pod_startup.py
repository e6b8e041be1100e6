"""How long a new vLLM pod takes to start: image pull (if the node lacks the image) and model load.

A pod is Pending for `pod_pending_s` (scheduling, container creation) plus, unless its node
already has the image (probability `pod_image_cached_share`), an image pull of normal
(`pod_image_pull_mean_s`, `pod_image_pull_spread_s`).  Then the engine loads for normal
(`pod_load_mean_s`, `pod_load_spread_s`) (weights, compile, CUDA graphs).  Draws are clamped at 0
and come from the fleet's generator, so they are deterministic per seed; with a share of 1 no
draw is made for the image, and the stream is what it was before the image was modelled.
"""

from __future__ import annotations

import numpy as np

from hpa_experiments.twin_profiles import Profile


def startup_delays(profile: Profile, rng: np.random.Generator) -> tuple[float, float]:
    """(seconds Pending, seconds loading the engine) for one new pod."""
    load = max(0.0, float(rng.normal(profile.pod_load_mean_s, profile.pod_load_spread_s)))
    pending = profile.pod_pending_s
    if profile.pod_image_cached_share < 1.0 and rng.uniform() >= profile.pod_image_cached_share:
        pending += max(0.0, float(rng.normal(profile.pod_image_pull_mean_s, profile.pod_image_pull_spread_s)))
    return pending, load
