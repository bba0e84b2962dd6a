"""Run-time admission and sending rules, branch by branch, without a socket."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.exceptions import AccessDenied, FedsovError, PolicyViolation
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.policy.plan import Plan, load_plan
from fedsov.policy.runtime import (
    PlanAdmission,
    export_requirement,
    require_export_settings,
    require_may_send,
)

NODES = [
    ("coordinator", "global", "EU", None),
    ("agg-eu", "regional", "EU", "coordinator"),
    ("agg-in", "regional", "IN", "coordinator"),
    ("agg-br", "regional", "BR", "coordinator"),
    ("agg-us", "regional", "US", "coordinator"),
    ("paris", "edge", "EU", "agg-eu"),
    ("lyon", "edge", "EU", "agg-in"),  # EU's residency forbids IN
    ("mumbai", "edge", "IN", "agg-in"),
    ("pune", "edge", "IN", "coordinator"),  # one site's update across the border
    ("rio", "edge", "BR", "coordinator"),  # BR: k = 1, but site-level DP required
    ("boston", "edge", "US", "agg-us"),
    ("austin", "edge", "US", "coordinator"),  # US may not export at all
]
POLICY = """
[policy.residency]
EU = ["EU"]
IN = ["IN", "EU"]
BR = ["BR", "EU"]
US = ["US", "EU"]

[policy.export]
IN = { min_sites = 3, site_dp = true }
BR = { min_sites = 1, site_dp = true }
US = { allow = false }
"""


@pytest.fixture
def plan(write_plan: Callable[..., Path]) -> Plan:
    return load_plan(write_plan(NODES, POLICY, extra={"agg-eu": {"min_sites": "2"}}))


def who(plan: Plan, name: str, role: Role, jurisdiction: str, federation: str = "") -> NodeIdentity:
    return NodeIdentity(name, role, jurisdiction, federation or plan.federation)


def test_admission_lets_in_a_child_whose_certificate_matches_its_entry(plan: Plan) -> None:
    PlanAdmission(plan, "agg-eu")(who(plan, "paris", Role.site, "EU"))
    PlanAdmission(plan, "coordinator")(who(plan, "agg-in", Role.aggregator, "IN"))


@pytest.mark.parametrize(
    ("node", "identity", "message"),
    [
        ("agg-eu", ("paris", Role.site, "EU", "other-fed"), "is for federation 'other-fed'"),
        ("agg-eu", ("nice", Role.site, "EU", ""), "'nice' is not a node of plan"),
        ("agg-eu", ("mumbai", Role.site, "IN", ""), "reports to 'agg-in' in the plan"),
        ("agg-eu", ("paris", Role.aggregator, "EU", ""), "says role aggregator"),
        ("coordinator", ("agg-in", Role.site, "IN", ""), "says role site"),
        ("agg-eu", ("paris", Role.site, "IN", ""), "says jurisdiction IN, the plan says EU"),
    ],
)
def test_admission_refuses_each_mismatch_by_name(
    plan: Plan, node: str, identity: tuple[str, Role, str, str], message: str
) -> None:
    with pytest.raises(AccessDenied, match=message):
        PlanAdmission(plan, node)(who(plan, *identity))


@pytest.mark.parametrize("node", ["paris", "mumbai", "boston", "agg-eu", "agg-in", "agg-br"])
def test_may_send_within_a_jurisdiction_or_as_an_allowed_aggregate(plan: Plan, node: str) -> None:
    require_may_send(plan, node)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ("coordinator", "has no upstream in the plan"),
        ("lyon", "refuses to send to 'agg-in': residency of EU allows sending to EU"),
        ("agg-us", "nothing may leave US for EU"),
        ("austin", "nothing may leave US for EU"),
        ("pune", "aggregate of >= 3 sites with site-level DP may leave IN, never one site"),
        ("rio", "aggregate of >= 1 sites with site-level DP may leave BR, never one site"),
    ],
)
def test_may_send_refuses_by_rule(plan: Plan, node: str, message: str) -> None:
    with pytest.raises(PolicyViolation, match=message):
        require_may_send(plan, node)


def test_export_requirement_takes_the_stricter_k_and_the_dp_clause(plan: Plan) -> None:
    same = export_requirement(plan, "agg-eu")  # stays in EU: its own k, no DP needed
    assert (same.min_sites, same.site_dp) == (2, False)
    crossing = export_requirement(plan, "agg-in")
    assert (crossing.min_sites, crossing.site_dp) == (3, True)
    dp_only = export_requirement(plan, "agg-br")
    assert (dp_only.min_sites, dp_only.site_dp) == (1, True)


@pytest.mark.parametrize(
    ("node", "min_sites", "site_dp", "message"),
    [
        (
            "agg-in",
            2,
            True,
            r"agg\.toml: rounds\.min_sites is 2, but the plan lets 'agg-in' "
            r"export only aggregates of >= 3 sites",
        ),
        (
            "agg-in",
            3,
            False,
            r"agg\.toml: the plan requires site-level DP on what 'agg-in' "
            r"exports; configure \[site_dp\]",
        ),
        ("agg-br", 5, False, r"site-level DP on what 'agg-br'"),
    ],
)
def test_start_up_refuses_settings_that_cannot_export_what_the_plan_permits(
    plan: Plan, node: str, min_sites: int, site_dp: bool, message: str
) -> None:
    with pytest.raises(FedsovError, match=message):
        require_export_settings(
            plan, node, min_sites=min_sites, site_dp=site_dp, source=Path("agg.toml")
        )


@pytest.mark.parametrize(
    ("node", "min_sites", "site_dp"),
    [("agg-in", 3, True), ("agg-in", 4, True), ("agg-eu", 2, False), ("agg-br", 1, True)],
)
def test_start_up_accepts_settings_that_meet_the_plan(
    plan: Plan, node: str, min_sites: int, site_dp: bool
) -> None:
    require_export_settings(plan, node, min_sites=min_sites, site_dp=site_dp, source=Path("a"))
