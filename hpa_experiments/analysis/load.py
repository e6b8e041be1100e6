"""Read a run directory (from any backend, or imported from the original system) into memory.

Only the files of the run-directory format are read (see `hpa_experiments.rundir`); nothing
here knows which backend produced the run.  Empty CSV cells become NaN, so "no value" stays
distinguishable from 0 all the way to the KPIs and plots.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpa_experiments.analysis.stream import MetricsDigest, NotStreamable, csv_chunks, digest_metrics
from hpa_experiments.errors import UsageError
from hpa_experiments.hpa_reasons import text_columns
from hpa_experiments.rundir import EVENT_COLUMNS, PHASE_COLUMNS, SUITE_ENTRY_FILE

DEFAULT_DATA_DIR = Path("experiment-data")
TEXT_COLUMNS = ("timestamp", "phase", *text_columns())
# From this size on metrics.csv is read in one streaming pass (stream.py), never whole; a file that
# pass cannot read in order is read in chunks into compact columns instead (_read_big_metrics).
BIG_METRICS_BYTES = 256 * 1024 * 1024
CHUNK_ROWS = 50_000


@dataclass
class Run:
    """One run directory, loaded: run.json as a dict, the three CSV files as frames."""

    path: Path
    info: dict[str, Any]
    metrics: pd.DataFrame
    phases: pd.DataFrame
    events: pd.DataFrame
    warnings: list[str] = field(default_factory=list)  # e.g. a cut last line that was skipped
    # A big metrics.csv read in one pass: `metrics` then holds only its key rows (stream.py), and the
    # sample statistics, energy and plot envelope come from here.
    digest: MetricsDigest | None = None

    @property
    def run_id(self) -> str:
        return str(self.info.get("id") or self.path.name)

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.path.name)

    @property
    def backend(self) -> str:
        return str(self.info.get("backend") or "unknown")

    @property
    def status(self) -> str:
        return str(self.info.get("status") or "unknown")

    @property
    def label(self) -> str:
        """Short human label used in titles and legends: the directory name and the backend."""
        return f"{self.path.name} ({self.backend})"

    @property
    def config(self) -> dict[str, Any]:
        config = self.info.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def slo(self) -> dict[str, float]:
        """SLO thresholds from the config (`slo.ttft_ms`, `slo.itl_ms`); only those set."""
        raw = self.config.get("slo")
        if not isinstance(raw, dict):
            return {}
        found: dict[str, float] = {}
        for key in ("ttft_ms", "itl_ms"):
            value = _as_float(raw.get(key))
            if value is not None:
                found[key] = value
        return found

    @property
    def tags(self) -> dict[str, str]:
        """The config's `tags` (with `hpa-exp run --tag`)."""
        raw = self.config.get("tags")
        return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    @property
    def overrides(self) -> dict[str, Any]:
        """The suite overrides this run was made with (suite-entry.json), or {} outside suites."""
        try:
            entry = json.loads((self.path / SUITE_ENTRY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        found = entry.get("overrides") if isinstance(entry, dict) else None
        return found if isinstance(found, dict) else {}

    @property
    def slo_gates(self) -> dict[str, Any]:
        """`slo.gates` of the config: the bounds `hpa-exp run --fail-on-slo` checks."""
        raw = self.config.get("slo")
        gates = raw.get("gates") if isinstance(raw, dict) else None
        return gates if isinstance(gates, dict) else {}

    @property
    def warm_up_s(self) -> float:
        """`metrics.warm_up_duration_s` of the config: samples before it stay out of the statistics."""
        metrics = self.config.get("metrics")
        value = _as_float(metrics.get("warm_up_duration_s")) if isinstance(metrics, dict) else None
        return value if value is not None and value > 0 else 0.0

    @property
    def interval_s(self) -> float | None:
        """The sampling interval: run.json's `interval_s`, else the median spacing of samples."""
        declared = _as_float(self.info.get("interval_s"))
        if declared is not None and declared > 0:
            return declared
        if self.digest is not None:
            return self.digest.interval_s
        elapsed = self.metrics["elapsed_s"].dropna()
        if len(elapsed) < 2:
            return None
        spacing = float(elapsed.diff().median())
        return spacing if spacing > 0 else None

    @property
    def start_time(self) -> datetime | None:
        return start_time_of(self.info)

    @property
    def elapsed(self) -> pd.Series:
        return self.metrics["elapsed_s"]

    def plot_view(self) -> Run:
        """The run as its figures draw it: a streamed run's envelope rows (min / max / last per time
        bucket) stand for its samples, the bucket width for the interval; other runs as they are."""
        if self.digest is None:
            return self
        info = {**self.info, "interval_s": self.digest.bucket_s}
        return replace(self, info=info, metrics=self.digest.envelope, digest=None)

    def series(self, column: str) -> pd.Series | None:
        """A numeric column (NaN = no value), or None when the column is absent or entirely empty."""
        if column not in self.metrics.columns:
            return None
        values = self.metrics[column]
        if values.notna().sum() == 0:
            return None
        return values


def start_time_of(info: dict[str, Any]) -> datetime | None:
    """Start time for ordering runs: UTC when known, else the recorded local time."""
    for key in ("start_utc", "start_local"):
        text = info.get(key)
        if isinstance(text, str) and text:
            parsed = parse_iso(text)
            if parsed is not None:
                return parsed
    return None


def parse_iso(text: str) -> datetime | None:
    """'2026-11-23T04:16:55.123Z' or a naive local ISO time -> naive datetime (for ordering only)."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=None)


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def read_run_json(directory: Path) -> dict[str, Any]:
    path = directory / "run.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        hint = ""
        if (directory / "metrics.csv").exists() and (directory / "scaling-events.log").exists():
            hint = f" (it looks like a run of the original system: try `hpa-exp import-legacy {directory}`)"
        raise UsageError(f"{directory}: not a run directory, run.json is missing{hint}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: cannot read run.json: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: run.json must hold a JSON object")
    return data


def complete_size(path: Path) -> int:
    """Bytes up to the file's last newline: a line after it was cut (a crash mid-write)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        end = size
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            block = fh.read(end - start)
            found = block.rfind(b"\n")
            if found >= 0:
                return start + found + 1
            end = start
    return 0


class _Head(io.RawIOBase):
    """The first `limit` bytes of a file, as a binary stream (read without copying the file)."""

    def __init__(self, path: Path, limit: int):
        self._fh = path.open("rb")
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._left)
        if count <= 0:
            return 0
        got = self._fh.readinto(memoryview(buffer)[:count]) or 0
        self._left -= got
        return got

    def close(self) -> None:
        self._fh.close()
        super().close()


def _cut_line(path: Path, size: int, complete: int) -> str:
    return f"{path}: partial last line ignored ({size - complete} bytes without a newline, a write cut short)"


def complete_lines(path: Path, warnings: list[str]) -> io.BufferedReader | Path:
    """The file, or only its complete lines when the last one was cut (said in `warnings`)."""
    size, complete = path.stat().st_size, complete_size(path)
    if complete == size:
        return path
    warnings.append(_cut_line(path, size, complete))
    return io.BufferedReader(_Head(path, complete))


def _read_csv(
    path: Path, columns: list[str], text_columns: tuple[str, ...], warnings: list[str] | None = None
) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame({c: _empty_column(c, text_columns) for c in columns})
    source = complete_lines(path, warnings if warnings is not None else [])
    try:
        frame = pd.read_csv(
            source,
            dtype={c: "string" for c in text_columns},
            keep_default_na=False,
            na_values=[""],
            on_bad_lines="skip",
        )
    except pd.errors.EmptyDataError:  # only a cut header
        frame = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot parse CSV: {exc}") from None
    finally:
        if not isinstance(source, Path):
            source.close()
    for column in columns:
        if column not in frame.columns:
            frame[column] = _empty_column(column, text_columns)
    return frame


def _empty_column(column: str, text_columns: tuple[str, ...]) -> pd.Series:
    return pd.Series(dtype="object" if column in text_columns else "float64")


def _numeric(frame: pd.DataFrame, text_columns: tuple[str, ...]) -> pd.DataFrame:
    for column in frame.columns:
        if column not in text_columns and not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def load_run(path: Path | str) -> Run:
    """Load a run directory; raises UsageError with the file name when it is not one."""
    directory = Path(path)
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such run directory")
    info = read_run_json(directory)
    metrics_path = directory / "metrics.csv"
    if not metrics_path.exists():
        raise UsageError(f"{metrics_path}: missing (the run recorded no samples)")
    later: list[str] = []  # phases.csv's and events.csv's warnings, said after metrics.csv's
    phases = _numeric(
        _read_csv(directory / "phases.csv", PHASE_COLUMNS, ("job", "resource_name", "outcome"), later),
        ("job", "resource_name", "outcome"),
    )
    events = _numeric(
        _read_csv(directory / "events.csv", EVENT_COLUMNS, ("time", "kind", "detail"), later),
        ("time", "kind", "detail"),
    )
    run = Run(path=directory, info=info, metrics=pd.DataFrame(), phases=phases, events=events)
    warnings = run.warnings
    if metrics_path.stat().st_size >= BIG_METRICS_BYTES:
        try:
            _streamed(run, metrics_path)
            warnings.extend(later)
            return run
        except NotStreamable as exc:
            del warnings[:]  # the cut line is said again by the compact read
            warnings.append(f"{metrics_path}: read whole, compactly, not streamed ({exc})")
            metrics = _read_big_metrics(metrics_path, warnings)
    else:
        metrics = _numeric(_read_csv(metrics_path, ["timestamp", "elapsed_s"], TEXT_COLUMNS, warnings), TEXT_COLUMNS)
    if "elapsed_s" not in metrics.columns or metrics["elapsed_s"].isna().all():
        metrics["elapsed_s"] = _elapsed_from_timestamps(metrics["timestamp"], info)
    elapsed = metrics["elapsed_s"]
    if elapsed.isna().any() or not elapsed.is_monotonic_increasing:  # (a copy of the whole frame)
        metrics = metrics.dropna(subset=["elapsed_s"]).sort_values("elapsed_s", kind="stable")
        metrics = metrics.reset_index(drop=True)
    run.metrics = metrics
    warnings.extend(later)
    return run


def _streamed(run: Run, path: Path) -> None:
    """`run` with its metrics.csv digested in one pass (stream.py): the windows the KPIs need are
    known before it, from phases.csv and the warm-up."""
    from hpa_experiments.analysis.kpis import PERCENTILES, phase_windows  # kpis imports this module

    header = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    windows = [(w.start_s, w.end_s) for w in phase_windows(run)]
    load_end = max((end for _, end in windows), default=None)
    phase_times = run.phases[["planned_start_s", "planned_end_s", "actual_start_s", "actual_end_s"]].to_numpy(float)
    boundaries = [float(v) for v in phase_times.ravel() if not math.isnan(v)] + [run.warm_up_s]
    size, complete = path.stat().st_size, complete_size(path)
    if complete < size:
        run.warnings.append(_cut_line(path, size, complete))
    try:
        run.digest = digest_metrics(
            lambda: io.BufferedReader(_Head(path, complete)),  # both passes read the same bytes
            columns=header,
            text_columns=TEXT_COLUMNS,
            boundaries=boundaries,
            windows=[(-math.inf, math.inf), *windows, *([(load_end, math.inf)] if load_end is not None else [])],
            warm_up_s=run.warm_up_s,
            slo=run.slo,
            interval_s=declared if (declared := _as_float(run.info.get("interval_s"))) and declared > 0 else None,
            span_s=_span(path, header),
            percents=PERCENTILES,
            chunk_rows=CHUNK_ROWS,
        )
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot parse CSV: {exc}") from None
    run.metrics = run.digest.key_rows
    run.warnings.append(
        f"{path}: {path.stat().st_size / 1024**2:,.0f} MiB, read in one pass: statistics from all "
        f"{run.digest.rows:,} samples, scale events from {len(run.metrics):,} key rows, figures from an envelope"
    )


def _span(path: Path, header: list[str]) -> float:
    """elapsed_s of the last complete line minus that of the first (the figures' time buckets)."""
    if "elapsed_s" not in header:
        return 0.0
    column = header.index("elapsed_s")
    first = pd.read_csv(path, nrows=1, usecols=["elapsed_s"])["elapsed_s"]
    end = complete_size(path)
    with path.open("rb") as fh:
        fh.seek(max(0, end - 65536))
        lines = fh.read(end - max(0, end - 65536)).rstrip(b"\n").split(b"\n")
    try:
        last = float(lines[-1].split(b",")[column])
        span = last - float(first.iloc[0]) if len(first) else 0.0
        return span if math.isfinite(span) and span > 0 else 0.0
    except (ValueError, IndexError):  # a quoted comma, a text cell: the buckets are only a guess then
        return 0.0


def _read_big_metrics(path: Path, warnings: list[str]) -> pd.DataFrame:
    """A large metrics.csv in chunks of CHUNK_ROWS into preallocated columns, so that memory stays
    near the size of the result: text cells as categories, values as float32 (7 significant
    digits; the file has at most 6 decimals) except the `*_s` times (float64), and no `timestamp`
    when `elapsed_s` is there (it is t0 + elapsed_s).  Said in `warnings`."""
    header = [str(c) for c in pd.read_csv(path, nrows=0).columns]
    has_elapsed = "elapsed_s" in header
    columns = [c for c in header if not (has_elapsed and c == "timestamp")]
    size, limit = path.stat().st_size, complete_size(path)
    with path.open("rb") as fh:  # an upper bound of the rows: the newlines
        lines = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 24), b"")) if limit else 0
    rows = max(lines - 1, 0)
    values: dict[str, np.ndarray] = {}  # one array per column: the frame is built on them, not copied
    categories: dict[str, dict[str, int]] = {}  # text column -> value -> code
    for column in columns:
        if column in TEXT_COLUMNS:
            values[column], categories[column] = np.full(rows, -1, dtype=np.int16), {}
        else:
            values[column] = np.full(rows, np.nan, dtype=np.float64 if column.endswith("_s") else np.float32)
    source = complete_lines(path, warnings)
    filled = 0
    try:
        for chunk in csv_chunks(source, columns, categories, CHUNK_ROWS):
            end = filled + len(chunk)
            for column, target in values.items():
                known = categories.get(column)
                if known is None:
                    target[filled:end] = _numbers(chunk[column], target.dtype.type)
                    continue
                for value in chunk[column].dropna().unique():
                    known.setdefault(str(value), len(known))
                if len(known) > np.iinfo(target.dtype).max:  # more distinct texts than int16 holds
                    target = values[column] = target.astype(np.int32)
                target[filled:end] = chunk[column].map(known).fillna(-1).to_numpy(target.dtype)
            filled = end
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot parse CSV: {exc}") from None
    finally:
        if not isinstance(source, Path):
            source.close()
    data: dict[str, Any] = {}
    for column, array in values.items():
        known = categories.get(column)
        data[column] = (
            array[:filled]
            if known is None
            else pd.Categorical.from_codes(array[:filled], dtype=pd.CategoricalDtype(list(known)))
        )
    frame = pd.DataFrame(data, copy=False)  # not consolidated: no second copy of the columns
    warnings.append(
        f"{path}: {size / 1024**2:,.0f} MiB, read compactly: values as float32 (7 significant digits)"
        + (", timestamp not loaded (t0 + elapsed_s)" if has_elapsed and "timestamp" in header else "")
    )
    return frame


