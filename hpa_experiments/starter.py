"""`hpa-exp init`: a starter folder for a user's own repository, laid out like hpa-exp's own, so
the config's relative paths (../manifests/..., ../workloads/...) work as written:

    DIR/experiment-configs/my-experiment.yaml   commented config (from the shipped high-load one)
    DIR/manifests/hpa-vllm-*.yaml               the HPA variants (and keda/ when shipped)
    DIR/manifests/rbac/                         the runner's Role for clusters
    DIR/workloads/vllm-bench-serve.yaml         the load Job template
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from hpa_experiments.errors import UsageError
from hpa_experiments.kit import kit_dir

STARTER_CONFIG = "my-experiment.yaml"
SOURCE_CONFIG = "high-load-hpa.yaml"
README = """# hpa-exp experiments

Made by `hpa-exp init`.  Edit experiment-configs/my-experiment.yaml (its comments say what each
key does), then:

    hpa-exp validate experiment-configs/my-experiment.yaml
    hpa-exp plan experiment-configs/my-experiment.yaml
    hpa-exp run experiment-configs/my-experiment.yaml --backend sim          # the digital twin
    hpa-exp run experiment-configs/my-experiment.yaml --backend kubernetes   # your cluster

manifests/ holds the HPA variants the config can point at, workloads/ the load Job template.
Runs land in experiment-data/.
"""


def write_starter(folder: Path) -> list[Path]:
    """Write the starter files into `folder` (new or empty); returns the files written."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"{folder}: exists and is not an empty folder; choose a new one")
    manifests, workloads = kit_dir("manifests"), kit_dir("workloads")
    written: list[Path] = []

    def copy(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)

    for hpa in sorted(manifests.glob("hpa-*.yaml")):
        copy(hpa, folder / "manifests" / hpa.name)
    for sub in ("keda", "rbac"):
        for manifest in sorted((manifests / sub).glob("*.yaml")):
            copy(manifest, folder / "manifests" / sub / manifest.name)
    copy(workloads / "vllm-bench-serve.yaml", folder / "workloads" / "vllm-bench-serve.yaml")
    config = (kit_dir("experiment-configs") / SOURCE_CONFIG).read_text(encoding="utf-8")
    config = re.sub(r"^name: high-load-hpa\b", "name: my-experiment", config, count=1, flags=re.MULTILINE)
    target = folder / "experiment-configs" / STARTER_CONFIG
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(config, encoding="utf-8")
    written.append(target)
    readme = folder / "README.md"
    readme.write_text(README, encoding="utf-8")
    written.append(readme)
    (folder / "experiment-data").mkdir()
    return written
