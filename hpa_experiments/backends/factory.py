"""Choosing and building the backend for a run (the one place that knows both)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TextIO

from hpa_experiments.backends.base import Backend
from hpa_experiments.column_queries import MetricNames
from hpa_experiments.config import BACKEND_ALIASES, ExperimentConfig
from hpa_experiments.errors import UsageError
from hpa_experiments.plan import Plan


def normalize_backend(name: str) -> str:
    try:
        return BACKEND_ALIASES[name.lower()]
    except KeyError:
        raise UsageError(f"unknown backend '{name}': use 'sim' (digital twin) or 'kubernetes'") from None


@dataclass
class BackendOptions:
    kubeconfig: str | None = None
    context: str | None = None
    prometheus_url: str | None = None
    output: TextIO | None = None  # where preflight notes go
    take_over: bool = False  # an existing HPA/ScaledObject that differs: take it over (ownership.py), not refuse


def make_backend(
    kind: str, config: ExperimentConfig, plan: Plan, run_id: str, options: BackendOptions
) -> tuple[Backend, MetricNames]:
    """The backend for `kind`, ready to run (preflight passed), and the vLLM metric names to query."""
    if kind == "simulation":
        from hpa_experiments.backends.sim.backend import SimBackend

        return SimBackend(config, plan), MetricNames()
    from hpa_experiments.backends.kube.connect import connect_and_preflight

    url = options.prometheus_url or config.prometheus.url or os.environ.get("HPA_EXP_PROMETHEUS_URL")
    return connect_and_preflight(
        config,
        plan,
        run_id,
        url,
        kubeconfig=options.kubeconfig,
        context=options.context,
        output=options.output,
        take_over=options.take_over,
    )
