"""The federation rule: no node sends to an upstream of another federation."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.exceptions import PolicyViolation
from fedsov.policy import check_plan, load_plan
from fedsov.policy.rules import RULES
from fedsov.policy.rules.federation import RULE
from fedsov.policy.runtime import require_may_join, require_may_send

WritePlan = Callable[..., Path]

NODES = [("hub", "global", "EU", None), ("paris", "edge", "EU", "hub")]


def test_the_rule_is_registered() -> None:
    assert RULE in RULES


def test_an_upstream_of_the_plans_federation_is_joined(write_plan: WritePlan) -> None:
    plan = load_plan(write_plan(NODES))
    require_may_join(
        plan, "paris", federation=plan.federation, upstream_name="hub", upstream_jurisdiction="EU"
    )


def test_an_upstream_of_another_federation_is_refused(write_plan: WritePlan) -> None:
    plan = load_plan(write_plan(NODES))
    message = "'paris' refuses to send to 'hub': it serves federation 'other-fed', 'paris' "
    message += f"belongs to {plan.federation!r}"
    with pytest.raises(PolicyViolation, match=f"^{re.escape(message)}$"):
        require_may_join(
            plan, "paris", federation="other-fed", upstream_name="hub", upstream_jurisdiction="EU"
        )


def test_an_upstream_that_does_not_name_itself_is_named_by_the_plan(
    write_plan: WritePlan,
) -> None:
    plan = load_plan(write_plan(NODES))
    with pytest.raises(PolicyViolation, match=r"^'paris' refuses to send to 'hub': it serves"):
        require_may_join(
            plan, "paris", federation="other-fed", upstream_name="", upstream_jurisdiction=""
        )


def test_a_plan_has_one_federation_so_nothing_is_found_before_launch(
    write_plan: WritePlan,
) -> None:
    plan = load_plan(write_plan(NODES))
    assert list(RULE.check(plan)) == []
    assert check_plan(plan) == []
    assert RULE.refuse(plan, "paris") is None
    require_may_send(plan, "paris")
