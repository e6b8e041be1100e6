"""The optional compiled core of the twin: the hot modules built with mypyc, used only when current.

`COMPILED` is the one list of modules that are compiled (scripts/twin-core-build.sh builds them).
A build lives outside the source tree, in `cache_root()/<key>/`, where the key hashes the Python
version and ABI, the list, and the source of every module of this package that the compiled ones
import, directly or not (mypyc may inline another module's constants, so those count too).  When
this package is imported, `install()` computes the key from the sources as they are now and, if a
build with that key exists, puts a finder first on `sys.meta_path` that loads the listed modules
from it; otherwise the pure-Python modules run.  An edited source therefore changes the key and
the stale build is simply not used: it can never run in place of newer code.  The compiled
modules compute exactly what the Python ones do (same operations in the same order; the test
tests/test_twin_core.py requires byte-identical run output).

`HPA_EXP_TWIN_CORE=python` forces the pure-Python modules.  `state()` says which core runs and
why (the backend's description in run.json records it).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

COMPILED: tuple[str, ...] = (
    "hpa_experiments.backends.sim.histogram",
    "hpa_experiments.backends.sim.serving",
    "hpa_experiments.backends.sim.engine_index",
    "hpa_experiments.backends.sim.gateway",
    "hpa_experiments.backends.sim.loadgen",
    "hpa_experiments.backends.sim.fleet",
    "hpa_experiments.backends.sim.request_log",
)
ENV = "HPA_EXP_TWIN_CORE"  # "python": never load the compiled core; unset or "auto": load it when current
CACHE_ENV = "HPA_EXP_TWIN_CORE_CACHE"  # overrides the cache folder
MANIFEST = "manifest.json"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the hpa_experiments folder
_MODULE = r"hpa_experiments(?:\.\w+)*"
_IMPORT = re.compile(rf"^[ \t]*(?:from\s+({_MODULE})\s+import\s+(\([^)]*\)|[\w \t,]+)|import\s+({_MODULE}))", re.M)

log = logging.getLogger(__name__)
_state: dict[str, Any] = {"core": "python", "reason": "not checked yet"}


def cache_root() -> Path:
    """Where builds are kept: $HPA_EXP_TWIN_CORE_CACHE, else ~/.cache/hpa-exp/twin-core."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hpa-exp" / "twin-core"


def module_path(name: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The source file of module `name` (hpa_experiments.*) under the package folder `root`."""
    parts = name.split(".")[1:]
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def closure(names: Sequence[str], root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """`names` and every module of the package they import, directly or not: name -> source file."""
    out: dict[str, Path] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        path = module_path(name, root)
        if path is None:
            continue
        out[name] = path
        for match in _IMPORT.finditer(path.read_text(encoding="utf-8")):
            source, names_imported, plain = match.groups()
            if plain:
                todo.append(plain)
                continue
            todo.append(source)
            for item in re.split(r"[\s,()]+", names_imported):
                if item and item != "as":
                    todo.append(f"{source}.{item}")  # `from package import module`; not a module: skipped
    return out


def build_key(root: Path = PACKAGE_ROOT, modules: Sequence[str] = COMPILED) -> str:
    """Hash of what a build depends on: Python version and ABI, the module list, the sources."""
    digest = hashlib.sha256()
    abi = importlib.machinery.EXTENSION_SUFFIXES[0]
    digest.update(f"{sys.implementation.cache_tag} {sys.version_info[:3]} {abi}\n".encode())
    digest.update(("\n".join(modules) + "\n").encode())
    for name, path in sorted(closure(modules, root).items()):
        digest.update(f"{name}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]


class _CompiledFinder:
    """Finds the compiled modules (and mypyc's shared library) in one build folder."""

    def __init__(self, folder: Path, files: dict[str, str]) -> None:
        self._folder = folder
        self._files = files  # module name -> .so file relative to the folder

    def find_spec(self, fullname: str, path: object = None, target: ModuleType | None = None) -> Any:
        rel = self._files.get(fullname)
        if rel is None:
            return None
        return importlib.util.spec_from_file_location(fullname, self._folder / rel)


def install() -> dict[str, Any]:
    """Use the compiled core if a current build exists (called when the sim package is imported)."""
    global _state
    choice = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if choice == "python":
        _state = {"core": "python", "reason": f"{ENV}=python"}
        return _state
    if choice != "auto":
        log.warning("%s=%r is not 'python' or 'auto'; treated as 'auto'", ENV, choice)
    try:
        key = build_key()
    except OSError as exc:  # an unreadable source: the modules' own import will say it
        _state = {"core": "python", "reason": f"cannot hash the sources: {exc}"}
        return _state
    folder = cache_root() / key
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = {str(k): str(v) for k, v in manifest["files"].items()}
        ok = manifest.get("key") == key and all((folder / rel).is_file() for rel in files.values())
    except (OSError, ValueError, KeyError, AttributeError):
        ok = False
    if not ok:
        others = cache_root().is_dir() and any(cache_root().iterdir())
        reason = "stale build (sources changed since)" if others else "not built"
        _state = {"core": "python", "reason": f"{reason}; build: scripts/twin-core-build.sh", "key": key}
        (log.info if others else log.debug)("twin core: pure Python (%s)", _state["reason"])
        return _state
    already = [name for name in COMPILED if name in sys.modules]
    if already:  # cannot happen through the package's __init__, but never mix the two
        _state = {"core": "python", "reason": f"already imported: {', '.join(already)}", "key": key}
        return _state
    sys.meta_path.insert(0, _CompiledFinder(folder, files))
    _state = {"core": "compiled", "key": key, "folder": str(folder), "modules": list(COMPILED)}
    log.debug("twin core: compiled, from %s", folder)
    return _state


def state() -> dict[str, Any]:
    """Which core runs (`core`: compiled or python) and why; a copy."""
    out = dict(_state)
    if out.get("core") == "compiled":  # confirm the modules really came from the build
        loaded = [n for n in COMPILED if n in sys.modules]
        out["loaded_compiled"] = [n for n in loaded if str(getattr(sys.modules[n], "__file__", "")).endswith(".so")]
    return out
