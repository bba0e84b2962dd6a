"""``export-forbidden``: an update leaves a jurisdiction only if its export rule allows
it (no rule: nothing leaves), and one site's own update never crosses a border unless
the rule asks for no more than 1 site and no site-level DP."""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan
from fedsov.policy.rules.base import (
    Crossing,
    RuleBase,
    Violation,
    crossings,
    one_site_may_not_cross,
    sending_link,
)


class Export(RuleBase):
    id = "export"
    order = 20

    def check(self, plan: Plan) -> Iterator[Violation]:
        for link, rule in crossings(plan):
            node, j = link.node, link.node.jurisdiction
            if not rule.allow:
                reason = f"nothing may leave {j} ({link.route} via {link.upstream.name})"
                yield Violation(node.name, "export-forbidden", reason)
            elif one_site_may_not_cross(node, rule):
                yield Violation(
                    node.name,
                    "export-forbidden",
                    f"a single site's update would cross {link.route}; {j} "
                    f"exports only aggregates of >= {rule.min_sites} sites"
                    + (" with site-level DP" if rule.site_dp else ""),
                )

    def refuse(self, plan: Plan, node: str) -> str | None:
        link = sending_link(plan, node)
        if not link.crosses:
            return None
        j, rule = link.node.jurisdiction, plan.export_rule(link.node.jurisdiction)
        if not rule.allow:
            return f"nothing may leave {j} for {link.upstream.jurisdiction}"
        if one_site_may_not_cross(link.node, rule):
            dp = " with site-level DP" if rule.site_dp else ""
            return (
                f"only an aggregate of >= {rule.min_sites} sites{dp} may leave {j}, "
                "never one site's update"
            )
        return None

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        from_j = crossing.from_jurisdiction
        if from_j is not None and not plan.export_rule(from_j).allow:
            yield f"the plan lets nothing leave {from_j}"


RULE = Export()
