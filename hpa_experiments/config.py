"""The experiment config: pydantic models, `load_config(path)`, and messages people can act on.

The original shell system's files load unchanged; what it lacked (Prometheus URL, a gap
between sequential jobs, per-job rate and template values, backend choice, SLOs, the
simulation section) is added with defaults.  Relative paths resolve against the config
file's folder.  Every problem names the file, the key path and what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, overload

import yaml
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hpa_experiments.durations import is_prometheus_duration, parse_duration
from hpa_experiments.errors import ConfigError
from hpa_experiments.hpa_spec import validate_hpa_manifest
from hpa_experiments.kit import kit_dir
from hpa_experiments.manifests import (
    ManifestError,
    check_job_manifest,
    hpa_problems,
    load_hpa_manifest,
    load_manifest,
    namespace_mismatch,
    render_template,
    template_placeholders,
)
from hpa_experiments.ownership import job_template_problems
from hpa_experiments.redact import redact_config
from hpa_experiments.scaledobject import keda_hpa_manifest, parse_scaled_object, scaled_object_problems
from hpa_experiments.twin_profiles import PROFILES, load_profile
from hpa_experiments.validation_messages import describe_error, show_value
from hpa_experiments.yaml_io import InputFileError, load_json, load_yaml, read_input_text

Seconds = Annotated[float, BeforeValidator(parse_duration)]
MIN_INTERVAL_S = 0.1  # a sampling or scrape grid finer than this only makes millions of rows
MAX_RATE = 100_000.0  # requests per second; more is a typo (and would make the twin generate forever)
MAX_REPLICAS = 1000  # the twin starts this many pods at once; more would not finish
MAX_LATENCY_MS = 86_400_000.0  # a day: a latency bound above it is a typo (e.g. seconds given in microseconds)


def _interval(value: float) -> float:
    if 0 < value < MIN_INTERVAL_S:
        raise ValueError(f"must be at least {MIN_INTERVAL_S:g} s (got {show_value(value)})")
    return value


Interval = Annotated[Seconds, AfterValidator(_interval)]
K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")  # \Z: "$" would accept a trailing newline
RUN_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")
BACKEND_ALIASES = {
    "sim": "simulation",
    "simulation": "simulation",
    "twin": "simulation",
    "kubernetes": "kubernetes",
    "kube": "kubernetes",
    "k8s": "kubernetes",
}
TAG_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?\Z")
MAX_JOB_NAME = 42  # a 20-character run id is appended, and Job names stay within 63


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class HpaConfig(_Section):
    enabled: bool = True
    manifest: Path | None = None
    name: str | None = Field(None, description="HPA name; defaults to the manifest's metadata.name")
    apply: bool = Field(True, description="apply the manifest before the run (kubernetes backend)")
    remove_after: bool = Field(True, description="delete the HPA after the run if this run created it")


class AutoscalerConfig(_Section):
    """`autoscaler:`: an HPA (`kind: hpa`, the same keys as the older `hpa:` section) or a KEDA
    ScaledObject (`kind: keda`); KEDA creates the HPA `keda-hpa-<name>` that the run records."""

    kind: Literal["hpa", "keda"] = "hpa"
    enabled: bool = True
    manifest: Path | None = None
    name: str | None = Field(None, description="HPA or ScaledObject name; defaults to the manifest's metadata.name")
    apply: bool = Field(True, description="apply the manifest before the run (kubernetes backend)")
    remove_after: bool = Field(True, description="delete it after the run if this run created it")


class JobConfig(_Section):
    name: str
    manifest: Path | None = None
    duration: Seconds = Field(gt=0)
    start_delay: Seconds = Field(0.0, ge=0)
    rate: float | None = Field(None, gt=0, le=MAX_RATE, description="offered load in requests per second")
    values: dict[str, Any] = Field(default_factory=dict)
    results_grace: Seconds | None = Field(None, ge=0, description="overrides output.results_grace for this job")

    @field_validator("name")
    @classmethod
    def _kubernetes_name(cls, v: str) -> str:
        if len(v) > MAX_JOB_NAME:
            raise ValueError(f"must be at most {MAX_JOB_NAME} characters (a run id is appended)")
        if not K8S_NAME.match(v):
            raise ValueError("must be a Kubernetes name: lower-case letters, digits and '-'")
        return v


class CooldownConfig(_Section):
    enabled: bool = False
    duration: Seconds = Field(0.0, ge=0)


class PromQuery(_Section):
    query: str


class MetricsConfig(_Section):
    interval: Interval = Field(5.0, gt=0)
    rate_window: str = "1m"
    percentiles: list[float] = Field(
        default_factory=lambda: [0.5, 0.9, 0.99],
        validation_alias=AliasChoices("percentiles", "percentiles_to_calculate"),
        description="quantiles as fractions (0.9) or percents (90); alias: percentiles_to_calculate",
    )
    warm_up_duration_s: Seconds = Field(
        0.0, ge=0, description="samples and requests of the first N seconds stay in the files, not in the statistics"
    )
    output_summary_json_path: Path | None = Field(None, description="also copy summary.json here")
    output_requests_csv_path: Path | None = Field(None, description="also copy requests.csv here (twin)")
    selector: str = Field(
        "",
        description="extra label matchers for every standard query, as written inside braces: "
        'pod=~"vllm-.*",role="decode" (a list of matchers is accepted too)',
    )
    prometheus: dict[str, PromQuery] = Field(default_factory=dict)
    log_level: str | None = Field(None, description="accepted from the original configs; unused")

    @field_validator("selector", mode="before")
    @classmethod
    def _selector(cls, v: Any) -> Any:
        if isinstance(v, list) and all(isinstance(m, str) for m in v):
            v = ",".join(m.strip().rstrip(",") for m in v)
        return normalize_selector(v) if isinstance(v, str) else v

    @model_validator(mode="before")
    @classmethod
    def _one_percentile_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "percentiles" in data and "percentiles_to_calculate" in data:
            raise ValueError("give 'percentiles' or 'percentiles_to_calculate' (the same setting), not both")
        return data

    @field_validator("rate_window")
    @classmethod
    def _window(cls, v: str) -> str:
        if not is_prometheus_duration(v):
            raise ValueError(f"must be a PromQL duration such as '1m' or '30s' (got {v!r})")
        return v

    @field_validator("percentiles")
    @classmethod
    def _quantiles(cls, v: list[float]) -> list[float]:
        """Fractions (0.9) as Prometheus writes them, or percents (90) as the design documents do."""
        bad = [q for q in v if not (0 < q < 1 or 1 <= q < 100)]
        if bad:
            raise ValueError(
                f"each percentile must be a fraction in (0, 1) or a percent in [1, 100) (got {show_value(bad[0])})"
            )
        if any(q < 1 for q in v) and any(q >= 1 for q in v):
            raise ValueError("write all percentiles as fractions (0.9) or all as percents (90), not a mix")
        return [round(q / 100, 10) if q >= 1 else q for q in v]

    @field_validator("prometheus")
    @classmethod
    def _query_names(cls, v: dict[str, PromQuery]) -> dict[str, PromQuery]:
        for name in v:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", name):
                raise ValueError(f"query name {name!r} must be letters, digits and '_' (it names a column)")
        return v


def normalize_selector(text: str) -> str:
    """Label matchers as written inside PromQL braces, checked and in canonical form ('' for none)."""
    text = text.strip().removeprefix("{").removesuffix("}").strip()
    if not text:
        return ""
    if re.match(r"(.*[{,\s])?__name__\s*[=!]", "," + text):
        raise ValueError("must not match __name__: the standard queries choose the metric names")
    import promql_parser  # here, not at import: `hpa-exp --help` need not load it

    try:
        parsed = promql_parser.parse(f"up{{{text}}}")
    except ValueError as exc:
        raise ValueError(
            f'not valid PromQL label matchers ({exc}); write them as inside braces, e.g. pod=~"vllm-.*",role="decode"'
        ) from None
    if not isinstance(parsed, promql_parser.VectorSelector) or parsed.matchers.or_matchers:
        raise ValueError('must be label matchers joined by commas, e.g. pod=~"vllm-.*",role="decode"')
    return str(parsed).removeprefix("up{").removesuffix("}")


class PrometheusConfig(_Section):
    url: str | None = None
    token_env: str | None = Field(None, description="environment variable holding a bearer token")
    token_file: Path | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    verify_tls: bool = True
    ca_file: Path | None = None
    max_answer_mib: float = Field(8.0, gt=0, le=1024, description="a larger answer is a failed query (cell left empty)")


class SloGates(_Section):
    """Upper bounds a run must meet; `hpa-exp run --fail-on-slo` exits 4 when one is missed."""

    ttft_p50_ms: float | None = Field(None, gt=0, le=MAX_LATENCY_MS)
    ttft_p90_ms: float | None = Field(None, gt=0, le=MAX_LATENCY_MS)
    ttft_p99_ms: float | None = Field(None, gt=0, le=MAX_LATENCY_MS)
    itl_p50_ms: float | None = Field(None, gt=0, le=MAX_LATENCY_MS)
    itl_p90_ms: float | None = Field(None, gt=0, le=MAX_LATENCY_MS)
    itl_p99_ms: float | None = Field(None, gt=0, le=MAX_LATENCY_MS)
    failed_requests: int | None = Field(None, ge=0, description="requests that failed (client or twin)")
    peak_replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS)
    gpu_hours: float | None = Field(None, gt=0, le=1e9)


class SloConfig(_Section):
    ttft_ms: float | None = Field(
        None, gt=0, le=MAX_LATENCY_MS, description="per-sample threshold for the 'time over SLO' shares"
    )
    itl_ms: float | None = Field(
        None, gt=0, le=MAX_LATENCY_MS, description="per-sample threshold for the 'time over SLO' shares"
    )
    gates: SloGates = Field(default_factory=SloGates)


class EnergyConfig(_Section):
    """Where GPU power comes from on a cluster: NVIDIA DCGM exporter series, matched to the
    Deployment's pods by label (dcgm-exporter's Kubernetes mapping adds `pod` and `namespace`;
    behind some ServiceMonitors they arrive as `exported_pod` / `exported_namespace`)."""

    power_metric: str = "DCGM_FI_DEV_POWER_USAGE"
    utilization_metric: str = "DCGM_FI_DEV_GPU_UTIL"
    pod_label: str = "pod"
    namespace_label: str = "namespace"

    @field_validator("power_metric", "utilization_metric", "pod_label", "namespace_label")
    @classmethod
    def _prometheus_name(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z_:][A-Za-z0-9_:]*\Z", v):
            raise ValueError(f"must be a Prometheus metric or label name (got {v!r})")
        return v


class CostConfig(_Section):
    price_per_gpu_hour: float | None = Field(None, gt=0, description="adds a cost line to the report")
    currency: str = "USD"


class SimulationConfig(_Section):
    seed: int = Field(42, ge=0)
    seeds: int | None = Field(
        None, ge=2, le=1000, description="run an ensemble of this many seeds (seed, seed+1, ...) in parallel"
    )
    profile: str = "llama-3.1-8b-h100"
    parameters: dict[str, Any] = Field(default_factory=dict, description="profile overrides")
    initial_replicas: int = Field(1, ge=1, le=MAX_REPLICAS)
    scrape_interval: Interval = Field(15.0, gt=0)


class OutputConfig(_Section):
    base_dir: Path = Path("experiment-data")
    include_pod_logs: bool = Field(
        True,
        description="save each load Job's pod logs in job-logs/ before deleting it, and its "
        "`vllm bench serve` result block in job-results.csv",
    )
    results_grace: Seconds = Field(
        120.0,
        ge=0,
        description="how long a Job still running at its planned end may go on to print its results "
        "(it is deleted as soon as it ends); per job: jobs[].results_grace",
    )
    include_events: bool = Field(True, description="accepted from the original configs; unused")


class ExperimentConfig(_Section):
    name: str
    description: str = ""
    namespace: str = "hpa-exp"
    deployment: str = "vllm"
    model_name: str = "meta-llama/Llama-3.1-8B"
    backend: Literal["kubernetes", "simulation"] = "simulation"
    mode: str | None = Field(None, description="accepted from the original configs; unused")
    hpa: HpaConfig = Field(default_factory=HpaConfig)
    autoscaler: AutoscalerConfig | None = Field(None, description="kind: hpa (as `hpa:`) or keda (a ScaledObject)")
    jobs: list[JobConfig] = Field(min_length=1)
    gap: Seconds = Field(30.0, ge=0, description="seconds between sequential jobs")
    cooldown: CooldownConfig = Field(default_factory=CooldownConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    prometheus: PrometheusConfig = Field(default_factory=PrometheusConfig)
    slo: SloConfig = Field(default_factory=SloConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    on_job_failure: Literal["abort", "continue"] = "abort"
    values: dict[str, Any] = Field(default_factory=dict, description="template values for every job")
    tags: dict[str, str] = Field(
        default_factory=dict, description="labels for telling runs apart (`hpa-exp run --tag key=value`)"
    )
    simulation: SimulationConfig = Field(default_factory=SimulationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    # Filled by load_config, not read from the file.
    source: Path | None = Field(None, exclude=True)
    hpa_manifest: dict[str, Any] | None = Field(None, exclude=True)  # for KEDA: the HPA KEDA creates
    scaled_object: dict[str, Any] | None = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _one_autoscaler_section(cls, data: Any) -> Any:
        if isinstance(data, dict) and "autoscaler" in data and "hpa" in data:
            raise ValueError("give 'autoscaler' or 'hpa' (its older spelling), not both")
        return data

    @model_validator(mode="after")
    def _hpa_from_autoscaler(self) -> ExperimentConfig:
        """`autoscaler: {kind: hpa}` is the `hpa` section; for KEDA the HPA is KEDA's, never applied by the run."""
        auto = self.autoscaler
        if auto is not None and auto.kind == "hpa":
            self.hpa = HpaConfig(**auto.model_dump(exclude={"kind"}))
        elif auto is not None:
            self.hpa = HpaConfig(enabled=auto.enabled, apply=False, remove_after=False)
        return self

    @property
    def autoscaler_kind(self) -> str:
        return self.autoscaler.kind if self.autoscaler is not None else "hpa"

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_alias(cls, v: Any) -> Any:
        """`sim` as on the command line (`--backend sim`), and `k8s`, as the backend's other names."""
        return BACKEND_ALIASES.get(v.lower(), v) if isinstance(v, str) else v

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for key in v:
                if not isinstance(key, str) or not TAG_KEY.match(key):
                    raise ValueError(f"tag key {key!r}: letters, digits, '.', '_', '-' or '/', at most 63")
            return {key: str(value) for key, value in v.items()}
        return v

    @field_validator("name")
    @classmethod
    def _run_name(cls, v: str) -> str:
        if not RUN_NAME.match(v) or len(v) > 80:
            raise ValueError("must be letters, digits, '.', '_' or '-' (it names the run folder)")
        return v

    @field_validator("namespace", "deployment")
    @classmethod
    def _k8s(cls, v: str) -> str:
        if not K8S_NAME.match(v) or len(v) > 63:
            raise ValueError("must be a Kubernetes name: lower-case letters, digits and '-'")
        return v

    @property
    def hpa_name(self) -> str | None:
        if self.hpa.name:
            return self.hpa.name
        return ((self.hpa_manifest or {}).get("metadata") or {}).get("name")

    @property
    def base_dir(self) -> Path:
        return self.output.base_dir

    def job_template_values(self, job: JobConfig, rate: float | None) -> dict[str, Any]:
        """Values a job template may use: defaults < config `values` < job `values` < computed."""
        values: dict[str, Any] = {
            "model": self.model_name,
            "namespace": self.namespace,
            "base_url": "http://vllm:8000",
            "max_concurrency": 512,
            "output_len": 1024,
            "seed": 12345,
            "image": "vllm/vllm-openai:latest",
            "dataset_url": (
                "https://huggingface.co/datasets/anon8231489123/ShareGPT_Vicuna_unfiltered/"
                "resolve/main/ShareGPT_V3_unfiltered_cleaned_split.json"
            ),
        }
        values.update(self.values)
        values.update(job.values)
        values["duration"] = job.duration
        if rate is not None:
            values["rate"] = rate
            values.setdefault("num_prompts", max(1, round(rate * job.duration)))
        return values

    def results_grace(self, job: JobConfig) -> float:
        """Seconds a Job still running at its planned end may take to print its results (0 without logs)."""
        if not self.output.include_pod_logs:
            return 0.0
        return self.output.results_grace if job.results_grace is None else job.results_grace

    def resolved_dict(self) -> dict[str, Any]:
        """The config with defaults filled in and paths made absolute, for run.json (credentials as ***)."""
        return redact_config(self.model_dump(mode="json", exclude={"source", "hpa_manifest", "scaled_object"}))


