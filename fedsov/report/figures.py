"""The report's charts, drawn with matplotlib into PNG bytes: accuracy and loss, ε
against the budgets, participation. Each draws one dataclass of fedsov.report.data
and computes nothing of its own beyond placement; matplotlib is imported inside the
functions, so importing this module (and ``fedsov --help``) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedsov.report.canvas import (
    CELL_COLOURS,
    CROSSING_COLOUR,
    GLOBAL_COLOUR,
    MARKERS,
    PALETTE,
    jurisdiction_colours,
    new_figure,
    png,
)
from fedsov.report.data import Cell, EpsilonFigure, MetricsFigure, ParticipationFigure, Series

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["draw_epsilon", "draw_metrics", "draw_participation"]


def _plot(ax: Axes, s: Series, **style: object) -> None:
    ax.plot(s.rounds, s.values, label=s.label, **style)  # type: ignore[arg-type]


def _rounds_axis(ax: Axes) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)


def draw_metrics(data: MetricsFigure) -> bytes:
    """Accuracy and loss per round: the global model in black, each region dashed, in
    its jurisdiction's colour."""
    colours = jurisdiction_colours([s.jurisdiction for s in data.accuracy + data.loss])
    figure = new_figure(4.2)
    panels = figure.subplots(1, 2)
    for ax, series, name in (
        (panels[0], data.accuracy, "accuracy"),
        (panels[1], data.loss, "loss"),
    ):
        for i, s in enumerate(series):
            if i == 0:
                _plot(ax, s, color=GLOBAL_COLOUR, linewidth=2.6, marker="o", markersize=3)
            else:
                colour = colours[s.jurisdiction]
                _plot(ax, s, color=colour, linewidth=1.4, linestyle="--", marker=".")
        ax.set_title(f"{name} per round")
        ax.set_ylabel(name)
        _rounds_axis(ax)
        if not series:
            ax.text(0.5, 0.5, f"no {name} recorded", ha="center", transform=ax.transAxes)
    panels[0].legend(fontsize=8, loc="lower right")
    return png(figure)


def draw_epsilon(data: EpsilonFigure) -> bytes:
    """Left: each site's ε per round against the site budget. Right (with a plan):
    per jurisdiction, what its regions exported (site-level ε) against its export
    budget, and its worst site's ε; a log scale, as the two differ by orders."""
    figure = new_figure(4.6)
    both = bool(data.jurisdictions)
    panels = figure.subplots(1, 2 if both else 1, squeeze=False)[0]
    colours = jurisdiction_colours([s.participant.jurisdiction for s in data.sites])
    ax = panels[0]
    per_place: dict[str | None, int] = {}
    for i, s in enumerate(data.sites):
        j = s.participant.jurisdiction
        marker = MARKERS[per_place.setdefault(j, 0) % len(MARKERS)]
        per_place[j] += 1
        label = f"{s.series.label} ({j})" if j else s.series.label
        colour = colours[j] if j else PALETTE[i % len(PALETTE)]  # no plan: one per site
        ax.plot(
            s.series.rounds,
            s.series.values,
            label=label,
            color=colour,
            marker=marker,
            markersize=3.5,
            linewidth=1.2,
        )
    if data.site_budget is not None:
        _budget_line(ax, data.site_budget, CROSSING_COLOUR, "site budget", width=1.5)
    ax.set_title("ε per site (as each site reported it)")
    ax.set_ylabel("ε (cumulative)")
    _rounds_axis(ax)
    if data.sites:
        ax.legend(fontsize=7, ncol=2 if len(data.sites) > 6 else 1, loc="best")
    else:
        ax.text(0.5, 0.5, "no site reported an ε (DP off?)", ha="center", transform=ax.transAxes)
    if both:
        _jurisdiction_panel(panels[1], data)
    return png(figure)


def _budget_line(ax: Axes, budget: float, colour: str, what: str, *, width: float) -> None:
    """A budget as a dashed horizontal line, labelled with its value."""
    ax.axhline(budget, color=colour, linestyle="--", linewidth=width, label=f"{what} {budget:g}")


def _jurisdiction_panel(ax: Axes, data: EpsilonFigure) -> None:
    """A jurisdiction's export budget binds what its regions export (their site-level
    ε), so it is drawn only beside an export; its worst site faces the site budget."""
    colours = jurisdiction_colours([j.jurisdiction for j in data.jurisdictions])
    for j in data.jurisdictions:
        c = colours[j.jurisdiction]
        if j.export is not None:
            _plot(ax, j.export, color=c, linewidth=2.4, marker="o", markersize=3)
            if j.budget is not None:
                _budget_line(ax, j.budget, c, f"{j.jurisdiction} export budget", width=1.4)
        if j.worst_site.rounds:
            _plot(ax, j.worst_site, color=c, linewidth=1.4, linestyle=":")
    if data.site_budget is not None:
        _budget_line(ax, data.site_budget, CROSSING_COLOUR, "site budget", width=1.2)
    ax.set_yscale("log")
    ax.set_title("ε per jurisdiction: exports (solid), worst site (dotted)")
    ax.set_ylabel("ε (log scale)")
    _rounds_axis(ax)
    ax.legend(fontsize=7, loc="best")


def draw_participation(data: ParticipationFigure) -> bytes:
    """A heat map, participants x rounds, each cell its outcome at the participant's tier."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    order = list(Cell)
    rows = data.rows
    figure = new_figure(1.3 + 0.28 * max(len(rows), 1))
    ax = figure.subplots()
    grid = [[order.index(c) for c in row.cells] for row in rows]
    ax.imshow(
        grid,
        cmap=ListedColormap([CELL_COLOURS[c] for c in order]),
        vmin=0,
        vmax=len(order) - 1,
        aspect="auto",
        interpolation="nearest",
    )
    ax.set_yticks(
        range(len(rows)),
        [f"{r.participant.label}  → {r.participant.upstream}" for r in rows],
        fontsize=8,
    )
    step = max(1, len(data.rounds) // 25)
    ticks = list(range(0, len(data.rounds), step))
    ax.set_xticks(ticks, [str(data.rounds[i]) for i in ticks], fontsize=8)
    ax.set_xlabel("round")
    ax.set_xticks([i - 0.5 for i in range(len(data.rounds) + 1)], minor=True)
    ax.set_yticks([i - 0.5 for i in range(len(rows) + 1)], minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    for i in range(1, len(rows)):  # a rule between the groups of one upstream
        if rows[i].participant.upstream != rows[i - 1].participant.upstream:
            ax.axhline(i - 0.5, color="#333333", linewidth=1.6)
    ax.set_title("participation per round, at the tier where each takes part")
    figure.legend(
        handles=[Patch(color=CELL_COLOURS[c], label=c.value) for c in order],
        loc="outside lower center",
        ncol=len(order),
        fontsize=8,
        frameon=False,
    )
    return png(figure)
