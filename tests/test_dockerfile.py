"""Lint of the Dockerfile: parsed by Docker's own parser (the `dockerfile` package wraps
moby/buildkit's), then the rules the image promises are checked.  No container engine is
available here, so the image itself is not built; these checks are what can be verified."""

from __future__ import annotations

import fnmatch
import re
from importlib.metadata import entry_points
from pathlib import Path

import dockerfile
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
IN_CLUSTER_JOB = REPO / "manifests" / "in-cluster" / "hpa-exp-job.yaml"
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|make|build-essential|git|curl|wget|uv|python -m build)\b")


def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def stages() -> list[list[dockerfile.Command]]:
    found: list[list[dockerfile.Command]] = []
    for command in commands():
        if command.cmd == "FROM":
            found.append([])
        if found:
            found[-1].append(command)
    return found


def build_args() -> dict[str, str]:
    return dict(c.value[0].split("=", 1) for c in commands() if c.cmd == "ARG" and "=" in c.value[0])


def test_it_parses_and_has_a_build_stage_and_a_runtime_stage() -> None:
    names = [stage[0].value[-1] for stage in stages()]
    assert names == ["build", "runtime"]


def test_base_images_are_pinned_to_a_patch_release() -> None:
    args = build_args()
    for stage in stages():
        image = stage[0].value[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        tag = image.partition(":")[2]
        assert tag and tag != "latest", image
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: pin a patch release"


def test_the_final_stage_runs_as_a_non_root_user() -> None:
    runtime = stages()[-1]
    users = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root uid, so runAsNonRoot can verify it"
    last_user = max(i for i, c in enumerate(runtime) if c.cmd == "USER")
    assert all(c.cmd != "RUN" for c in runtime[last_user:]), "nothing runs after the user switch as root"


def test_the_final_stage_has_no_build_tools_and_no_pip_cache() -> None:
    runtime = stages()[-1]
    for command in runtime:
        text = " ".join(command.value)
        if command.cmd == "RUN":
            assert not BUILD_TOOLS.search(text), command.original
            if "pip install" in text:
                assert "--no-cache-dir" in text, command.original
        if command.cmd == "COPY" and any(flag.startswith("--from=") for flag in command.flags):
            assert command.value[0].startswith("/dist"), "only the built wheel comes from the build stage"


def test_entrypoint_is_the_console_script_in_exec_form() -> None:
    (entrypoint,) = [c for c in stages()[-1] if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and entrypoint.value == ("hpa-exp",)
    scripts = entry_points(group="console_scripts")
    assert [s.value for s in scripts if s.name == "hpa-exp"] == ["hpa_experiments.cli:main"]


def dockerignored(path: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip()]
    return any(
        fnmatch.fnmatch(path, p.removeprefix("**/")) or path.startswith(p.rstrip("/") + "/") or path == p
        for p in patterns
    )


@pytest.mark.parametrize("stage", [0, 1])
def test_every_copied_path_is_in_the_build_context(stage: int) -> None:
    for command in stages()[stage]:
        if command.cmd != "COPY" or any(f.startswith("--from=") for f in command.flags):
            continue
        for source in command.value[:-1]:
            assert (REPO / source).exists(), f"{command.original}: {source} is not in the repository"
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"


def test_the_in_cluster_job_runs_the_image_as_its_user() -> None:
    """manifests/in-cluster runs this image: its runAsUser is the image's uid, and the image's
    working folder holds the shipped configs the Job's arguments name."""
    job = next(d for d in yaml.safe_load_all(IN_CLUSTER_JOB.read_text()) if d and d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    uid = [c.value[0] for c in stages()[-1] if c.cmd == "USER"][-1].split(":")[0]
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    workdir = [c.value[0] for c in stages()[-1] if c.cmd == "WORKDIR"][-1]
    assert container["workingDir"] == workdir
    assert container["command"] == ["hpa-exp"]
    assert container["image"].startswith("hpa-exp:")
