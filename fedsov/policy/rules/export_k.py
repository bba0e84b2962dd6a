"""``export-k-unreachable`` and ``export-k-below``: what a regional aggregator exports
across a border aggregates at least the export rule's k sites."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan, Tier
from fedsov.policy.rules.base import (
    Crossing,
    Requirement,
    RuleBase,
    Violation,
    crossings,
    export_rule_across,
)


def at_least(n: int | None, k: int) -> bool:
    """Whether an update of ``n`` sites (None: not recorded, but at least one) has k."""
    return k <= 1 if n is None else n >= k


class ExportK(RuleBase):
    id = "export_k"
    order = 30

    def check(self, plan: Plan) -> Iterator[Violation]:
        for link, rule in crossings(plan):
            node, j, k = link.node, link.node.jurisdiction, rule.min_sites
            if not rule.allow or node.tier is Tier.EDGE:
                continue
            if node.min_sites is not None and node.min_sites < k:
                yield Violation(
                    node.name,
                    "export-k-below",
                    f"its min_sites = {node.min_sites} is below {j}'s export "
                    f"k = {k}: rounds of fewer than {k} sites "
                    "would train and then never be exported",
                )
            cohort = len(plan.edges_under(node.name))
            if cohort < k:
                yield Violation(
                    node.name,
                    "export-k-unreachable",
                    f"{cohort} sites below it, but {j} exports only aggregates "
                    f"of >= {k} sites: no round could ever export",
                )

    def requirement(self, plan: Plan, node: str) -> Requirement:
        rule = export_rule_across(plan, node)
        return Requirement() if rule is None else Requirement(min_sites=rule.min_sites)

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        from_j = crossing.from_jurisdiction
        if from_j is None:
            return
        n, k = crossing.sites, plan.export_rule(from_j).min_sites
        if not at_least(n, k):
            what = (
                "the number of sites is not recorded"
                if n is None
                else f"an aggregate of {n} site(s) crossed"
            )
            yield f"{what}; {from_j} exports need >= {k}"
        distinct = len(set(crossing.contributors))
        if crossing.contributors and n is not None and distinct < n:
            yield f"{n} site(s) recorded, but only {distinct} contributors"


RULE = ExportK()