# --- loading ---------------------------------------------------------------------------


def load_config(path: str | Path, syntax: Literal["json", "yaml"] | None = None) -> ExperimentConfig:
    """Read, validate and resolve an experiment config. Raises ConfigError listing every problem."""
    path = Path(path)
    return config_from_data(read_config_data(path, syntax), path)


def read_config_data(path: Path, syntax: Literal["json", "yaml"] | None = None) -> Any:
    """The parsed, not yet validated content of a config file; `syntax` defaults to JSON for a
    `.json` file and YAML otherwise."""
    source = str(path)
    try:
        text = read_input_text(path)
    except InputFileError as exc:
        raise ConfigError(str(exc), source) from None
    if (syntax or ("json" if path.suffix.lower() == ".json" else "yaml")) == "json":
        try:
            return load_json(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}", source) from None
        except ValueError as exc:
            raise ConfigError(f"not valid JSON: {exc}", source) from None
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}", source) from None


def config_from_data(raw: Any, path: Path, source: str | None = None) -> ExperimentConfig:
    """Validate an already-parsed config (e.g. with a suite's overrides applied) as if read from
    `path`: relative paths resolve against its folder; `source` names it in messages."""
    source = source or str(path)
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping of keys (name, jobs, ...)", source)
    try:
        config = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError([describe_error(err, ExperimentConfig) for err in exc.errors()], source) from None
    _resolve_paths(config, path.resolve().parent)
    problems = _check_files(config)
    if problems:
        raise ConfigError(problems, source)
    config.source = path.resolve()
    return config


