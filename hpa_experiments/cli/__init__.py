"""The `hpa-exp` command line: one typer app, commands registered from small modules.

Each module in this package exposes `register(app)`; the command logic itself lives in
the library modules (runner, analysis, ...), so the CLI stays thin.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import TYPE_CHECKING

import typer

from hpa_experiments import __version__
from hpa_experiments.errors import EXIT_INTERRUPTED, EXIT_INVALID, HpaExpError
from hpa_experiments.signals import Interrupted

if TYPE_CHECKING:  # the typer mypy checks against vendors click
    from typer._click.exceptions import ClickException

# Modules that add commands; each has `register(app: typer.Typer) -> None`.
COMMAND_MODULES = [
    "hpa_experiments.cli.init",
    "hpa_experiments.cli.config_cmds",
    "hpa_experiments.cli.cluster",
    "hpa_experiments.cli.run",
    "hpa_experiments.cli.analysis",
    "hpa_experiments.cli.cleanup",
    "hpa_experiments.cli.suite",
    "hpa_experiments.cli.tune",
    "hpa_experiments.cli.menu",
]

app = typer.Typer(
    name="hpa-exp",
    help=(
        "Reproducible HPA load experiments for LLM inference (vLLM) on Kubernetes, "
        "or on the built-in digital twin (no cluster needed).\n\n"
        "Start with:  hpa-exp run experiment-configs/high-load-hpa.yaml --backend sim"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hpa-exp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Reproducible HPA load experiments for LLM inference on Kubernetes."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: errors become one message and an exit code, never a traceback."""
    try:
        code = app(args=argv, standalone_mode=False)
    except HpaExpError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Interrupted as exc:  # SIGINT/SIGTERM where stopping at once is safe; says where
        typer.echo(str(exc), err=True)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except _click_usage_error() as exc:
        exc.show()
        sys.exit(EXIT_INVALID)
    except Exception as exc:  # last resort: a bug, still no traceback unless asked for
        if os.environ.get("HPA_EXP_DEBUG"):
            raise
        typer.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "(set HPA_EXP_DEBUG=1 to see the traceback, and please report it)",
            err=True,
        )
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def _click_usage_error() -> type[ClickException]:
    try:
        import click
    except ModuleNotFoundError:  # recent typer vendors click as typer._click
        from typer import _click as click

    return click.ClickException
