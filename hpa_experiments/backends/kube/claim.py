"""The run's autoscaler object on a cluster (the HPA, or KEDA's ScaledObject): create it with the
run's marks, or deal with one that already exists without changing it for good (ownership.py).

An existing object is compared with the manifest by a dry-run replace: the API server applies its
defaults to the manifest's spec, so "identical" means identical as the server stores it.  Then:
identical -> used as is; different -> refused (the diff shown), or with `take_over` replaced, its
original kept in an annotation and put back by `Claims.restore` (or `hpa-exp cleanup`).
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from hpa_experiments.errors import BackendError
from hpa_experiments.ownership import owner_run, restored, spec_diff, stamp, taken_over

CallJson = Callable[..., "dict[str, Any] | None"]
KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
CONFLICT_RETRIES = 5  # a PUT on a stale resourceVersion (the controller wrote its status): read again

# in the preflight problem that refuses an existing, different object (the menu looks for it)
REFUSED_EXISTING = "already exists and differs from the manifest"


@dataclass(frozen=True)
class Kind:
    """One kind of object in one namespace, through the backend's `call_json` (retries, raw JSON)."""

    name: str  # "HPA" | "ScaledObject", for messages
    namespace: str
    read: Callable[[str], dict[str, Any] | None]  # None: not found
    create: Callable[[dict[str, Any]], dict[str, Any] | None]  # None: the name is taken (409)
    replace: Callable[[str, dict[str, Any], bool], dict[str, Any] | None]  # None: conflict (409)
    delete: Callable[[str], None]
    list: Callable[[str], list[dict[str, Any]]]  # by label selector; [] when the API is not served

    def label(self, name: str) -> str:
        return f"{self.name} {self.namespace}/{name}"


def hpa_kind(call_json: CallJson, api: client.AutoscalingV2Api, namespace: str) -> Kind:
    def replace(name: str, body: dict[str, Any], dry_run: bool) -> dict[str, Any] | None:
        what = f"{'dry-run ' if dry_run else ''}replace HPA {namespace}/{name}"
        extra = {"dry_run": "All"} if dry_run else {}
        method = api.replace_namespaced_horizontal_pod_autoscaler
        return call_json(what, method, name, namespace, body, tolerate=(409,), **extra)

    def listing(selector: str) -> list[dict[str, Any]]:
        what = f"list HPAs ({selector}) in {namespace}"
        found = call_json(what, api.list_namespaced_horizontal_pod_autoscaler, namespace, label_selector=selector)
        return list((found or {}).get("items") or [])

    return Kind(
        "HPA",
        namespace,
        read=lambda name: call_json(
            f"read HPA {namespace}/{name}",
            api.read_namespaced_horizontal_pod_autoscaler,
            name,
            namespace,
            tolerate=(404,),
        ),
        create=lambda body: call_json(
            f"create HPA {namespace}/{body['metadata']['name']}",
            api.create_namespaced_horizontal_pod_autoscaler,
            namespace,
            body,
            tolerate=(409,),
        ),
        replace=replace,
        delete=lambda name: _none(
            call_json(
                f"delete HPA {namespace}/{name}",
                api.delete_namespaced_horizontal_pod_autoscaler,
                name,
                namespace,
                tolerate=(404,),
            )
        ),
        list=listing,
    )


def scaled_object_kind(call_json: CallJson, api: client.CustomObjectsApi, namespace: str) -> Kind:
    def replace(name: str, body: dict[str, Any], dry_run: bool) -> dict[str, Any] | None:
        what = f"{'dry-run ' if dry_run else ''}replace ScaledObject {namespace}/{name}"
        extra = {"dry_run": "All"} if dry_run else {}
        method = api.replace_namespaced_custom_object
        return call_json(what, method, *KEDA[:2], namespace, KEDA[2], name, body, tolerate=(409,), **extra)

    def listing(selector: str) -> list[dict[str, Any]]:
        what = f"list ScaledObjects ({selector}) in {namespace}"
        method = api.list_namespaced_custom_object
        found = call_json(what, method, *KEDA[:2], namespace, KEDA[2], label_selector=selector, tolerate=(404,))
        return list((found or {}).get("items") or [])  # 404: KEDA is not installed

    return Kind(
        "ScaledObject",
        namespace,
        read=lambda name: call_json(
            f"read ScaledObject {namespace}/{name}",
            api.get_namespaced_custom_object,
            *KEDA[:2],
            namespace,
            KEDA[2],
            name,
            tolerate=(404,),
        ),
        create=lambda body: call_json(
            f"create ScaledObject {namespace}/{body['metadata']['name']}",
            api.create_namespaced_custom_object,
            *KEDA[:2],
            namespace,
            KEDA[2],
            body,
            tolerate=(409,),
        ),
        replace=replace,
        delete=lambda name: _none(
            call_json(
                f"delete ScaledObject {namespace}/{name}",
                api.delete_namespaced_custom_object,
                *KEDA[:2],
                namespace,
                KEDA[2],
                name,
                tolerate=(404,),
            )
        ),
        list=listing,
    )


def _none(_: object) -> None:
    return None


@dataclass(frozen=True)
class Existing:
    """An object of the manifest's name found in the cluster, and how its spec differs ("" = identical)."""

    live: dict[str, Any]
    diff: str


