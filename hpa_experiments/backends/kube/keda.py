"""A run's KEDA ScaledObject on a cluster: delete it and read its status, as raw JSON through the
official client's CustomObjectsApi (keda.sh/v1alpha1 scaledobjects); claim.py applies it.

KEDA's operator then creates the HPA `status.hpaName` (keda-hpa-<name>), which the backend
reads like any HPA; its External metrics s<i>-prometheus are reported under the triggers' names
(scaledobject.PrometheusTrigger.label), as on the twin.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from kubernetes import client

from hpa_experiments.backends.base import HpaMetricReading, ScaledObjectState
from hpa_experiments.scaledobject import ScaledObjectSpec

GROUP, VERSION, PLURAL = "keda.sh", "v1alpha1", "scaledobjects"

CallJson = Callable[..., "dict[str, Any] | None"]


class ScaledObjects:
    """The ScaledObject of one run (`spec`), in `namespace`, through `call_json` (retries, JSON)."""

    def __init__(self, api_client: client.ApiClient, call_json: CallJson, spec: ScaledObjectSpec, namespace: str):
        self.api = client.CustomObjectsApi(api_client)
        self.call_json = call_json
        self.spec = spec
        self.namespace = namespace

    def delete(self) -> None:
        self.call_json(
            f"delete ScaledObject {self.namespace}/{self.spec.name}",
            self.api.delete_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.spec.name,
            tolerate=(404,),
        )

    def state(self) -> ScaledObjectState | None:
        """Its status now; None when it does not exist (not applied yet, or deleted)."""
        found = self.call_json(
            f"read ScaledObject {self.namespace}/{self.spec.name}",
            self.api.get_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            self.spec.name,
            tolerate=(404,),
        )
        if found is None:
            return None
        status = found.get("status") or {}
        conditions = tuple(
            {key: str(c.get(key, "")) for key in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or []
            if isinstance(c, Mapping)
        )
        return ScaledObjectState(
            name=self.spec.name,
            hpa_name=status.get("hpaName"),
            conditions=conditions,
            last_active_time=status.get("lastActiveTime"),
        )

    def named_readings(self, readings: tuple[HpaMetricReading, ...]) -> tuple[HpaMetricReading, ...]:
        """KEDA's s<i>-prometheus metrics under their triggers' names (the metrics.csv columns)."""
        out = []
        for reading in readings:
            trigger = self.spec.trigger_for_metric(reading.name)
            out.append(replace(reading, name=trigger.label) if trigger is not None else reading)
        return tuple(out)
