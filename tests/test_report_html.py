"""`report` and `compare` on two imported reference runs and one simulated run; the HTML files
are rendered in headless Chromium (Debian package `chromium`) and every figure must load."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hpa_experiments.cli import main
from tests.support.analysis_runs import HIGH_LOAD, MODERATE, imported_reference_run, simulated_run
from tests.support.tools import missing

pytestmark = pytest.mark.slow  # a simulated run, three reports, a comparison and Chromium
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Appended to a copy of the page: marks <body> once every image has decoded with a real size.
IMAGE_PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
  document.body.setAttribute('data-images-loaded', loaded.length + '/' + images.length);
});
</script>"""


def cli(*args: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 0


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    data = tmp_path_factory.mktemp("html") / "experiment-data"
    runs = [imported_reference_run(HIGH_LOAD, data), imported_reference_run(MODERATE, data), simulated_run(data)]
    for run in runs:
        cli("report", run.name, "--data-dir", str(data))
    compare_dir = data.parent / "comparison"
    cli("compare", *[str(r) for r in runs], "--output", str(compare_dir))
    return {"high": runs[0], "moderate": runs[1], "sim": runs[2], "compare": compare_dir}


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        missing("chromium is not installed (apt-get install -y chromium)")


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--virtual-time-budget=10000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def images_loaded(page: Path, tmp_path: Path) -> tuple[int, int]:
    probe = tmp_path / f"probe-{page.parent.name}.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", IMAGE_PROBE + "</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", probe.as_uri()).stdout
    match = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert match, "the page did not finish loading in Chromium"
    return int(match[1]), int(match[2])


def assert_self_contained(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in text and "https://" not in text


@pytest.mark.parametrize("kind", ["high", "moderate", "sim"])
def test_report_files(reports, kind):
    run = reports[kind]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["run"]["directory"] == run.name
    png = run / "plots" / "overview.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 20_000
    assert_self_contained(run / "report.html")
    if kind == "sim":
        assert summary["kpis"]["ttft_ms"]["samples"] > 0
    else:
        assert summary["kpis"]["ttft_ms"]["mean"] is None


def test_compare_files(reports):
    folder = reports["compare"]
    assert (folder / "compare.png").read_bytes()[:8] == PNG_MAGIC
    assert_self_contained(folder / "compare.html")
    data = json.loads((folder / "compare.json").read_text())
    assert [r["path"] for r in data["runs"]] == [str(reports[k]) for k in ("high", "moderate", "sim")]
    html = (folder / "compare.html").read_text()
    assert html.count("Δ vs") == 2


@pytest.mark.chromium
@pytest.mark.parametrize("kind", ["high", "moderate", "sim"])
def test_report_html_renders_with_all_figures(reports, kind, tmp_path):
    require_chromium()
    # the standard figure and the why figure; a twin run also has requests.csv and GPU power: two more
    figures = 4 if kind == "sim" else 2
    assert images_loaded(reports[kind] / "report.html", tmp_path) == (figures, figures)


@pytest.mark.chromium
def test_compare_html_renders_with_all_figures(reports, tmp_path):
    require_chromium()
    assert images_loaded(reports["compare"] / "compare.html", tmp_path) == (1, 1)


@pytest.mark.chromium
def test_report_screenshot_is_not_blank(reports, tmp_path):
    require_chromium()
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2400", (reports["sim"] / "report.html").as_uri())
    pixels = imread(shot)
    # a real page: many distinct colours, not one flat background
    assert pixels.std() > 0.05
    assert len({tuple(p) for p in pixels[::37, ::37].reshape(-1, pixels.shape[-1]).round(2)}) > 20