def _resolve_paths(config: ExperimentConfig, base: Path) -> None:
    @overload
    def resolve(p: Path) -> Path: ...
    @overload
    def resolve(p: Path | None) -> Path | None: ...
    def resolve(p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else (base / p).resolve())

    config.hpa.manifest = resolve(config.hpa.manifest)
    if config.autoscaler is not None:
        config.autoscaler.manifest = resolve(config.autoscaler.manifest)
    default_template = (base / DEFAULT_JOB_TEMPLATE).resolve()
    if not default_template.exists():  # a config outside the repo, or a dict: the template hpa-exp ships
        default_template = kit_dir("workloads") / SHIPPED_JOB_TEMPLATE_NAME
    for job in config.jobs:
        job.manifest = resolve(job.manifest) if job.manifest else default_template
    config.prometheus.token_file = resolve(config.prometheus.token_file)
    config.prometheus.ca_file = resolve(config.prometheus.ca_file)
    config.output.base_dir = resolve(config.output.base_dir)
    config.metrics.output_summary_json_path = resolve(config.metrics.output_summary_json_path)
    config.metrics.output_requests_csv_path = resolve(config.metrics.output_requests_csv_path)


# A job without `manifest` uses the template next to the config's folder (as in a checkout or an
# `hpa-exp init` folder), else the one hpa-exp ships.
DEFAULT_JOB_TEMPLATE = "../workloads/vllm-bench-serve.yaml"
SHIPPED_JOB_TEMPLATE_NAME = "vllm-bench-serve.yaml"


