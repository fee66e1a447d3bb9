"""The README's screenshots show the current HTML report, headline included, and can be redone
(``scripts/docs-screenshots.sh``, real headless chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import ROOT

IMG = ROOT / "docs" / "img"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which(
    "chromium-browser")
HEADLINE_BG = (0xFF, 0xEB, 0xE9)  # the error headline's background (#ffebe9)


def _pixels(path: Path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import numpy as np

    return np.round(mpimg.imread(path)[..., :3] * 255).astype(int)


def _headline_rows(path: Path) -> list[int]:
    """Rows near the top where the headline's background spans most of the page width:
    only the one-sentence headline is that wide in that colour (badges are small)."""
    px = _pixels(path)
    top = px[:200]
    match = (abs(top - HEADLINE_BG) <= 2).all(axis=2)
    return [y for y in range(len(top)) if match[y].sum() > 0.6 * px.shape[1]]


def test_readme_screenshot_shows_the_headline():
    assert "![HTML report" in (ROOT / "README.md").read_text()
    rows = _headline_rows(IMG / "html-report.png")
    assert len(rows) >= 20, "no headline band at the top of docs/img/html-report.png"


def test_a_report_without_the_headline_is_told_apart(tmp_path):
    """The check above can fail: the ladder picture has no such band."""
    assert _headline_rows(IMG / "ladder.png") == []


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                    "(bash scripts/setup.sh test installs it)")
def test_the_screenshots_can_be_redone(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "scripts" / "docs-screenshots.sh"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "CHROMIUM": CHROMIUM})
    assert done.returncode == 0, done.stderr
    fresh = tmp_path / "html-report.png"
    assert _pixels(fresh).shape == _pixels(IMG / "html-report.png").shape
    assert len(_headline_rows(fresh)) >= 20
    assert (tmp_path / "ladder.png").stat().st_size > 10_000
