"""The Python API: an experiment from a YAML or JSON file or a dict, its plan, a run and its results.

    from hpa_experiments import Experiment

    experiment = Experiment.from_yaml_file("experiment-configs/high-load-hpa.yaml")
    result = experiment.run(backend="sim", output_dir="/tmp/runs")
    result.summary["kpis"]["replicas"]["peak"], result.metrics["replicas"].max()

`hpa-exp run`, the menu and suites run experiments through this module, so a script gets what
they get: the run directory, its summary.json, and the copies named by
`metrics.output_summary_json_path` / `metrics.output_requests_csv_path`.  Invalid input raises
ConfigError or UsageError, a failed preflight PreflightError (hpa_experiments.errors); the
command line turns them into messages and exit codes.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from hpa_experiments.config import (
    K8S_NAME,
    TAG_KEY,
    ExperimentConfig,
    MetricsConfig,
    config_from_data,
    load_config,
    namespace_problems,
)
from hpa_experiments.errors import EXIT_INTERRUPTED, ConfigError, UsageError
from hpa_experiments.plan import Plan, build_plan
from hpa_experiments.redact import redact_config
from hpa_experiments.rundir import REQUESTS_FILE, RunStatus
from hpa_experiments.signals import Interrupted, raise_on_signals, stop_on_signals

if TYPE_CHECKING:
    import pandas as pd

    from hpa_experiments.analysis.load import Run
    from hpa_experiments.ensemble import EnsembleResult, SeedRun
    from hpa_experiments.runner import Runner, RunObserver, RunResult

DICT_SOURCE = "<dict>"  # names a config given as a dict in messages
CONFIG_COPY = "experiment-config.yaml"


@dataclass
class ExperimentResult:
    """What a run left: its folder and status, summary.json's content, and its files as frames."""

    run_dir: Path
    status: RunStatus
    exit_code: int  # what `hpa-exp run` exits with: 0, 1 or 130
    reason: str | None = None
    summary: dict[str, Any] | None = None  # None when the KPIs could not be computed (see warnings)
    warnings: list[str] = field(default_factory=list)  # problems after the run: KPIs, output copies
    leftover_jobs: list[str] = field(default_factory=list)
    stopped_waiting: bool = False  # a second Ctrl-C cut the cleanup short; no summary computed

    @cached_property
    def run_data(self) -> Run:
        """The run directory loaded (run.json and the CSV files), as the analysis functions take it."""
        from hpa_experiments.analysis.load import load_run

        return load_run(self.run_dir)

    @property
    def metrics(self) -> pd.DataFrame:
        """metrics.csv: one row per grid tick; empty cells are NaN."""
        return self.run_data.metrics

    @property
    def phases(self) -> pd.DataFrame:
        """phases.csv: one row per job, planned and actual start and end, outcome."""
        return self.run_data.phases

    @property
    def events(self) -> pd.DataFrame:
        """events.csv: elapsed_s, time, kind, detail."""
        return self.run_data.events

    @cached_property
    def requests(self) -> pd.DataFrame | None:
        """requests.csv (one row per request; written by the digital twin), or None when the run has none."""
        path = self.run_dir / REQUESTS_FILE
        if not path.exists():
            return None
        import pandas as pd

        return pd.read_csv(path)


