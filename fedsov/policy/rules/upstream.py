"""``missing-upstream`` and ``unknown-upstream``: every regional or edge node reports to
a node of the plan."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan, Tier
from fedsov.policy.rules.base import RuleBase, Violation


class Upstream(RuleBase):
    id = "upstream"
    order = 1
    needs_sound_topology = False
    breaks_topology = frozenset({"unknown-upstream"})

    def check(self, plan: Plan) -> Iterator[Violation]:
        names = {n.name for n in plan.nodes}
        for node in plan.nodes:
            if node.tier is Tier.GLOBAL:
                continue
            if node.upstream is None:
                reason = f"no upstream; every {node.tier} node needs one"
                yield Violation(node.name, "missing-upstream", reason)
            elif node.upstream not in names:
                reason = f"upstream {node.upstream!r} is no node"
                yield Violation(node.name, "unknown-upstream", reason)


RULE = Upstream()
