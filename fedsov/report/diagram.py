"""The hierarchy figure: the plan's tree, its border crossings marked with their k."""

from __future__ import annotations

from fedsov.policy.plan import Tier
from fedsov.report.canvas import CROSSING_COLOUR, jurisdiction_colours, light, new_figure, png
from fedsov.report.hierarchy import HierarchyFigure, tree_layout

__all__ = ["draw_hierarchy"]


def draw_hierarchy(data: HierarchyFigure) -> bytes:
    """The plan's tree: nodes coloured by jurisdiction; each border crossing in red
    with its k (and site-level DP, if the export rule asks it); a forbidden link dashed."""
    from matplotlib.patches import Patch

    place = tree_layout(data)
    depth = max((d for _, d in place.values()), default=0)
    width = max((x for x, _ in place.values()), default=0.0) + 1.0
    colours = jurisdiction_colours([n.jurisdiction for n in data.nodes])
    figure = new_figure(1.2 + 1.25 * (depth + 1))
    ax = figure.subplots()
    ax.set_xlim(-0.6, width - 0.4)
    ax.set_ylim(-depth - 0.5, 0.6)
    ax.axis("off")

    def at(name: str) -> tuple[float, float]:
        x, d = place[name]
        return x, -float(d)

    for link in data.links:
        (x0, y0), (x1, y1) = at(link.child), at(link.parent)
        if link.crosses or not link.allowed:
            ax.plot(
                [x0, x1],
                [y0, y1],
                color=CROSSING_COLOUR,
                linewidth=2.6,
                linestyle="-" if link.allowed else "--",
                zorder=1,
            )
            text = _crossing_label(link.route, link.k, link.site_dp, link.allowed)
            ax.text(
                (x0 + x1) / 2,
                (y0 + y1) / 2,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color=CROSSING_COLOUR,
                zorder=3,
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": CROSSING_COLOUR},
            )
        else:
            ax.plot([x0, x1], [y0, y1], color="#999999", linewidth=1.2, zorder=1)
    for n in data.nodes:
        x, y = at(n.name)
        big = n.tier is not Tier.EDGE
        ax.text(
            x,
            y,
            f"{n.name}\n{n.jurisdiction}",
            ha="center",
            va="center",
            fontsize=9 if big else 8,
            fontweight="bold" if big else "normal",
            zorder=4,
            bbox={
                "boxstyle": "round,pad=0.4",
                "fc": light(colours[n.jurisdiction]),
                "ec": colours[n.jurisdiction],
                "lw": 2.0 if big else 1.0,
            },
        )
    handles = [
        Patch(color=colours[j], label=j) for j in sorted({n.jurisdiction for n in data.nodes})
    ]
    handles.append(Patch(color=CROSSING_COLOUR, label="border crossing (k: min sites to cross)"))
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False)
    ax.set_title("hierarchy: coordinator, regional aggregators, sites")
    return png(figure)


def _crossing_label(route: str, k: int | None, site_dp: bool, allowed: bool) -> str:
    if not allowed:
        return f"{route}\nforbidden"
    dp = " + site DP" if site_dp else ""
    return f"{route}\nk ≥ {k}{dp}" if k is not None else route
