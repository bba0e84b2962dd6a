"""``export-dp-missing``: an export rule that needs site-level DP gets it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fedsov.policy.plan import Plan, Tier
from fedsov.policy.rules.base import (
    Crossing,
    Requirement,
    RuleBase,
    Violation,
    crossings,
    export_rule_across,
)


def has_site_dp(dp: Mapping[str, Any] | None) -> bool:
    """Whether a recorded update's ``dp`` detail shows site-level DP that adds noise."""
    if not dp or dp.get("level") != "site":
        return False
    z = dp.get("noise_multiplier")
    return z is None or (isinstance(z, int | float) and z > 0)


class SiteDP(RuleBase):
    id = "site_dp"
    order = 40

    def check(self, plan: Plan) -> Iterator[Violation]:
        dp = plan.policy.site_dp
        for link, rule in crossings(plan):
            node = link.node
            if not rule.allow or node.tier is Tier.EDGE:
                continue
            if rule.site_dp and (dp is None or dp.noise_multiplier == 0):
                yield Violation(
                    node.name,
                    "export-dp-missing",
                    f"{node.jurisdiction} exports only with site-level DP; "
                    + ("add [policy.site_dp]" if dp is None else "its noise_multiplier is 0"),
                )

    def requirement(self, plan: Plan, node: str) -> Requirement:
        rule = export_rule_across(plan, node)
        return Requirement(site_dp=rule is not None and rule.site_dp)

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        from_j = crossing.from_jurisdiction
        if from_j is None or not plan.export_rule(from_j).site_dp:
            return
        if not has_site_dp(crossing.dp):
            level = (crossing.dp or {}).get("level", "none")
            yield f"{from_j} exports need site-level DP; this update had {level!r}"


RULE = SiteDP()
