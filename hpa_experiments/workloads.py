"""Rendering load-generator Jobs: one template, many rates, a unique name per run."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from hpa_experiments.config import ExperimentConfig
from hpa_experiments.manifests import load_manifest, render_template, template_placeholders
from hpa_experiments.ownership import JOB_LABEL, RUN_LABEL, run_annotations, run_labels
from hpa_experiments.plan import PlannedJob

__all__ = ["JOB_LABEL", "RUN_LABEL", "job_resource_name", "new_run_id", "render_job"]


def new_run_id(started_at: float) -> str:
    """'20261123-041655-3fa2': UTC start second plus 4 random hex digits (a valid label value)."""
    stamp = datetime.fromtimestamp(started_at, tz=timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(2)}"


def job_resource_name(job_name: str, run_id: str) -> str:
    return f"{job_name}-{run_id}"


def render_job(config: ExperimentConfig, job: PlannedJob, run_id: str) -> dict[str, Any]:
    """The batch/v1 Job for `job` in run `run_id`: template filled, name, namespace, the run's labels
    (Job and pod template) and annotations (ownership.py) set."""
    doc = load_manifest(job.manifest)
    if template_placeholders(doc):
        doc = render_template(doc, config.job_template_values(config.jobs[job.index], job.rate))
    labels = {**run_labels(run_id), JOB_LABEL: job.name}
    meta = doc.setdefault("metadata", {})
    meta["name"] = job_resource_name(job.name, run_id)
    meta["namespace"] = config.namespace
    meta.pop("generateName", None)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {**(meta.get("annotations") or {}), **run_annotations(run_id)}
    pod_meta = doc.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **labels}
    return doc
