"""What the compliance report's judges say of one recorded crossing, rule by rule."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from fedsov.exceptions import ConfigError
from fedsov.policy import Plan, load_plan
from fedsov.policy.rules.base import Crossing
from fedsov.policy.rules.export_k import RULE as EXPORT_K
from fedsov.policy.rules.export_k import at_least
from fedsov.policy.rules.residency import RULE as RESIDENCY
from fedsov.policy.rules.site_dp import RULE as SITE_DP
from fedsov.policy.rules.site_dp import has_site_dp
from fedsov.privacy.opacus_accountants import ClassicRDPAccountant

NODES = [
    ("hub", "global", "EU", None),
    ("agg-in", "regional", "IN", "hub"),
    ("mumbai", "edge", "IN", "agg-in"),
]
POLICY = """
[policy.residency]
IN = ["IN", "EU", "US"]

[policy.export]
IN = { min_sites = 3, site_dp = true }

[policy.site_dp]
clip = 1.0
noise_multiplier = 1.0
"""


@pytest.fixture
def plan(write_plan: Callable[..., Path]) -> Plan:
    return load_plan(write_plan(NODES, POLICY))


def crossing(
    *,
    sites: int | None = 3,
    contributors: tuple[str, ...] = ("a", "b", "c"),
    dp: Mapping[str, Any] | None = None,
    to: str | None = "EU",
) -> Crossing:
    return Crossing("agg-in", "IN", "hub", to, sites, contributors, dp)


@pytest.mark.parametrize(
    ("dp", "expected"),
    [
        (None, False),
        ({}, False),
        ({"level": "sample", "noise_multiplier": 1.0}, False),
        ({"level": "site"}, True),  # z not recorded: the level says it
        ({"level": "site", "noise_multiplier": 0.5}, True),
        ({"level": "site", "noise_multiplier": 0}, False),
        ({"level": "site", "noise_multiplier": -1.0}, False),
        ({"level": "site", "noise_multiplier": "1.0"}, False),
    ],
)
def test_site_level_dp_is_a_site_level_with_noise(
    dp: Mapping[str, Any] | None, expected: bool
) -> None:
    assert has_site_dp(dp) is expected


@pytest.mark.parametrize(
    ("dp", "found"),
    [
        (None, ["IN exports need site-level DP; this update had 'none'"]),
        ({"level": "sample"}, ["IN exports need site-level DP; this update had 'sample'"]),
        ({"level": "site", "noise_multiplier": 0.0}, ["this update had 'site'"]),
        ({"level": "site", "noise_multiplier": 1.2}, []),
    ],
)
def test_the_site_dp_judge_names_the_level_it_saw(
    plan: Plan, dp: Mapping[str, Any] | None, found: list[str]
) -> None:
    said = list(SITE_DP.judge(plan, crossing(dp=dp)))
    assert len(said) == len(found)
    for text, part in zip(said, found, strict=True):
        assert part in text


@pytest.mark.parametrize(
    ("n", "k", "ok"),
    [(None, 1, True), (None, 0, True), (None, 2, False), (3, 3, True), (2, 3, False), (4, 3, True)],
)
def test_at_least_k_sites(n: int | None, k: int, ok: bool) -> None:
    assert at_least(n, k) is ok


def test_the_export_k_judge_says_what_it_found(plan: Plan) -> None:
    assert list(EXPORT_K.judge(plan, crossing())) == []
    assert list(EXPORT_K.judge(plan, crossing(sites=None, contributors=()))) == [
        "the number of sites is not recorded; IN exports need >= 3"
    ]
    assert list(EXPORT_K.judge(plan, crossing(sites=2, contributors=("a", "b")))) == [
        "an aggregate of 2 site(s) crossed; IN exports need >= 3"
    ]
    assert list(EXPORT_K.judge(plan, crossing(sites=3, contributors=("a", "a", "b")))) == [
        "3 site(s) recorded, but only 2 contributors"
    ]


def test_the_residency_judge_names_where_it_went(plan: Plan) -> None:
    assert list(RESIDENCY.judge(plan, crossing(to="EU"))) == []
    assert list(RESIDENCY.judge(plan, crossing(to="BR"))) == [
        "the residency of IN allows EU, IN, US, not BR"
    ]
    assert list(RESIDENCY.judge(plan, crossing(to=None))) == [
        "the residency of IN allows EU, IN, US, not an unknown jurisdiction"
    ]


def test_an_export_rule_that_is_not_a_table_is_refused(
    write_plan: Callable[..., Path],
) -> None:
    path = write_plan(NODES, "[policy.export]\nIN = 3\n")
    with pytest.raises(ConfigError, match=r"policy\.export\.IN"):
        load_plan(path)


def test_classic_rdp_of_nothing_is_zero() -> None:
    assert ClassicRDPAccountant().get_privacy_spent(delta=1e-5) == (0.0, 0.0)


def test_site_dp_is_asked_of_regional_exports_only(write_plan: Callable[..., Path]) -> None:
    """An edge crossing (the export rule's own concern) is skipped, and so is a link whose
    rule forbids export; the regional export after them is still checked."""
    nodes = [
        ("hub", "global", "EU", None),
        ("pune", "edge", "IN", "hub"),  # one site's update across the border
        ("austin", "edge", "US", "agg-us"),
        ("agg-us", "regional", "US", "hub"),  # US may not export at all
        ("agg-in", "regional", "IN", "hub"),
        ("mumbai", "edge", "IN", "agg-in"),
    ]
    policy = """
[policy.residency]
IN = ["IN", "EU"]
US = ["US", "EU"]

[policy.export]
IN = { min_sites = 1, site_dp = true }
US = { allow = false, site_dp = true }
"""
    plan = load_plan(write_plan(nodes, policy))
    assert [(v.node, v.rule) for v in SITE_DP.check(plan)] == [("agg-in", "export-dp-missing")]
