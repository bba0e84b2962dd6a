"""``residency``: a node's updates go only to jurisdictions its residency allows."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan
from fedsov.policy.rules.base import Crossing, RuleBase, Violation, links


class Residency(RuleBase):
    id = "residency"
    order = 10

    def check(self, plan: Plan) -> Iterator[Violation]:
        for link in links(plan):
            allowed, reason = plan.may_send(link.node.name)
            if not allowed:
                yield Violation(link.node.name, "residency", reason)

    def refuse(self, plan: Plan, node: str) -> str | None:
        allowed, reason = plan.may_send(node)
        return None if allowed else reason

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        from_j = crossing.from_jurisdiction
        if from_j is None:
            return
        residency = sorted(plan.residency_of(from_j))
        if crossing.to_jurisdiction not in residency:
            where = crossing.to_jurisdiction or "an unknown jurisdiction"
            yield f"the residency of {from_j} allows {', '.join(residency)}, not {where}"


RULE = Residency()
