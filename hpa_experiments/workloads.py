"""Rendering load-generator Jobs: one template, many rates, a unique name per run."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from hpa_experiments.config import ExperimentConfig
from hpa_experiments.manifests import load_manifest, render_template, template_placeholders
from hpa_experiments.plan import PlannedJob

MANAGED_BY = ("app.kubernetes.io/managed-by", "hpa-exp")
RUN_LABEL = "hpa-exp/run"
JOB_LABEL = "hpa-exp/job"


def new_run_id(started_at: float) -> str:
    """'20261123-041655-3fa2': UTC start second plus 4 random hex digits (a valid label value)."""
    stamp = datetime.fromtimestamp(started_at, tz=timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def job_resource_name(job_name: str, run_id: str) -> str:
    return f"{job_name}-{run_id}"


def render_job(config: ExperimentConfig, job: PlannedJob, run_id: str) -> dict[str, Any]:
    """The batch/v1 Job for `job` in run `run_id`: template filled, name, namespace, labels set."""
    doc = load_manifest(job.manifest)
    if template_placeholders(doc):
        doc = render_template(doc, config.job_template_values(config.jobs[job.index], job.rate))
    labels = {MANAGED_BY[0]: MANAGED_BY[1], RUN_LABEL: run_id, JOB_LABEL: job.name}
    meta = doc.setdefault("metadata", {})
    meta["name"] = job_resource_name(job.name, run_id)
    meta["namespace"] = config.namespace
    meta.pop("generateName", None)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    pod_meta = doc.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    return doc
