"""``secure-aggregation-unreachable`` and ``secure-aggregation-participants``: a node that
``[policy.secure_aggregation]`` binds can run SecAgg+ with the sites directly below it.

A node is bound when the table names it, or when it is of a listed jurisdiction and
serves edge sites directly (a regional aggregator, or the coordinator of sites directly
below it); ``Plan.secure_aggregation_for`` says so. Judged before launch (at least the
threshold's t edge sites report to it directly, and nothing but edge sites: only a site
masks its update), at start-up (its rounds need at least t sites; its config's
``[secure_aggregation]`` is checked by ``require_secure_aggregation``), and in the
compliance report (each border crossing of its updates was a completed secure aggregate
of threshold >= t, as its ledger records it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fedsov.policy.plan import Plan, PlanNode, Tier
from fedsov.policy.rules.base import Crossing, Requirement, RuleBase, Violation

UNREACHABLE = "secure-aggregation-unreachable"
PARTICIPANTS = "secure-aggregation-participants"
MIN_THRESHOLD = 2  # a secret one share rebuilds is no secret


@dataclass(frozen=True)
class SecureCrossing(Crossing):
    """A crossing with what the ledgers record of its secure aggregation."""

    # True: a completed secure aggregate of its round is recorded (by the sending
    # aggregator; for a site's own update, by the upstream that summed it);
    # False: that ledger records none; None: that ledger is not here
    secure_aggregate: bool | None = None
    secure_threshold: int | None = None  # the smallest t it was completed with


def _because(plan: Plan, node: PlanNode) -> str:
    """Why ``[policy.secure_aggregation]`` binds ``node`` (which it does)."""
    secure = plan.policy.secure_aggregation
    if secure is not None and node.name in secure.nodes:
        return "[policy.secure_aggregation] names it"
    return f"[policy.secure_aggregation] lists {node.jurisdiction}"


def _drop(plan: Plan, node: PlanNode) -> str:
    """How to stop ``[policy.secure_aggregation]`` binding ``node``."""
    secure = plan.policy.secure_aggregation
    if secure is not None and node.name in secure.nodes:
        return f"take {node.name} out of policy.secure_aggregation.nodes"
    return f"take {node.jurisdiction} out of policy.secure_aggregation.jurisdictions"


def _bound(plan: Plan, crossing: Crossing) -> tuple[str, int] | None:
    """The node that must have securely aggregated ``crossing``'s update, and its t: the
    sender, or for a site's own update the upstream it went to; None if none must."""
    names = {n.name: n for n in plan.nodes}
    sender = names.get(crossing.sender)
    if sender is None:
        return None
    who = crossing.receiver if sender.tier is Tier.EDGE else sender.name
    need = plan.secure_aggregation_for(who) if who in names else None
    return None if need is None else (who, need.threshold)


class SecureAggregationRule(RuleBase):
    id = "secure_aggregation"
    order = 60
    needs_sound_topology = False

    def check(self, plan: Plan) -> Iterator[Violation]:
        for node in plan.nodes:
            need = plan.secure_aggregation_for(node.name)
            if need is None:
                continue
            t, children = need.threshold, plan.children(node.name)
            sites = sum(1 for c in children if c.tier is Tier.EDGE)
            why = _because(plan, node)
            lower = (
                f"lower policy.secure_aggregation.threshold to {sites}, "
                if sites >= MIN_THRESHOLD
                else ""
            )
            if sites < t:
                yield Violation(
                    node.name,
                    UNREACHABLE,
                    f"{why}, with threshold t = {t}, but only {sites} edge site(s) report "
                    f"to it directly: no secure round could complete; {lower}give it {t} or "
                    f"more sites, or {_drop(plan, node)}",
                )
            others = sorted(c.name for c in children if c.tier is not Tier.EDGE)
            if others:
                yield Violation(
                    node.name,
                    PARTICIPANTS,
                    f"{why}, but {', '.join(others)} report(s) to it too: only edge sites "
                    f"take part in a secure round; give them another upstream, or "
                    f"{_drop(plan, node)}",
                )

    def requirement(self, plan: Plan, node: str) -> Requirement:
        need = plan.secure_aggregation_for(node)  # a secure round sums >= t sites or fails
        return Requirement() if need is None else Requirement(min_sites=need.threshold)

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        bound = _bound(plan, crossing)
        if bound is None:
            return
        who, t = bound
        done = crossing.secure_aggregate if isinstance(crossing, SecureCrossing) else None
        t_used = crossing.secure_threshold if isinstance(crossing, SecureCrossing) else None
        required = f"the plan requires {who} to securely aggregate (threshold >= {t})"
        if done is None:
            yield f"{required}; nothing here shows a secure aggregate ({who}'s ledger is missing)"
        elif not done:
            summed = (
                "" if who == crossing.sender else f" with {crossing.sender} among its survivors"
            )
            yield (
                f"{required}, but {who}'s ledger records no completed secure aggregate "
                f"of this round{summed}"
            )
        elif t_used is not None and t_used < t:
            yield f"{required}, but the round's secure aggregate had threshold {t_used}"


RULE = SecureAggregationRule()
