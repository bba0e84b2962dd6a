"""The plan's hierarchy as a diagram's data: nodes, links, border crossings and their k.

A link crosses a border when its two ends are in different jurisdictions; what may
cross is the sender's export rule: at least k sites in the aggregate
(``fedsov.policy.runtime.export_requirement``), site-level DP if the rule asks it,
or nothing at all. ``tree_layout`` places the nodes (pure arithmetic, no drawing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fedsov.exceptions import FedsovError
from fedsov.policy.plan import Plan, Tier
from fedsov.policy.runtime import export_requirement, require_may_send

__all__ = ["DiagramLink", "DiagramNode", "HierarchyFigure", "hierarchy_data", "tree_layout"]


@dataclass(frozen=True)
class DiagramNode:
    name: str
    tier: Tier
    jurisdiction: str
    upstream: str | None


@dataclass(frozen=True)
class DiagramLink:
    """A node's link to its upstream."""

    child: str
    parent: str
    crosses: bool  # the two ends are in different jurisdictions
    route: str  # "IN → EU"
    k: int | None  # on a crossing: the fewest sites an aggregate must hold to cross
    site_dp: bool  # on a crossing: the aggregate must carry site-level DP
    allowed: bool  # whether the plan lets the child send over this link at all
    reason: str = ""  # why not, when it does not


@dataclass(frozen=True)
class HierarchyFigure:
    nodes: tuple[DiagramNode, ...]  # in plan order
    links: tuple[DiagramLink, ...]

    @property
    def crossings(self) -> tuple[DiagramLink, ...]:
        return tuple(link for link in self.links if link.crosses)


def hierarchy_data(plan: Plan) -> HierarchyFigure:
    """Every node and link of ``plan``; each crossing with the k its sender must meet."""
    names = {n.name: n for n in plan.nodes}
    nodes = tuple(DiagramNode(n.name, n.tier, n.jurisdiction, n.upstream) for n in plan.nodes)
    links = []
    for n in plan.nodes:
        up = names.get(n.upstream or "")
        if up is None:
            continue
        crosses = n.jurisdiction != up.jurisdiction
        need = export_requirement(plan, n.name) if crosses else None
        reason = ""
        try:
            require_may_send(plan, n.name)
        except FedsovError as exc:  # PolicyViolation, or ConfigError in a broken plan
            reason = str(exc)
        links.append(
            DiagramLink(
                child=n.name,
                parent=up.name,
                crosses=crosses,
                route=f"{n.jurisdiction} → {up.jurisdiction}",
                k=need.min_sites if need is not None else None,
                site_dp=need.site_dp if need is not None else False,
                allowed=not reason,
                reason=reason,
            )
        )
    return HierarchyFigure(nodes, tuple(links))


def tree_layout(figure: HierarchyFigure) -> Mapping[str, tuple[float, int]]:
    """(x, depth) of every node: the leaves of each subtree side by side, one unit
    apart, left to right in plan order; a parent centred over its children; depth 0
    at the top. A node whose upstream is unknown (or that sits in a cycle) is a root."""
    known = {n.name for n in figure.nodes}
    children: dict[str | None, list[str]] = {}
    for n in figure.nodes:
        parent = n.upstream if n.upstream in known and n.upstream != n.name else None
        children.setdefault(parent, []).append(n.name)
    place: dict[str, tuple[float, int]] = {}
    next_leaf = 0.0

    def visit(name: str, depth: int, path: frozenset[str]) -> float:
        nonlocal next_leaf
        below = [c for c in children.get(name, []) if c not in path and c not in place]
        if not below:
            x, next_leaf = next_leaf, next_leaf + 1.0
        else:
            xs = [visit(c, depth + 1, path | {c}) for c in below]
            x = (xs[0] + xs[-1]) / 2
        place[name] = (x, depth)
        return x

    for root in children.get(None, []):
        visit(root, 0, frozenset({root}))
    for n in figure.nodes:  # in a cycle: no root above them
        if n.name not in place:
            visit(n.name, 0, frozenset({n.name}))
    return place
