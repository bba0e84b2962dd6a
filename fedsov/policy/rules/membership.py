"""Membership: whoever sends or receives an update is a node of the plan, with a
recorded jurisdiction (judged after the fact; at run time ``PlanAdmission`` admits
only the plan's nodes)."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan
from fedsov.policy.rules.base import Crossing, RuleBase


class Membership(RuleBase):
    id = "membership"
    order = 90

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        if crossing.from_jurisdiction is None:
            yield f"the jurisdiction of {crossing.sender} is not recorded"
        names = {node.name for node in plan.nodes}
        for who in (crossing.sender, crossing.receiver):
            if who not in names:
                yield f"{who} is not a node of the plan"


RULE = Membership()
