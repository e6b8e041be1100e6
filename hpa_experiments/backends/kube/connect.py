"""Connecting the Kubernetes backend for a run: settings from config and flags, then preflight.

The factory (backends/factory.py) calls this; nothing here imports the factory."""

from __future__ import annotations

import sys
from typing import TextIO

from hpa_experiments.backends.kube.backend import KubeBackend, KubeSettings
from hpa_experiments.backends.kube.preflight import OwnedObjects, preflight
from hpa_experiments.backends.kube.prom import PromSettings
from hpa_experiments.column_queries import MetricNames, run_queries
from hpa_experiments.config import ExperimentConfig
from hpa_experiments.errors import PreflightError
from hpa_experiments.plan import Plan
from hpa_experiments.redact import redact_url


def connect_and_preflight(
    config: ExperimentConfig,
    plan: Plan,
    run_id: str,
    prometheus_url: str | None,
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    output: TextIO | None = None,
    take_over: bool = False,
) -> tuple[KubeBackend, MetricNames]:
    """A KubeBackend that passed every preflight check; raises PreflightError listing all problems."""
    out = output or sys.stderr
    if not prometheus_url:
        raise PreflightError(
            ["no Prometheus URL: set prometheus.url in the config, --prometheus-url, or HPA_EXP_PROMETHEUS_URL"]
        )
    prom = config.prometheus
    backend = KubeBackend(
        KubeSettings(kubeconfig=kubeconfig, context=context),
        PromSettings(
            url=prometheus_url,
            token_env=prom.token_env,
            token_file=str(prom.token_file) if prom.token_file else None,
            verify_tls=prom.verify_tls,
            ca_file=str(prom.ca_file) if prom.ca_file else None,
            headers=dict(prom.headers),
            max_answer_bytes=int(prom.max_answer_mib * 1024 * 1024),
        ),
        namespace=config.namespace,
        deployment=config.deployment,
        hpa_name=config.hpa_name or "",
        run_id=run_id,
        on_warning=lambda text: print(f"warning: {text}", file=out),
        scaled_object=config.scaled_object,
        take_over=take_over,
    )
    auto = config.autoscaler
    # KEDA creates its HPA once the run has applied the ScaledObject: then the HPA need not exist yet
    applies_keda = bool(auto and auto.kind == "keda" and auto.enabled and auto.apply and config.scaled_object)
    applies_hpa = bool(config.hpa.enabled and config.hpa.apply and config.hpa_manifest)
    report = preflight(
        backend,
        queries=lambda names: run_queries(config, names),
        will_apply_hpa=applies_keda or applies_hpa,
        energy=config.energy,
        hpa_manifest=config.hpa_manifest if applies_hpa else None,
        owned=OwnedObjects(
            hpa=config.hpa_manifest if applies_hpa else None,
            scaled_object=config.scaled_object if applies_keda else None,
            take_over=take_over,
        ),
    )
    for warning in report.warnings:
        print(f"preflight: {warning}", file=out)
    if not report.ok:
        backend.close()
        raise PreflightError(report.problems)
    names = MetricNames(**report.metric_names.names) if report.metric_names else MetricNames()
    print(
        f"preflight passed: cluster {report.server_version} ({backend.context}), namespace {config.namespace}, "
        f"Prometheus {redact_url(prometheus_url)}",
        file=out,
    )
    return backend, names
