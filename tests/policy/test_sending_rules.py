"""Sending and admission at run time: one site across a border, the root's requirement."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.exceptions import AccessDenied, PolicyViolation
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.policy.plan import Plan, load_plan
from fedsov.policy.runtime import (
    ExportRequirement,
    PlanAdmission,
    export_requirement,
    require_may_send,
)

WritePlan = Callable[..., Path]

NODES = [("hub", "global", "EU", None), ("pune", "edge", "IN", "hub")]


def plan_with(write_plan: WritePlan, rule: str) -> Plan:
    text = f'[policy.residency]\nIN = ["IN", "EU"]\n\n[policy.export]\nIN = {rule}\n'
    return load_plan(write_plan(NODES, text))


def test_one_site_may_cross_under_a_k1_rule_without_dp(write_plan: WritePlan) -> None:
    require_may_send(plan_with(write_plan, "{ min_sites = 1 }"), "pune")


def test_one_site_may_not_cross_when_k_is_2(write_plan: WritePlan) -> None:
    plan = plan_with(write_plan, "{ min_sites = 2 }")
    message = (
        "'pune' refuses to send to 'hub': only an aggregate of >= 2 sites may leave IN, "
        "never one site's update"
    )
    with pytest.raises(PolicyViolation, match=f"^{re.escape(message)}$"):
        require_may_send(plan, "pune")


def test_the_root_needs_nothing_to_export(write_plan: WritePlan) -> None:
    plan = plan_with(write_plan, "{ min_sites = 2 }")
    assert export_requirement(plan, "hub") == ExportRequirement(min_sites=1, site_dp=False)


def test_an_unknown_peer_is_told_which_plan_it_is_missing_from(write_plan: WritePlan) -> None:
    plan = plan_with(write_plan, "{ min_sites = 1 }")
    stranger = NodeIdentity("nice", Role.site, "EU", plan.federation)
    message = f"'nice' is not a node of plan {plan.sha256[:16]}"
    with pytest.raises(AccessDenied, match=f"^{re.escape(message)}$"):
        PlanAdmission(plan, "hub")(stranger)
