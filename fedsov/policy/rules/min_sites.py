"""``min-sites-unreachable``: a regional aggregator's own ``min_sites`` (k) is reachable,
and its rounds need that many sites (start-up)."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan, Tier
from fedsov.policy.rules.base import Requirement, RuleBase, Violation


class MinSites(RuleBase):
    id = "min_sites"
    order = 4
    needs_sound_topology = False

    def check(self, plan: Plan) -> Iterator[Violation]:
        for node in plan.nodes:
            if node.tier is not Tier.REGIONAL or node.min_sites is None:
                continue
            cohort = len(plan.edges_under(node.name))
            if cohort < node.min_sites:
                yield Violation(
                    node.name,
                    "min-sites-unreachable",
                    f"its rounds need {node.min_sites} sites, but only {cohort} sit below it",
                )

    def requirement(self, plan: Plan, node: str) -> Requirement:
        return Requirement(min_sites=plan.node(node).min_sites or 1)


RULE = MinSites()