def _check_files(config: ExperimentConfig) -> list[str]:
    problems: list[str] = []
    seen: dict[str, int] = {}
    for i, job in enumerate(config.jobs):
        if job.name in seen:
            problems.append(f"jobs[{i}].name: '{job.name}' is already used by jobs[{seen[job.name]}]")
        seen.setdefault(job.name, i)
        problems += [f"jobs[{i}].manifest: {p}" for p in job_manifest_problems(config, job)]
    if config.autoscaler_kind == "keda":
        problems += _keda_problems(config)
    elif config.hpa.enabled and config.hpa.manifest is not None:
        section = "hpa" if config.autoscaler is None else "autoscaler"  # the key the file used
        try:
            config.hpa_manifest = load_hpa_manifest(config.hpa.manifest)
        except ManifestError as exc:
            problems.append(f"{section}.manifest: {exc}")
        else:
            problems += [f"{section}.manifest: {p}" for p in hpa_problems(config.hpa_manifest, config.deployment)]
            # what the API server checks in metrics and behavior (ranges, integers): NaN or 1e300 there
            # would otherwise surface only when the HPA is applied or simulated
            api_rules = validate_hpa_manifest(config.hpa_manifest)
            rules = [p for p in api_rules if p.startswith(("spec.metrics", "spec.behavior"))]
            problems += [f"{section}.manifest: {p}" for p in rules]
            problems += hpa_namespace_problems(config)
    elif config.hpa.enabled and not config.hpa.name:
        section = "hpa" if config.autoscaler is None else "autoscaler"
        problems.append(f"{section}: give 'manifest' (the HPA to apply or simulate) or at least 'name'")
    if config.prometheus.token_env and config.prometheus.token_file:
        problems.append("prometheus: give token_env or token_file, not both")
    return problems + _simulation_problems(config.simulation) + _load_value_problems(config)


