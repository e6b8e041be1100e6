"""Build the twin's compiled core (twin_core.COMPILED) with mypyc into the cache folder.

    python -m hpa_experiments.backends.sim.twin_core_build            # build unless current
    python -m hpa_experiments.backends.sim.twin_core_build --check    # exit 0 if a current build exists

The package's sources are copied to a temporary folder first and compiled there, so no file is
written into the source tree and the key (twin_core.build_key) is that of exactly the sources
compiled.  The result goes to `twin_core.cache_root()/<key>/` with a manifest; older builds for
the same Python are removed.  Needs mypy (mypyc), a C compiler and the Python headers; when one is
missing it says which and exits 2 (the twin then runs in pure Python, as without a build).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from hpa_experiments.backends.sim import twin_core

PREFIX = "twin-core-build:"


def missing_prerequisites() -> list[str]:
    """What the build needs and this machine lacks, each as a line saying how to get it."""
    out = []
    if importlib.util.find_spec("mypyc") is None:
        out.append("mypyc (it comes with mypy: pip install mypy, or the test extras)")
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        out.append(f"a C compiler ({compiler}; e.g. apt-get install gcc)")
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.is_file():
        out.append(f"the Python headers ({header}; e.g. apt-get install python3-dev)")
    return out


def current_build(key: str) -> Path | None:
    folder = twin_core.cache_root() / key
    try:
        manifest = json.loads((folder / twin_core.MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    files = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    if manifest.get("key") == key and files and all((folder / rel).is_file() for rel in files.values()):
        return folder
    return None


def copy_sources(dest: Path) -> Path:
    """The package's .py files (and the project's mypy settings) into `dest`; returns the package copy."""
    package = dest / "src" / "hpa_experiments"
    shutil.copytree(
        twin_core.PACKAGE_ROOT,
        package,
        ignore=lambda folder, names: [n for n in names if n == "__pycache__" or n.endswith((".so", ".pyc"))],
    )
    return package


def mypy_config(dest: Path) -> list[str]:
    """--config-file for the project's mypy settings, when the sources come from a checkout."""
    pyproject = twin_core.PACKAGE_ROOT.parent / "pyproject.toml"
    if not pyproject.is_file():
        return []
    folder = dest / "config"
    folder.mkdir()
    shutil.copy(pyproject, folder / "pyproject.toml")  # apart from the sources: setuptools must not read it
    return ["--config-file", str(folder / "pyproject.toml")]


def build(force: bool = False) -> int:
    missing = missing_prerequisites()
    if missing:
        for line in missing:
            print(f"{PREFIX} missing {line}", file=sys.stderr)
        print(f"{PREFIX} not built; the twin runs in pure Python (same results, slower)", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hpa-exp-twin-core-") as tmp:
        work = Path(tmp)
        package = copy_sources(work)
        key = twin_core.build_key(package)
        done = current_build(key)
        if done is not None and not force:
            print(f"{PREFIX} up to date: {done}")
            return 0
        files = [str(Path(*name.split(".")).with_suffix(".py")) for name in twin_core.COMPILED]
        command = [sys.executable, "-m", "mypyc", *mypy_config(work), *files]
        print(f"{PREFIX} compiling {len(files)} modules with mypyc (about a minute per few modules)...", flush=True)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        result = subprocess.run(command, cwd=package.parent, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-25:]
            print("\n".join(tail), file=sys.stderr)
            print(f"{PREFIX} mypyc failed (exit {result.returncode}); the twin runs in pure Python", file=sys.stderr)
            return 1
        outputs = collect(package.parent)
        if outputs is None:
            print(f"{PREFIX} mypyc ran but its output is not where expected in {package.parent}", file=sys.stderr)
            return 1
        seconds = time.monotonic() - started
        folder = install_build(key, package.parent, outputs, seconds)
    print(f"{PREFIX} built in {seconds:.0f} s: {folder}")
    if key != twin_core.build_key():
        print(f"{PREFIX} note: the sources changed during the build; it is not used until rebuilt", file=sys.stderr)
    return 0


def collect(src: Path) -> dict[str, str] | None:
    """module name -> .so path relative to `src`, for the compiled modules and mypyc's shared library."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    out: dict[str, str] = {}
    for name in twin_core.COMPILED:
        rel = Path(*name.split(".")).with_name(name.rsplit(".", 1)[1] + suffix)
        if not (src / rel).is_file():
            return None
        out[name] = str(rel)
    shared = [p for p in src.glob(f"*__mypyc{suffix}")]
    if len(shared) != 1:
        return None
    out[shared[0].name[: -len(suffix)]] = shared[0].name
    return out


def install_build(key: str, src: Path, files: dict[str, str], seconds: float) -> Path:
    """Copy the build into the cache (atomically: a new folder renamed into place); drop older ones."""
    root = twin_core.cache_root()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    for rel in files.values():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / rel, staging / rel)
    abi = importlib.machinery.EXTENSION_SUFFIXES[0]
    manifest = {
        "key": key,
        "files": files,
        "abi": abi,
        "python": sys.version.split()[0],
        "mypy": _mypy_version(),
        "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (staging / twin_core.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    folder = root / key
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    for other in root.iterdir():  # older builds for this Python can never be used again
        if other != folder and other.is_dir() and not other.name.startswith("."):
            try:
                same_abi = json.loads((other / twin_core.MANIFEST).read_text()).get("abi") == abi
            except (OSError, ValueError):
                same_abi = True  # unfinished or broken
            if same_abi:
                shutil.rmtree(other, ignore_errors=True)
    return folder


def _mypy_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mypy")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twin-core-build", description=__doc__.split("\n")[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if a current build exists")
    parser.add_argument("--check", action="store_true", help="exit 0 if a current build exists, 1 if not")
    parser.add_argument("--print-dir", action="store_true", help="print the folder of the current build's key")
    args = parser.parse_args(argv)
    if args.print_dir:
        print(twin_core.cache_root() / twin_core.build_key())
        return 0
    if args.check:
        folder = current_build(twin_core.build_key())
        print(f"{PREFIX} {'current build: ' + str(folder) if folder else 'no current build'}")
        return 0 if folder else 1
    return build(force=args.force)


if __name__ == "__main__":
    sys.exit(main())
