"""A node never sends to an upstream of another federation: the federation its
upstream announces when it answers the join must be the plan's.

Statically there is nothing to find: a plan names one federation, and every node
of it is in that one. The ledgers record no federation, so the report cannot judge
it either. At run time the upstream's JoinResponse carries its federation name, so
a site (or a regional aggregator) refuses, before taking any task, an upstream whose
federation differs from the plan it was started with.
"""

from __future__ import annotations

from fedsov.policy.plan import Plan
from fedsov.policy.rules.base import Announced, RuleBase


class Federation(RuleBase):
    id = "federation"
    order = 5

    def refuse_upstream(self, plan: Plan, node: str, upstream: Announced) -> str | None:
        if upstream.federation == plan.federation:
            return None
        return (
            f"it serves federation {upstream.federation!r}, {node!r} belongs to {plan.federation!r}"
        )


RULE = Federation()
