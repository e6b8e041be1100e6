"""`hpa-exp notebook --execute`: run a notebook headless on runs and save it as a static HTML page.

The kernel gets the run folders through the same environment variables an interactive
`hpa-exp notebook` sets, so the page shows exactly what a person would see in Jupyter.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from hpa_experiments.errors import HpaExpError, UsageError

CELL_TIMEOUT_S = 600


class NotebookFailed(HpaExpError):
    """A cell of the notebook raised: the page is not written."""


def execute_to_html(notebook: Path, env: Mapping[str, str], output: Path) -> Path:
    """Execute `notebook` with `env` added to the kernel's environment; write the HTML to `output`."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
        from nbconvert import HTMLExporter
    except ImportError:
        raise UsageError(
            "executing notebooks needs nbclient and nbconvert: pip install 'hpa-experiments[notebooks]'"
        ) from None
    document = nbformat.read(notebook, as_version=4)
    previous = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # the kernel is a child process: it inherits this environment
    try:
        client = NotebookClient(
            document,
            timeout=CELL_TIMEOUT_S,
            kernel_name="python3",
            resources={"metadata": {"path": str(notebook.parent)}},
        )
        client.execute()
    except CellExecutionError as exc:
        raise NotebookFailed(f"{notebook.name}: a cell failed, no page written:\n{str(exc).strip()[-2000:]}") from None
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    body, _ = HTMLExporter().from_notebook_node(document)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(body, encoding="utf-8")
    return output