def _numbers(values: pd.Series, dtype: Any) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype, na_value=np.nan)


def _elapsed_from_timestamps(timestamps: pd.Series, info: dict[str, Any]) -> pd.Series:
    """Seconds since t0 (run.json `t0_unix`), else since the first sample."""
    parsed = pd.to_datetime(timestamps, errors="coerce", utc=True)
    seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    t0 = _as_float(info.get("t0_unix"))
    origin = t0 if t0 is not None else seconds.min()
    return seconds - origin


def resolve_run_path(ref: str | Path, data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    """A run given as a path, or as a run name (directory name) under the data dir."""
    candidate = Path(ref)
    if candidate.is_dir():
        return candidate
    under_data = data_dir / str(ref)
    if under_data.is_dir():
        return under_data
    raise UsageError(f"run {ref!r} not found (neither a directory nor a run under {data_dir})")


def run_directories(data_dir: Path) -> list[Path]:
    """Subdirectories of the data dir that hold a run.json (unsorted)."""
    if not data_dir.is_dir():
        return []
    return [p for p in data_dir.iterdir() if p.is_dir() and (p / "run.json").is_file()]


def runs_newest_first(data_dir: Path = DEFAULT_DATA_DIR) -> list[Path]:
    """Run directories ordered by the start time in run.json (not by name), newest first."""
    candidates: list[tuple[datetime, Path]] = []
    for directory in run_directories(data_dir):
        try:
            info = read_run_json(directory)
        except UsageError:
            continue
        candidates.append((start_time_of(info) or datetime.min, directory))
    return [directory for _, directory in sorted(candidates, key=lambda item: item[0], reverse=True)]


def newest_run_path(data_dir: Path = DEFAULT_DATA_DIR) -> Path:
    newest = runs_newest_first(data_dir)
    if not newest:
        raise UsageError(f"no runs found under {data_dir}")
    return newest[0]
