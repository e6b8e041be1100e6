"""The comparison figure: one legend naming every run (with its tags), inside the saved image."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg

from hpa_experiments.analysis.load import load_run
from hpa_experiments.analysis.plots import compare_figure
from tests.support.analysis_runs import HIGH_LOAD, MODERATE, imported_reference_run


def test_the_legend_names_each_run_with_its_tags_and_fits_in_the_figure(tmp_path: Path) -> None:
    data = tmp_path / "experiment-data"
    first = imported_reference_run(HIGH_LOAD, data)
    second = imported_reference_run(MODERATE, data)
    info = json.loads((second / "run.json").read_text())
    info["config"]["tags"] = {"variant": "a-rather-long-tag-value-that-used-to-be-clipped"}
    (second / "run.json").write_text(json.dumps(info))
    runs = [load_run(first), load_run(second)]

    fig = compare_figure(runs)
    (legend,) = fig.legends
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == [runs[0].label, f"{runs[1].label} [variant=a-rather-long-tag-value-that-used-to-be-clipped]"]
    renderer = FigureCanvasAgg(fig).get_renderer()
    box, canvas = legend.get_window_extent(renderer), fig.bbox
    assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0 and box.y1 <= canvas.y1
    assert all(not ax.get_legend() for ax in fig.axes), "no per-panel legends to clip at the right edge"