class Experiment:
    """One validated experiment config: `plan()` shows its timeline, `run()` runs it."""

    def __init__(self, config: Mapping[str, Any] | ExperimentConfig, base_dir: str | Path | None = None):
        """`config` as a YAML file would hold it (or an already validated ExperimentConfig).  Relative
        paths in it resolve against `base_dir`, by default the current folder."""
        self._given: Any = None  # a dict config, written to the run directory (there is no file to copy)
        if isinstance(config, ExperimentConfig):
            self._config = config
            return
        given = copy.deepcopy(dict(config)) if isinstance(config, Mapping) else config
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        self._config = config_from_data(given, base / DICT_SOURCE, source=DICT_SOURCE)
        self._config.source = None
        self._given = given

    @classmethod
    def from_yaml_file(cls, path: str | Path) -> Experiment:
        return cls(load_config(path, "yaml"))

    @classmethod
    def from_json_file(cls, path: str | Path) -> Experiment:
        return cls(load_config(path, "json"))

    @classmethod
    def from_file(cls, path: str | Path) -> Experiment:
        """JSON for a `.json` file, YAML otherwise."""
        return cls(load_config(path))

    @property
    def config(self) -> ExperimentConfig:
        return self._config

    @property
    def name(self) -> str:
        return self._config.name

    def __repr__(self) -> str:
        return f"Experiment({self.name!r}, source={str(self._config.source or DICT_SOURCE)!r})"

    def plan(self) -> Plan:
        """The timeline: jobs, load per segment, cooldown, warnings."""
        return build_plan(self._config)

    def with_overrides(
        self,
        backend: str | None = None,
        seed: int | None = None,
        namespace: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> Experiment:
        """A copy with the backend ('sim' or 'kubernetes'), simulation seed or namespace replaced,
        and `tags` added to the config's."""
        if backend is None and seed is None and namespace is None and not tags:
            return self
        from hpa_experiments.backends.factory import normalize_backend

        config = self._config.model_copy(deep=True)
        if backend is not None:
            config.backend = normalize_backend(backend)  # type: ignore[assignment]
        if seed is not None:
            if seed < 0:
                raise UsageError(f"seed {seed}: must be a whole number >= 0")
            config.simulation.seed = seed
        if namespace is not None:
            if not K8S_NAME.match(namespace) or len(namespace) > 63:
                raise UsageError(
                    f"namespace {namespace!r}: must be a Kubernetes name (lower-case letters, digits, '-')"
                )
            config.namespace = namespace
            problems = namespace_problems(config, "the namespace override: -n/--namespace")
            if problems:
                raise ConfigError(problems, str(config.source or DICT_SOURCE))
        if tags:
            bad = [key for key in tags if not TAG_KEY.match(key)]
            if bad:
                raise UsageError(f"tag {bad[0]!r}: keys are letters, digits, '.', '_', '-' or '/' (at most 63)")
            config.tags = {**config.tags, **{key: str(value) for key, value in tags.items()}}
        changed = Experiment(config)
        changed._given = self._given
        return changed

    def prepare(
        self,
        backend: str | None = None,
        output_dir: str | Path | None = None,
        seed: int | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        prometheus_url: str | None = None,
        keep_jobs: bool = False,
        observer: RunObserver | None = None,
        handle_signals: bool = True,
        preflight_output: TextIO | None = None,
        take_over: bool = False,
    ) -> PreparedRun:
        """Everything `run()` does before the run starts: overrides, plan, the output folder check and
        the backend (on Kubernetes: connect and preflight, notes to `preflight_output`, default stderr).
        `take_over`: see `run()`."""
        from hpa_experiments.backends.factory import BackendOptions, make_backend
        from hpa_experiments.runner import Runner
        from hpa_experiments.workloads import new_run_id

        experiment = self.with_overrides(backend, seed, namespace)
        config = experiment.config
        plan = build_plan(config)
        base = Path(output_dir) if output_dir is not None else config.output.base_dir
        check_output_folder(base)
        run_id = new_run_id(time.time())
        options = BackendOptions(
            kubeconfig=kubeconfig,
            context=context,
            prometheus_url=prometheus_url,
            output=preflight_output,
            take_over=take_over,
        )
        kube = config.backend == "kubernetes"
        during = "during the preflight; nothing was applied" if kube else "before the run started"
        with raise_on_signals(lambda sig: f"interrupted by {sig} {during}", handle_signals):
            backend_impl, metric_names = make_backend(config.backend, config, plan, run_id, options)
        runner = Runner(
            config,
            plan,
            backend_impl,
            base_dir=base,
            metric_names=metric_names,
            keep_jobs=keep_jobs,
            observer=observer,
            handle_signals=handle_signals,
            run_id=run_id,
        )
        return PreparedRun(runner, experiment._given)

    def run(
        self,
        backend: str | None = None,
        output_dir: str | Path | None = None,
        seed: int | None = None,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        namespace: str | None = None,
        prometheus_url: str | None = None,
        keep_jobs: bool = False,
        observer: RunObserver | None = None,
        handle_signals: bool = True,
        take_over: bool = False,
    ) -> ExperimentResult:
        """Run the experiment (default backend and output folder: the config's) and analyse it.

        With `handle_signals` (on the main thread) SIGINT/SIGTERM stop the run with full cleanup;
        to stop it from another thread, use `prepare(...)` and its `request_stop()`.

        Kubernetes: an HPA or ScaledObject of the manifest's name that exists already and differs
        from the manifest makes the preflight fail (PreflightError, with the diff); with `take_over`
        the run replaces its spec and restores the original at the end (also when interrupted)."""
        prepared = self.prepare(
            backend,
            output_dir,
            seed,
            kubeconfig=kubeconfig,
            context=context,
            namespace=namespace,
            prometheus_url=prometheus_url,
            keep_jobs=keep_jobs,
            observer=observer,
            handle_signals=handle_signals,
            take_over=take_over,
        )
        return prepared.run()

    def run_ensemble(
        self,
        seeds: int | None = None,
        output_dir: str | Path | None = None,
        *,
        processes: int | None = None,
        on_seed: Callable[[SeedRun, int, int], None] | None = None,
    ) -> EnsembleResult:
        """The experiment on the twin under `seeds` seeds (default: `simulation.seeds`), starting at
        `simulation.seed`, `processes` at a time (default: every core); see hpa_experiments.ensemble."""
        from hpa_experiments.ensemble import ensemble_seeds, run_ensemble

        config = self._config
        count = seeds if seeds is not None else config.simulation.seeds
        if count is None:
            raise UsageError("how many seeds? give seeds= (--seeds N) or simulation.seeds in the config")
        base = Path(output_dir) if output_dir is not None else config.output.base_dir
        check_output_folder(base)
        chosen = ensemble_seeds(config.simulation.seed, count)
        return run_ensemble(config, chosen, base, processes=processes, on_seed=on_seed)


class PreparedRun:
    """A run whose backend is ready (preflight passed): `run()` it once, or `close()` it."""

    def __init__(self, runner: Runner, given: Any = None):
        self.runner = runner
        self._given = given

    @property
    def plan(self) -> Plan:
        return self.runner.plan

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop the run (from another thread) at the next moment it can; cleanup follows."""
        self.runner.request_stop(reason)

    def close(self) -> None:
        """Release the backend without running."""
        self.runner.backend.close()

    def run(self) -> ExperimentResult:
        """The run, then its summary.  SIGINT/SIGTERM during the summary stop it: the run is already
        complete and recorded, so the result says what is missing and exits 130."""
        stage = "before the run started"
        with raise_on_signals(lambda sig: f"interrupted by {sig} {stage}", self.runner.handle_signals):
            outcome = self.runner.run()  # handles the signals itself while it runs
            stage = "while computing the summary"
            heard: list[str] = []
            with stop_on_signals(heard.append, self.runner.handle_signals):  # an import cut in half breaks
                import hpa_experiments.analysis.kpis  # noqa: F401 - every later import of the module
            if outcome.stopped_waiting:  # the user asked not to wait any longer: no summary either
                note = f"summary.json not computed (stopped waiting); compute it with: hpa-exp report {outcome.run_dir}"
                return ExperimentResult(
                    outcome.run_dir,
                    outcome.status,
                    outcome.exit_code,
                    outcome.reason,
                    warnings=[note],
                    leftover_jobs=list(outcome.leftover_jobs),
                    stopped_waiting=True,
                )
            try:
                if heard:
                    raise Interrupted(f"{heard[0]} {stage}")
                return finish_run(outcome, self.runner.config.metrics, self._given)
            except Interrupted as exc:
                (outcome.run_dir / "summary.json.tmp").unlink(missing_ok=True)
                note = (
                    f"{exc}: the run itself ended ({outcome.status}, recorded in run.json) and its files are kept; "
                    f"summary.json was not written; compute it with: hpa-exp report {outcome.run_dir}"
                )
                return ExperimentResult(
                    outcome.run_dir,
                    outcome.status,
                    outcome.exit_code or EXIT_INTERRUPTED,  # a failed run stays 1
                    outcome.reason,
                    warnings=[note],
                    leftover_jobs=list(outcome.leftover_jobs),
                )


def finish_run(outcome: RunResult, metrics: MetricsConfig, given: Any = None) -> ExperimentResult:
    """After the runner: the dict config's copy, summary.json and the configured output copies.
    A problem here becomes a warning; it never changes the run's status."""
    result = ExperimentResult(
        outcome.run_dir, outcome.status, outcome.exit_code, outcome.reason, leftover_jobs=list(outcome.leftover_jobs)
    )
    if given is not None:
        _write_given_config(result, given)
    _write_summary(result)
    _copy_outputs(result, metrics)
    return result


def _write_given_config(result: ExperimentResult, given: Any) -> None:
    try:
        plain = redact_config(json.loads(json.dumps(given, default=str)))  # Paths as text, credentials as ***
        (result.run_dir / CONFIG_COPY).write_text(yaml.safe_dump(plain, sort_keys=False), encoding="utf-8")
    except (OSError, ValueError) as exc:
        result.warnings.append(f"could not write {CONFIG_COPY}: {exc}")


def _write_summary(result: ExperimentResult) -> None:
    from hpa_experiments.analysis.kpis import write_summary
    from hpa_experiments.analysis.load import load_run

    try:
        result.summary, _ = write_summary(load_run(result.run_dir))
    except Exception as exc:  # the run itself is complete; `hpa-exp report` can redo the analysis
        result.warnings.append(f"could not compute the KPIs ({exc}); try: hpa-exp report {result.run_dir}")


def _copy_outputs(result: ExperimentResult, metrics: MetricsConfig) -> None:
    from hpa_experiments.analysis.kpis import SUMMARY_FILE

    copies = (
        (metrics.output_summary_json_path, SUMMARY_FILE, "the KPIs could not be computed"),
        (metrics.output_requests_csv_path, REQUESTS_FILE, "only the digital twin records single requests"),
    )
    for target, name, why_missing in copies:
        if target is None:
            continue
        source = result.run_dir / name
        if not source.exists():
            result.warnings.append(f"this run has no {name} ({why_missing}); nothing copied to {target}")
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            result.warnings.append(f"could not copy {name} to {target}: {exc}")


def check_output_folder(folder: Path) -> None:
    """Fail before anything is applied if run directories cannot be made in `folder` (it is created
    only when the run starts)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"output folder {folder}: {existing} exists and is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {folder}: {existing} is not writable")
    try:  # access() can say yes where mkdir fails (root in /proc, some network mounts): try it
        os.rmdir(tempfile.mkdtemp(prefix=".hpa-exp-probe-", dir=existing))
    except OSError as exc:
        raise UsageError(f"output folder {folder}: cannot create folders in {existing} ({exc.strerror})") from None