def compare(kind: Kind, manifest: Mapping[str, Any]) -> Existing | None:
    """The existing object of the manifest's name and its diff to the manifest; None when there is none."""
    name = manifest["metadata"]["name"]
    live = kind.read(name)
    if live is None:
        return None
    body = copy.deepcopy(live)
    body["spec"] = copy.deepcopy(manifest.get("spec"))
    wanted = kind.replace(name, body, True)
    wanted_spec = (wanted or body).get("spec")  # a conflict on a dry run: compare without the server's defaults
    return Existing(live, spec_diff(live.get("spec"), wanted_spec, kind.label(name)))


def refusal(kind: Kind, name: str, existing: Existing) -> str:
    """Why the run will not use the existing object, with the diff and the ways out."""
    owner = owner_run(existing.live)
    left = (
        f" It carries the marks of hpa-exp run {owner}, which could not clean up: "
        f"`hpa-exp cleanup --all -n {kind.namespace}` removes it (or restores what that run took over)."
        if owner
        else ""
    )
    return (
        f"{kind.label(name)} {REFUSED_EXISTING}; a run changes no object it did "
        f"not create.{left} Delete it, make the manifest equal to it, or pass --take-over (the run then "
        "replaces its spec and restores the original at the end, also when interrupted). Diff:\n"
        + textwrap.indent(existing.diff, "    ")
    )


def put(kind: Kind, name: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> bool:
    """Read, change and replace the object, again on a conflict; False when it is gone or `change` says None."""
    for _ in range(CONFLICT_RETRIES):
        live = kind.read(name)
        body = change(live) if live is not None else None
        if body is None:
            return False
        if kind.replace(name, body, False) is not None:
            return True
    raise BackendError(f"{kind.label(name)}: changed by someone else {CONFLICT_RETRIES} times in a row; not replaced")


@dataclass
class Claims:
    """The autoscaler objects one run applies: what it created, what it took over (to restore)."""

    run_id: str
    take_over: bool = False
    warn: Callable[[str], None] = lambda _: None
    taken: list[tuple[Kind, str]] = field(default_factory=list)

    def apply(self, kind: Kind, manifest: Mapping[str, Any]) -> bool:
        """Make the manifest's object exist; True when this call created it (the run then removes it)."""
        name = manifest["metadata"]["name"]
        if kind.create(stamp(manifest, self.run_id)) is not None:
            return True
        existing = compare(kind, manifest)
        if existing is None:  # deleted between create and read: try once more
            if kind.create(stamp(manifest, self.run_id)) is not None:
                return True
            raise BackendError(f"{kind.label(name)}: could neither create it nor read it")
        if not existing.diff:
            self.warn(f"{kind.label(name)} already exists, identical to the manifest: used as is (not changed, kept)")
            return False
        if not self.take_over:
            raise BackendError(refusal(kind, name, existing))
        self.taken.append((kind, name))
        put(kind, name, lambda live: taken_over(live, manifest, self.run_id))
        self.warn(
            f"took over {kind.label(name)} (--take-over): spec replaced by the manifest, the original kept in "
            "annotation hpa-exp/original and restored at the end"
        )
        return False

    def restore(self) -> list[str]:
        """Put back every object this run took over; one line each for the run's events."""
        lines = []
        for kind, name in self.taken:
            if put(kind, name, restored):
                lines.append(f"{kind.label(name)}: original spec, labels and annotations restored")
            else:
                lines.append(f"{kind.label(name)}: nothing to restore (deleted during the run, or never changed)")
        self.taken.clear()
        return lines


@dataclass
class Released:
    """What `release_by_label` did: objects deleted (the run created them) and restored (taken over)."""

    deleted: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)


def release_by_label(kinds: list[Kind], selector: str) -> Released:
    """Delete the objects with the label `selector` that a run created and restore those it took over.

    An HPA made by KEDA for a ScaledObject carries the ScaledObject's labels; KEDA owns it, so it is
    left to KEDA (deleting the ScaledObject deletes it)."""
    done = Released()
    for kind in kinds:
        for obj in kind.list(selector):
            meta = obj.get("metadata") or {}
            name = meta["name"]
            if any(o.get("kind") == "ScaledObject" for o in meta.get("ownerReferences") or []):
                continue
            if restored(obj) is not None:
                if put(kind, name, restored):
                    done.restored.append(kind.label(name))
            else:
                kind.delete(name)
                done.deleted.append(kind.label(name))
    return done


def preflight_findings(kind: Kind, manifest: Mapping[str, Any], take_over: bool) -> tuple[list[str], list[str]]:
    """(problems, warnings) about an object of the manifest's name that exists before the run."""
    name = manifest["metadata"]["name"]
    try:
        existing = compare(kind, manifest)
    except BackendError as exc:
        return [f"cannot compare the existing {kind.label(name)} with the manifest: {exc}"], []
    if existing is None:
        return [], []
    if not existing.diff:
        return [], [f"{kind.label(name)} exists and equals the manifest: the run uses it as is (no change, kept)"]
    if not take_over:
        return [refusal(kind, name, existing)], []
    return [], [
        f"{kind.label(name)} exists and differs from the manifest: --take-over replaces its spec for the run "
        "and restores it at the end. Diff:\n" + textwrap.indent(existing.diff, "    ")
    ]
