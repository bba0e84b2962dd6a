"""What the report's figures share: page width, colours, and a matplotlib figure drawn
to PNG bytes with the Agg backend (matplotlib is imported only when one is drawn)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fedsov.report.data import Cell

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CELL_COLOURS",
    "CROSSING_COLOUR",
    "DPI",
    "GLOBAL_COLOUR",
    "MARKERS",
    "PALETTE",
    "WIDTH_IN",
    "jurisdiction_colours",
    "light",
    "new_figure",
    "png",
]

WIDTH_IN = 12.0  # inches; at DPI, the width of a 1280-pixel page less its margins
DPI = 100
GLOBAL_COLOUR = "#222222"
CROSSING_COLOUR = "#c0392b"
CELL_COLOURS = {
    Cell.ACCEPTED: "#2e9d57",
    Cell.DECLINED: "#f0a030",
    Cell.LATE: "#8e6bbf",
    Cell.REFUSED: "#d62728",
    Cell.ABSENT: "#e6e6e6",
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def jurisdiction_colours(jurisdictions: Sequence[str | None]) -> dict[str | None, str]:
    """One colour per jurisdiction, in sorted order (None: grey)."""
    named = sorted({j for j in jurisdictions if j is not None})
    colours: dict[str | None, str] = {j: PALETTE[i % len(PALETTE)] for i, j in enumerate(named)}
    colours[None] = "#7f7f7f"
    return colours


def new_figure(height_in: float) -> Figure:
    """A figure as wide as the page, ``height_in`` inches high, laid out by matplotlib."""
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")


def png(figure: Figure) -> bytes:
    """``figure`` drawn by Agg (no display, no pyplot state) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI, facecolor="white")
    return out.getvalue()


def light(colour: str) -> str:
    """``colour`` mixed two parts to three with white: a fill black text reads on."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(255 - (255 - v) * 0.4):02x}" for v in rgb)
