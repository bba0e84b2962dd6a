"""A real browser renders the report page: headless Chromium's screenshot is not blank.

Needs Chromium (``make browser``): skipped without it, failed without it under CI.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from headless_browser import require_chromium, screenshot
from PIL import Image
from synthetic_run import write_hierarchical_run

from fedsov.report import write_report
from fedsov.report.canvas import CELL_COLOURS, CROSSING_COLOUR
from fedsov.report.data import Cell

WIDTH, HEIGHT = 1280, 3200


def near(pixels: np.ndarray, colour: str, tolerance: int = 12) -> int:
    """How many pixels are within ``tolerance`` of ``colour`` on every channel."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(pixels.astype(int) - rgb) <= tolerance).all(axis=-1).sum())


def test_chromium_renders_the_page_with_its_figures(tmp_path: Path) -> None:
    chromium = require_chromium()
    run = write_hierarchical_run(tmp_path / "run")
    page = tmp_path / "report.html"
    write_report(run.path, page)
    shot = tmp_path / "shot.png"
    screenshot(chromium, page, shot, width=WIDTH, height=HEIGHT)

    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        pixels = np.asarray(image.convert("RGB"))
    ink = (pixels < 245).any(axis=-1)
    assert ink.mean() > 0.03, "the page is (nearly) blank"
    quantised = {tuple(p) for p in (pixels[::4, ::4] // 16).reshape(-1, 3)}
    assert len(quantised) > 40, "too few colours for four figures"
    # the figures drew: their lower part holds ink, the heat map's cells and the red
    # border crossing show in the browser, not only in the PNG files
    assert ink[HEIGHT // 2 : HEIGHT * 7 // 8].mean() > 0.02
    assert near(pixels, CELL_COLOURS[Cell.ACCEPTED]) > 5000
    assert near(pixels, CELL_COLOURS[Cell.DECLINED]) > 1000
    assert near(pixels, CROSSING_COLOUR) > 100
