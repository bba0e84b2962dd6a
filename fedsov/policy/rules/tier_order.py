"""``tier-order``: nothing may report to an edge site (sites never listen)."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan, Tier
from fedsov.policy.rules.base import RuleBase, Violation


class TierOrder(RuleBase):
    id = "tier_order"
    order = 2
    needs_sound_topology = False

    def check(self, plan: Plan) -> Iterator[Violation]:
        names = {n.name: n for n in plan.nodes}
        for node in plan.nodes:
            upstream = names.get(node.upstream or "")
            if node.tier is not Tier.GLOBAL and upstream is not None and upstream.tier is Tier.EDGE:
                reason = f"upstream {upstream.name!r} is an edge site; sites never serve"
                yield Violation(node.name, "tier-order", reason)


RULE = TierOrder()
