"""Cold starts: requests that arrived while no vLLM pod was Ready (scale to zero), from requests.csv.

Definitions (server side, on the twin's clock; summary.json "cold_starts"):
- A request *arrived at zero* when `gateway_wait_ms` > 0 (it waited at the gateway for a Ready
  pod) or its outcome is `failed_no_replica` (the gateway refused it).
- An *episode* is one stretch without a Ready pod: the requests that arrived at zero with no
  request reaching a pod in between.  (A request reaches a pod at arrival + gateway wait.)
- `cold_start_s` of an episode: from the arrival of its first request to that request's first
  token (its TTFT) - the brief's KPI; None when that request got no token (refused, or aborted).
- `first_token_after_s`: from the same arrival to the first token of any request that arrived
  since - what a user saw as the service's unavailability, also with `gateway_at_zero: fail`.
- `zero_replicas_s`: time with `replicas` = 0 in metrics.csv (the sample step-function convention).
All requests count, warm-up included: like scale-up times, cold starts describe how the
autoscaler reacted.  The file is read in chunks; only the requests that arrived at zero are kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hpa_experiments.analysis.load import Run
from hpa_experiments.analysis.requests import CHUNK_ROWS, DECIMALS, requests_path
from hpa_experiments.analysis.samples import SampleColumns
from hpa_experiments.errors import UsageError

FAILED_NO_REPLICA = "failed_no_replica"
_COLUMNS = ["arrival_s", "ttft_ms", "outcome", "replica", "gateway_wait_ms"]


def _chunks(path: Any) -> Any:
    return pd.read_csv(
        path,
        usecols=_COLUMNS,
        dtype={
            "arrival_s": "float64",
            "ttft_ms": "float64",
            "gateway_wait_ms": "float64",
            "outcome": "str",
            "replica": "str",
        },
        chunksize=CHUNK_ROWS,
        keep_default_na=False,
        na_values={"ttft_ms": [""], "gateway_wait_ms": [""], "arrival_s": [""]},
    )


def _at_zero(chunk: pd.DataFrame) -> pd.Series:
    return (chunk["gateway_wait_ms"].fillna(0) > 0) | (chunk["outcome"] == FAILED_NO_REPLICA)


def cold_start_kpis(run: Run) -> dict[str, Any] | None:
    """The "cold_starts" part of summary.json; None without requests.csv or its gateway_wait_ms column."""
    path = requests_path(run)
    if path is None:
        return None
    header = pd.read_csv(path, nrows=0).columns
    if "gateway_wait_ms" not in header:
        return None  # written before the twin recorded gateway waits
    try:
        held = pd.concat([chunk[_at_zero(chunk)] for chunk in _chunks(path)], ignore_index=True)
        held = held.sort_values("arrival_s", kind="stable", ignore_index=True)
        arrivals = held["arrival_s"].to_numpy()
        pod_between = np.zeros(max(len(arrivals) - 1, 0), dtype=bool)  # a request reached a pod in between
        first_token = np.full(len(arrivals), np.inf)  # earliest first token of a request arriving since
        if len(arrivals):
            for chunk in _chunks(path):
                _scan(chunk, arrivals, pod_between, first_token)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot read: {exc}") from None
    episodes = _episodes(held, pod_between, first_token)
    values = [e["cold_start_s"] for e in episodes if e["cold_start_s"] is not None]
    return {
        "source": "requests.csv",
        "episodes": len(episodes),
        "requests_at_zero": len(held),
        "failed_no_replica": int((held["outcome"] == FAILED_NO_REPLICA).sum()),
        "cold_start_s": {
            "count": len(values),
            "mean": round(float(np.mean(values)), DECIMALS) if values else None,
            "min": round(min(values), DECIMALS) if values else None,
            "max": round(max(values), DECIMALS) if values else None,
        },
        "zero_replicas_s": _zero_replicas_s(run),
        "list": episodes,
    }


def _scan(chunk: pd.DataFrame, arrivals: np.ndarray, pod_between: np.ndarray, first_token: np.ndarray) -> None:
    """Fold one chunk into the per-held-request facts (see cold_start_kpis)."""
    reached = chunk["replica"].fillna("") != ""
    reach_t = (chunk["arrival_s"] + chunk["gateway_wait_ms"].fillna(0) / 1000.0)[reached].to_numpy()
    if len(pod_between) and len(reach_t):
        # reach time strictly after held request i and at or before held request i+1's arrival
        after = np.searchsorted(arrivals, reach_t, side="left") - 1  # index of the last arrival < reach
        valid = (after >= 0) & (after < len(pod_between))
        hit = after[valid]
        hit = hit[reach_t[valid] <= arrivals[hit + 1]]
        pod_between[hit] = True
    tokens = chunk[["arrival_s", "ttft_ms"]].dropna()
    if len(tokens):
        order = np.argsort(tokens["arrival_s"].to_numpy(), kind="stable")
        arr = tokens["arrival_s"].to_numpy()[order]
        tok = (tokens["arrival_s"] + tokens["ttft_ms"] / 1000.0).to_numpy()[order]
        suffix_min = np.minimum.accumulate(tok[::-1])[::-1]  # min first-token time over arrivals >= arr[k]
        start = np.searchsorted(arr, arrivals, side="left")
        inside = start < len(arr)
        np.minimum.at(first_token, np.flatnonzero(inside), suffix_min[start[inside]])


def _episodes(held: pd.DataFrame, pod_between: np.ndarray, first_token: np.ndarray) -> list[dict[str, Any]]:
    if held.empty:
        return []
    starts = np.concatenate(([0], np.flatnonzero(pod_between) + 1))
    ends = np.concatenate((starts[1:], [len(held)]))
    episodes = []
    for begin, end in zip(starts, ends, strict=True):
        first = held.iloc[begin]
        ttft = first["ttft_ms"]
        after = first_token[begin] - float(first["arrival_s"])
        episodes.append(
            {
                "start_s": round(float(first["arrival_s"]), DECIMALS),
                "requests": int(end - begin),
                "failed_no_replica": int((held["outcome"].iloc[begin:end] == FAILED_NO_REPLICA).sum()),
                "cold_start_s": None if pd.isna(ttft) else round(float(ttft) / 1000.0, DECIMALS),
                "first_token_after_s": round(float(after), DECIMALS) if np.isfinite(after) else None,
            }
        )
    return episodes


def _zero_replicas_s(run: Run) -> float | None:
    cols = SampleColumns(run)
    replicas = cols.get("replicas")
    known = ~np.isnan(replicas)
    if not known.any():
        return None
    return float(cols.weights[known & (replicas == 0)].sum())
