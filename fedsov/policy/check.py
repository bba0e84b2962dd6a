"""``fedsov policy check``: the plan's topology against its own policy, before anything runs.

Each violation names a node (``(plan)`` when there is no global node at all; the
jurisdiction for ``budget-missing``), a rule id and why. The rule ids are stable:

Topology

- ``global-count``: exactly one global node, and it has no upstream.
- ``missing-upstream``: a regional or edge node without an upstream.
- ``unknown-upstream``: an upstream that is not a node of the plan.
- ``cycle``: following upstreams comes back to where it started (names the loop).
- ``tier-order``: nothing may report to an edge site (sites never listen); edge
  sites and regional aggregators report to a regional or the global node.
- ``min-sites-unreachable``: a regional aggregator's own ``min_sites`` exceeds the
  sites below it, so none of its rounds could ever close.

Sovereignty (judged only once no upstream is unknown and nothing loops: on a
broken topology their findings would be noise)

- ``residency``: a node's updates would go to a jurisdiction its residency forbids.
- ``export-forbidden``: an update would leave a jurisdiction whose export rule
  forbids it (no rule: nothing leaves); a single site's update never crosses a
  border unless the rule asks for no more than 1 site and no site-level DP.
- ``export-k-unreachable``: a regional aggregator that exports across a border has
  fewer sites below it than the export rule's k, so no round could ever export.
- ``export-k-below``: such an aggregator's own ``min_sites`` is below the export
  rule's k: it would train rounds whose aggregate may never leave.
- ``export-dp-missing``: the export rule needs site-level DP, and the plan has no
  ``[policy.site_dp]`` (or one that adds no noise).
- ``budget-missing``: a jurisdiction exports, and has no jurisdiction ε budget.

Violations come sorted by rule, node and reason, whatever the order of the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedsov.policy.plan import Plan, PlanNode, Tier

__all__ = ["Violation", "check_plan"]


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (``node``), which (``rule``, a stable id) and why."""

    node: str
    rule: str
    reason: str


def _topology(plan: Plan) -> list[Violation]:
    out: list[Violation] = []
    names = {n.name: n for n in plan.nodes}
    tops = sorted(n.name for n in plan.nodes if n.tier is Tier.GLOBAL)
    if not tops:
        out.append(Violation("(plan)", "global-count", "no global node; a plan needs exactly 1"))
    if len(tops) > 1:
        listed = ", ".join(tops)
        reason = f"{len(tops)} global nodes ({listed}); a plan needs exactly 1"
        out += [Violation(name, "global-count", reason) for name in tops]
    for node in plan.nodes:
        if node.tier is Tier.GLOBAL:
            if node.upstream is not None:
                out.append(Violation(node.name, "global-count", "the global node has an upstream"))
            continue
        if node.upstream is None:
            out.append(
                Violation(
                    node.name, "missing-upstream", f"no upstream; every {node.tier} node needs one"
                )
            )
        elif node.upstream not in names:
            out.append(
                Violation(node.name, "unknown-upstream", f"upstream {node.upstream!r} is no node")
            )
        elif names[node.upstream].tier is Tier.EDGE:
            out.append(
                Violation(
                    node.name,
                    "tier-order",
                    f"upstream {node.upstream!r} is an edge site; sites never serve",
                )
            )
    out += _cycles(plan, names)
    return out


def _cycles(plan: Plan, names: dict[str, PlanNode]) -> list[Violation]:
    out: list[Violation] = []
    reported: set[str] = set()
    for start in plan.nodes:
        path: list[str] = []
        current: str | None = start.name
        while current is not None and current in names and current not in path:
            path.append(current)
            current = names[current].upstream
        if current is not None and current in path:
            loop = path[path.index(current) :]
            if not reported.intersection(loop):
                reported.update(loop)
                first = loop.index(min(loop))  # the same loop reads the same, whatever the order
                loop = loop[first:] + loop[:first]
                out.append(Violation(loop[0], "cycle", " -> ".join([*loop, loop[0]]) + " loops"))
    return out


def _sovereignty(plan: Plan) -> list[Violation]:
    out: list[Violation] = []
    names = {n.name: n for n in plan.nodes}
    exporting: set[str] = set()
    for node in plan.nodes:
        upstream = names.get(node.upstream or "")
        if upstream is None or upstream.tier is Tier.EDGE:
            continue
        allowed, reason = plan.may_send(node.name)
        if not allowed:
            out.append(Violation(node.name, "residency", reason))
        if upstream.jurisdiction == node.jurisdiction:
            continue
        rule = plan.export_rule(node.jurisdiction)
        crossing = f"{node.jurisdiction} -> {upstream.jurisdiction}"
        if not rule.allow:
            out.append(
                Violation(
                    node.name,
                    "export-forbidden",
                    f"nothing may leave {node.jurisdiction} ({crossing} via {upstream.name})",
                )
            )
            continue
        exporting.add(node.jurisdiction)
        if node.tier is Tier.EDGE:
            if rule.min_sites > 1 or rule.site_dp:
                out.append(
                    Violation(
                        node.name,
                        "export-forbidden",
                        f"a single site's update would cross {crossing}; {node.jurisdiction} "
                        f"exports only aggregates of >= {rule.min_sites} sites"
                        + (" with site-level DP" if rule.site_dp else ""),
                    )
                )
            continue
        cohort = len(plan.edges_under(node.name))
        if node.min_sites is not None and node.min_sites < rule.min_sites:
            out.append(
                Violation(
                    node.name,
                    "export-k-below",
                    f"its min_sites = {node.min_sites} is below {node.jurisdiction}'s export "
                    f"k = {rule.min_sites}: rounds of fewer than {rule.min_sites} sites "
                    "would train and then never be exported",
                )
            )
        if cohort < rule.min_sites:
            out.append(
                Violation(
                    node.name,
                    "export-k-unreachable",
                    f"{cohort} sites below it, but {node.jurisdiction} exports only aggregates "
                    f"of >= {rule.min_sites} sites: no round could ever export",
                )
            )
        dp = plan.policy.site_dp
        if rule.site_dp and (dp is None or dp.noise_multiplier == 0):
            out.append(
                Violation(
                    node.name,
                    "export-dp-missing",
                    f"{node.jurisdiction} exports only with site-level DP; "
                    + ("add [policy.site_dp]" if dp is None else "its noise_multiplier is 0"),
                )
            )
    for jurisdiction in sorted(exporting):
        if jurisdiction not in plan.policy.budgets.jurisdiction_epsilon:
            out.append(
                Violation(
                    jurisdiction,
                    "budget-missing",
                    f"{jurisdiction} exports aggregates but has no jurisdiction_epsilon budget",
                )
            )
    return out


def _cohorts(plan: Plan) -> list[Violation]:
    out: list[Violation] = []
    for node in plan.nodes:
        if node.tier is not Tier.REGIONAL or node.min_sites is None:
            continue
        cohort = len(plan.edges_under(node.name))
        if cohort < node.min_sites:
            out.append(
                Violation(
                    node.name,
                    "min-sites-unreachable",
                    f"its rounds need {node.min_sites} sites, but only {cohort} sit below it",
                )
            )
    return out


def check_plan(plan: Plan) -> list[Violation]:
    """Every violation of the plan's topology and policy, in a stable order."""
    found = _topology(plan) + _cohorts(plan)
    if not any(v.rule in ("cycle", "unknown-upstream") for v in found):
        found += _sovereignty(plan)
    return sorted(set(found), key=lambda v: (v.rule, v.node, v.reason))