def _load_value_problems(config: ExperimentConfig) -> list[str]:
    """Template values the load generator reads as numbers (the twin's and `vllm bench serve`'s)
    must be such numbers, so that a run cannot break when its Job starts."""
    problems = []
    for i, job in enumerate(config.jobs):
        for key, value in {**config.values, **job.values}.items():
            where = f"jobs[{i}].values.{key}" if key in job.values else f"values.{key}"
            problem = _load_value_problem(key, value)
            if problem and f"{where}: {problem}" not in problems:
                problems.append(f"{where}: {problem}")
    return problems


def _load_value_problem(key: str, value: Any) -> str | None:
    if key not in ("max_concurrency", "num_prompts", "output_len", "burstiness"):
        return None
    if key == "output_len" and value is None:
        return None  # the dataset's lengths
    if isinstance(value, bool):
        return f"must be a number (got {value!r})"
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return f"must be a number (got {value!r})"
    if key == "burstiness":
        return None if math.isfinite(number) and number > 0 else f"must be a finite number > 0 (got {value!r})"
    if key == "output_len" and number == -1:
        return None  # the dataset's lengths
    if not (math.isfinite(number) and number.is_integer() and 1 <= number <= 10**9):
        return f"must be a whole number from 1 to 1000000000 (got {value!r})"
    return None


