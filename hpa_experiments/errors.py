"""Errors that reach the user as one clear message and a documented exit code."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_PREFLIGHT = 3
EXIT_SLO_MISSED = 4  # completed, but a gate of `slo.gates` was missed (run --fail-on-slo)
EXIT_INTERRUPTED = 130


class HpaExpError(Exception):
    """Base class: carries the exit code the command line returns for it."""

    exit_code = EXIT_FAILED


class ConfigError(HpaExpError):
    """The experiment config (or a file it names) is invalid. Nothing was applied."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[str] | str, source: str | None = None, kind: str = "experiment config"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        self.kind = kind  # what the file is, for the message ("search space" for tune's)
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.source}: invalid {self.kind}" if self.source else "invalid input"
        if len(self.problems) == 1:
            return f"{head}: {self.problems[0]}"
        return head + "\n" + "\n".join(f"  - {p}" for p in self.problems)


class UsageError(HpaExpError):
    """A wrong command-line argument or a missing file named on the command line."""

    exit_code = EXIT_INVALID


class PreflightError(HpaExpError):
    """The cluster, HPA, Deployment or Prometheus is not reachable or not as expected."""

    exit_code = EXIT_PREFLIGHT

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("preflight failed:\n" + "\n".join(f"  - {p}" for p in self.problems))


class BackendError(HpaExpError):
    """The backend broke during a run (API refused, permission denied, ...)."""

    exit_code = EXIT_FAILED


class TransientBackendError(BackendError):
    """A failure worth retrying (429, 5xx, connection reset, timeout)."""
