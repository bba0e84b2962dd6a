"""``sites-per-round-below-k``: a node that asks ``[rounds] sites_per_round`` of its
sites a round asks at least as many as its rounds need to close and be exported: its
own ``min_sites``, the export rule's k where its aggregate crosses a border, and the
secure aggregation threshold that binds it."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan, PlanNode
from fedsov.policy.rules.base import RuleBase, Violation, export_rule_across

RULE_ID = "sites-per-round-below-k"


def _needs(plan: Plan, node: PlanNode) -> list[tuple[int, str]]:
    """(sites, why) for each thing ``node``'s rounds need that many accepted sites for."""
    needs = []
    if node.min_sites is not None:
        needs.append((node.min_sites, f"its min_sites = {node.min_sites}"))
    rule = export_rule_across(plan, node.name)
    if rule is not None and rule.allow and rule.min_sites > 1:
        needs.append(
            (
                rule.min_sites,
                f"{node.jurisdiction} exports only aggregates of >= {rule.min_sites} sites",
            )
        )
    secure = plan.secure_aggregation_for(node.name)
    if secure is not None:
        needs.append((secure.threshold, f"secure aggregation needs t = {secure.threshold}"))
    return needs


class SitesPerRound(RuleBase):
    id = "sites_per_round"
    order = 35

    def check(self, plan: Plan) -> Iterator[Violation]:
        for node in plan.nodes:
            asked = plan.sites_per_round_of(node.name)
            if not asked:
                continue
            for need, why in _needs(plan, node):
                if asked < need:
                    yield Violation(
                        node.name,
                        RULE_ID,
                        f"[rounds] sites_per_round = {asked} asks {asked} of its sites a "
                        f"round, but {why}: no round could ever meet that; raise sites_per_round "
                        f"to {need} or more",
                    )


RULE = SitesPerRound()