def _keda_problems(config: ExperimentConfig) -> list[str]:
    """Load and check the ScaledObject; derive the HPA KEDA will create for it."""
    auto = config.autoscaler
    assert auto is not None
    if not auto.enabled:
        return []
    if auto.manifest is None:
        return ["autoscaler.manifest: is required for kind keda (the ScaledObject)"]
    try:
        doc = load_manifest(auto.manifest)
    except ManifestError as exc:
        return [f"autoscaler.manifest: {exc}"]
    problems = [f"autoscaler.manifest: {p}" for p in scaled_object_problems(doc, config.deployment)]
    if not problems:
        name = doc["metadata"]["name"]
        if auto.name and auto.name != name:
            problems.append(f"autoscaler.name: '{auto.name}' differs from the manifest's metadata.name '{name}'")
        config.scaled_object = doc
        config.hpa_manifest = keda_hpa_manifest(parse_scaled_object(doc))
        problems += hpa_namespace_problems(config)
    return problems


def _simulation_problems(simulation: SimulationConfig) -> list[str]:
    """The twin's profile with its overrides must make sense (e.g. the model must fit its GPUs)."""
    try:
        load_profile(simulation.profile, simulation.parameters)
    except ConfigError as exc:
        key = "simulation.parameters" if simulation.profile in PROFILES else "simulation.profile"
        return [f"{key}: {problem}" for problem in exc.problems]
    return []


