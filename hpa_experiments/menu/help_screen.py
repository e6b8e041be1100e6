"""The help screen: what each screen does, the keys, and the equivalent commands."""

from __future__ import annotations

from rich.text import Text

from hpa_experiments.menu.context import MenuContext
from hpa_experiments.menu.ui import notice

HELP = """\
hpa-exp runs HPA load experiments against vLLM on Kubernetes, or on the built-in
digital twin (the simulation backend, no cluster needed).

Keys work without Enter.  Everywhere:  q quit · b back · ↑↓/space scroll.
Typed answers take Enter; an empty answer keeps the value shown in [brackets].

Home     1-9 runs that config; r run (also a typed path); e runs; c configs.
Run      the plan (timeline, peak load, total time, warnings), then the
         backend: s simulation, k kubernetes (the current kubeconfig context,
         after the preflight checks), then confirm.  Simulations have a pace
         (p): watchable, slow or full speed.
         While it runs: Ctrl-C or q asks "Stop the experiment?"; yes deletes
         the Jobs and keeps the partial run.
Runs     newest first with status and headline KPIs; open one for its
         summary, f plots and HTML report, n notebook, c compare.
Configs  validates every config; n creates a new one from a shipped config
         by answering questions (name, rates, durations, delays, cooldown).

The same without the menu:
  hpa-exp run CONFIG --backend sim     hpa-exp validate CONFIG...
  hpa-exp plan CONFIG                  hpa-exp runs
  hpa-exp report RUN                   hpa-exp compare RUN_A RUN_B
  hpa-exp notebook RUN                 hpa-exp --help
"""


def show_help(ctx: MenuContext) -> None:
    notice(ctx.console, "Help", Text(HELP))
