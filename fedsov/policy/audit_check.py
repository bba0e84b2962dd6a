"""After the fact: one recorded border crossing judged by the rules of ``RULES``.

The compliance report (``fedsov audit report``) reads the ledgers; what the plan
says of each update that crossed a border is asked here, of the same rule objects
that ``check_plan`` and the run-time guard ask.
"""

from __future__ import annotations

from typing import Any

from fedsov.policy.plan import Plan
from fedsov.policy.rules import RULES
from fedsov.policy.rules.base import Crossing
from fedsov.policy.rules.export_k import at_least

__all__ = ["Crossing", "at_least", "crossing_rule", "judge_crossing"]


def crossing_rule(plan: Plan, from_jurisdiction: str | None) -> dict[str, Any] | None:
    """The plan's rule for what leaves ``from_jurisdiction``, as the report shows it."""
    if from_jurisdiction is None:
        return None
    rule = plan.export_rule(from_jurisdiction)
    return {
        "allow": rule.allow,
        "min_sites": rule.min_sites,
        "site_dp": rule.site_dp,
        "residency": sorted(plan.residency_of(from_jurisdiction)),
    }


def judge_crossing(plan: Plan, crossing: Crossing) -> list[str]:
    """Every rule's findings on ``crossing``, in the rules' order."""
    return [finding for rule in RULES for finding in rule.judge(plan, crossing)]
