"""``global-count``: exactly one global node, and it has no upstream."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan, Tier
from fedsov.policy.rules.base import RuleBase, Violation


class GlobalCount(RuleBase):
    id = "global_count"
    order = 0
    needs_sound_topology = False

    def check(self, plan: Plan) -> Iterator[Violation]:
        tops = sorted(n.name for n in plan.nodes if n.tier is Tier.GLOBAL)
        if not tops:
            yield Violation("(plan)", "global-count", "no global node; a plan needs exactly 1")
        if len(tops) > 1:
            reason = f"{len(tops)} global nodes ({', '.join(tops)}); a plan needs exactly 1"
            yield from (Violation(name, "global-count", reason) for name in tops)
        for node in plan.nodes:
            if node.tier is Tier.GLOBAL and node.upstream is not None:
                yield Violation(node.name, "global-count", "the global node has an upstream")


RULE = GlobalCount()
