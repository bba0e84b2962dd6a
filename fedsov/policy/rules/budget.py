"""``budget-missing``: a jurisdiction that exports has a jurisdiction ε budget."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan
from fedsov.policy.rules.base import RuleBase, Violation, crossings


class Budget(RuleBase):
    id = "budget"
    order = 50

    def check(self, plan: Plan) -> Iterator[Violation]:
        exporting = {link.node.jurisdiction for link, rule in crossings(plan) if rule.allow}
        for j in sorted(exporting):
            if j not in plan.policy.budgets.jurisdiction_epsilon:
                reason = f"{j} exports aggregates but has no jurisdiction_epsilon budget"
                yield Violation(j, "budget-missing", reason)


RULE = Budget()
