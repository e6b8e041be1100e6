"""Experiment suites: several experiments (configs x repeats, with overrides) run one after another.

```yaml
name: rate-sweep
backend: sim                 # optional: else each config's own backend
output_dir: ../experiment-data/suites   # the suite's folder is <output_dir>/<name>
settle: {timeout: 10m, poll: 10s}       # Kubernetes: wait for replicas at the HPA minimum before a run
max_retries: 2               # a failed run is tried again up to this many times ...
retry_backoff: 30s           # ... after 30 s, 60 s, ... (doubling)
entries:
  - config: ../high-load-hpa.yaml
    repeats: 2
    overrides: {"jobs[0].rate": 15, "simulation.seed": 3}
```

Every config (with its overrides) is validated before anything runs.  The suite's folder holds
the run directories, `suite-progress.json` (each finished run: entry, repeat, run dir, status),
`failures.csv` (time, run, reason of every failed attempt) and `comparison/`.  Rerunning the
same suite skips the runs recorded as completed; a changed config or override runs again.
On the simulation, repeat r uses seed + r - 1 (identical seeds would give identical runs).

Modules: `config` (the suite file, overrides, loading and validating every run), `progress`
(suite-progress.json and failures.csv), `runner` (running the runs with retries, the comparison).
"""
