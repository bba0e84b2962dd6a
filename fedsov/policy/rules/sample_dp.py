"""``sample-dp-required``: the sites of a jurisdiction listed in ``[policy] sample_dp``
train with sample-level DP (fedsov's DP-SGD), not only whole-update DP or none.

Judged four times: in the plan (a site whose entry says ``dp = "update"``, or a plan
whose ``[privacy]`` is off), by the site at start-up (what its own trainer provides),
by its upstream on receipt (the update's privacy report), and in the compliance report.
"""

from __future__ import annotations

from collections.abc import Iterator

from fedsov.policy.plan import Plan, PlanNode, Tier
from fedsov.policy.rules.base import Crossing, RuleBase, Violation

RULE_ID = "sample-dp-required"
_FIX = (
    'train it with fedsov\'s DP-SGD ([privacy] enabled, dp = "sample" in its plan entry; '
    'a Flower app: through fedsov.site.flower_privacy.make_private, [trainer] dp = "sample")'
)


def _bound(plan: Plan, name: str) -> PlanNode | None:
    """``name``'s plan entry if it is an edge site that must train with sample-level DP."""
    node = plan.find(name)
    if node is None or node.tier is not Tier.EDGE:
        return None
    return node if node.jurisdiction in plan.policy.sample_dp else None


def _required(node: PlanNode, lacking: str) -> str:
    return (
        f"{node.jurisdiction} requires sample-level DP of its sites ([policy] sample_dp), "
        f"but {lacking}: {_FIX}, or drop {node.jurisdiction} from sample_dp"
    )


def _plan_lacks(plan: Plan, node: PlanNode) -> str | None:
    """What in the plan says ``node`` trains without sample-level DP, or None."""
    if plan.provides_sample_dp(node.name):
        return None
    if not plan.privacy.enabled:
        return _required(node, "the plan's [privacy] is disabled")
    if node.dp == "sample":  # the entry says so, the simulated Flower app does not
        return _required(
            node,
            f"{node.name!r} runs the Flower app of [simulation.trainer] with "
            f'dp = "{plan.simulated_app_dp}" (update-level DP)',
        )
    return _required(node, f'the plan entry of {node.name!r} says dp = "{node.dp}"')


class SampleDP(RuleBase):
    id = "sample_dp"
    order = 45
    needs_sound_topology = False

    def check(self, plan: Plan) -> Iterator[Violation]:
        for entry in plan.nodes:
            node = _bound(plan, entry.name)
            reason = None if node is None else _plan_lacks(plan, node)
            if reason is not None:
                yield Violation(entry.name, RULE_ID, reason)

    def refuse(self, plan: Plan, node: str) -> str | None:
        entry = _bound(plan, node)
        reason = None if entry is None else _plan_lacks(plan, entry)
        return None if reason is None else f"{RULE_ID}: {reason}"

    def refuse_update(self, plan: Plan, node: str, sample_dp: bool) -> str | None:
        entry = _bound(plan, node)
        if entry is None or sample_dp:
            return None
        return f"{RULE_ID}: " + _required(
            entry, f"the update of {node!r} is not trained with sample-level DP"
        )

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        entry = _bound(plan, crossing.sender)
        level = (crossing.dp or {}).get("level", "none")
        if entry is not None and level != "sample":
            j = entry.jurisdiction
            yield f"{j} requires sample-level DP of its sites; this update had {level!r}"


RULE = SampleDP()