# Where the run's namespace came from, for messages about a manifest that names another one.
NAMESPACE_KEY = "config key 'namespace'"


def job_manifest_problems(config: ExperimentConfig, job: JobConfig, origin: str = NAMESPACE_KEY) -> list[str]:
    """Check that the job's manifest exists and renders to a batch/v1 Job in the run's namespace."""
    assert job.manifest is not None
    try:
        doc = load_manifest(job.manifest)
        placeholders = template_placeholders(doc)
        if placeholders:
            if job.rate is None and "rate" in placeholders and "rate" not in job.values:
                return ["the template needs a request rate: set 'rate' on this job"]
            doc = render_template(doc, config.job_template_values(job, job.rate))
        check_job_manifest(doc, str(job.manifest))
    except ManifestError as exc:
        return [str(exc)]
    mismatch = namespace_mismatch(doc, config.namespace, origin)
    outside = job_template_problems(doc, config.namespace)  # what would reach outside the run (ownership.py)
    return [f"{job.manifest}: {problem}" for problem in ([mismatch] if mismatch else []) + outside]


def hpa_namespace_problems(config: ExperimentConfig, origin: str = NAMESPACE_KEY) -> list[str]:
    """The autoscaler's manifest (an HPA, or KEDA's ScaledObject) must not name another namespace
    than the run's."""
    if config.scaled_object and config.autoscaler is not None:
        manifest, key, path = config.scaled_object, "autoscaler.manifest", config.autoscaler.manifest
    elif config.hpa.enabled and config.hpa_manifest:
        key = "hpa.manifest" if config.autoscaler is None else "autoscaler.manifest"
        manifest, path = config.hpa_manifest, config.hpa.manifest
    else:
        return []
    mismatch = namespace_mismatch(manifest, config.namespace, origin)
    return [f"{key}: {path}: {mismatch}"] if mismatch else []


def namespace_problems(config: ExperimentConfig, origin: str) -> list[str]:
    """Every manifest of the config checked against the run's namespace (after an override)."""
    problems = hpa_namespace_problems(config, origin)
    for i, job in enumerate(config.jobs):
        problems += [f"jobs[{i}].manifest: {p}" for p in job_manifest_problems(config, job, origin)]
    return problems
