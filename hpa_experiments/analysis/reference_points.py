"""The headline's scaling sentences, each naming the moment it is measured from.

"first scale-up 90 s after the load rose at 120 s" says more than "first scale-up after 90 s":
the reader sees which load increase it was.  A run that did not complete says what it could
not measure instead of reporting a missing number as a result.
"""

from __future__ import annotations

from typing import Any

from hpa_experiments.rundir import RunStatus


def _s(value: float) -> str:
    return f"{value:.0f} s"


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def scale_up_sentence(summary: dict[str, Any]) -> str:
    increases = summary["load_increases"]
    if not increases:
        return "no load increase recorded"
    reacted = next((row for row in increases if row["time_to_first_scale_up_s"] is not None), None)
    if reacted is None:
        if len(increases) == 1:
            return f"no scale-up after the load rose at {_s(increases[0]['at_s'])}"
        times = ", ".join(f"{row['at_s']:.0f}" for row in increases)
        return f"no scale-up after any of the {len(increases)} load increases (at {times} s)"
    rates = ""
    if reacted["offered_rps_after"] is not None:
        rates = f" ({_n(reacted['offered_rps_before'])} → {_n(reacted['offered_rps_after'])} req/s)"
    return (
        f"first scale-up {_s(reacted['time_to_first_scale_up_s'])} after the load rose at {_s(reacted['at_s'])}{rates}"
    )


def scale_down_sentence(summary: dict[str, Any], interrupted: bool) -> str | None:
    down = summary["kpis"]["scale_down"]
    end, minimum = down["load_end_s"], down["to_replicas"]
    if end is None or minimum is None:
        return None if interrupted else "scale-down: no data (no job end or replica count recorded)"
    if summary["kpis"]["replicas"]["peak"] == minimum:
        return f"replicas stayed at {_n(minimum)} the whole run"
    since = down.get("at_minimum_since_s")  # summaries written before it have none
    if down["completed_after_s"] is None:
        if interrupted:
            return None
        return f"did not return to the minimum ({_n(minimum)}) after the load ended at {_s(end)}"
    if since is None:
        since = end + down["completed_after_s"]
    if since < end:
        return f"back at the minimum ({_n(minimum)}) {_s(end - since)} before the load ended at {_s(end)}"
    return f"back at the minimum ({_n(minimum)}) {_s(since - end)} after the load ended at {_s(end)}"


def not_measured(summary: dict[str, Any]) -> list[str]:
    """What an interrupted or failed run could not measure."""
    missing = []
    increases = summary["load_increases"]
    if increases and increases[-1]["time_to_first_scale_up_s"] is None:
        missing.append(f"scale-up after the load rose at {_s(increases[-1]['at_s'])}")
    if summary["kpis"]["scale_down"]["completed_after_s"] is None:
        missing.append("scale-down")
    return missing


def headline_sentences(summary: dict[str, Any]) -> list[str]:
    """One line per fact; an unfinished run's first line says where it stopped and what is missing."""
    status = summary["run"]["status"]
    interrupted = status != RunStatus.COMPLETED
    lines = []
    if interrupted:
        duration = summary["kpis"]["duration_s"]
        where = f"{status} at {_s(duration)}" if duration is not None else status
        missing = not_measured(summary)
        lines.append(f"{where}: {' and '.join(missing)} not measured" if missing else where)
    lines.append(scale_up_sentence(summary))
    down = scale_down_sentence(summary, interrupted)
    if down:
        lines.append(down)
    return lines
