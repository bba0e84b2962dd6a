"""``check_plan``'s findings, word for word: each names the node to fix and what to fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedsov.policy import Violation, check_plan, load_plan

WritePlan = Callable[..., Path]

REGION = [
    ("hub", "global", "EU", None),
    ("agg-in", "regional", "IN", "hub"),
    ("mumbai", "edge", "IN", "agg-in"),
    ("delhi", "edge", "IN", "agg-in"),
]
RESIDENCY = '[policy.residency]\nIN = ["IN", "EU"]\nUS = ["US", "EU"]\n'
DP = "[policy.site_dp]\nclip = 1.0\nnoise_multiplier = 0.5\n"
BUDGET = "[policy.budgets]\njurisdiction_epsilon = { IN = 5.0 }\n"


def policy(export: str = "IN = { min_sites = 2, site_dp = true }", *, dp: str = DP) -> str:
    return RESIDENCY + f"[policy.export]\n{export}\n" + dp + BUDGET


def check(write_plan: WritePlan, nodes: list[tuple[str, ...]], text: str = "") -> list[Violation]:
    return check_plan(load_plan(write_plan(nodes, text)))


def test_a_plan_without_a_global_node_is_reported_on_the_plan(write_plan: WritePlan) -> None:
    found = check(write_plan, [("agg", "regional", "EU", None)])
    assert found == [
        Violation("(plan)", "global-count", "no global node; a plan needs exactly 1"),
        Violation("agg", "missing-upstream", "no upstream; every regional node needs one"),
    ]


def test_each_of_several_global_nodes_is_named_with_all_of_them(write_plan: WritePlan) -> None:
    nodes = [
        ("hub", "global", "EU", None),
        ("hub2", "global", "EU", None),
        ("agg", "regional", "EU", "hub"),
    ]
    reason = "2 global nodes (hub, hub2); a plan needs exactly 1"
    assert check(write_plan, nodes) == [
        Violation("hub", "global-count", reason),
        Violation("hub2", "global-count", reason),
    ]


def test_a_global_node_with_an_upstream_is_named(write_plan: WritePlan) -> None:
    nodes = [("hub", "global", "EU", "agg"), ("agg", "regional", "EU", None)]
    assert check(write_plan, nodes) == [
        Violation("hub", "global-count", "the global node has an upstream"),
        Violation("agg", "missing-upstream", "no upstream; every regional node needs one"),
    ]


def test_export_forbidden_names_the_crossing_and_the_upstream(write_plan: WritePlan) -> None:
    found = check(write_plan, REGION, policy(export=""))
    assert found == [
        Violation("agg-in", "export-forbidden", "nothing may leave IN (IN -> EU via hub)")
    ]


def test_a_single_site_crossing_names_k_and_the_dp_clause(write_plan: WritePlan) -> None:
    nodes = [("hub", "global", "EU", None), ("pune", "edge", "IN", "hub")]
    crossing = "a single site's update would cross IN -> EU; IN exports only aggregates of >= "
    assert check(write_plan, nodes, policy("IN = { min_sites = 2 }")) == [
        Violation("pune", "export-forbidden", crossing + "2 sites")
    ]
    assert check(write_plan, nodes, policy("IN = { site_dp = true }")) == [
        Violation("pune", "export-forbidden", crossing + "1 sites with site-level DP")
    ]


def test_a_site_that_may_export_does_not_end_the_check(write_plan: WritePlan) -> None:
    nodes = [
        ("hub", "global", "EU", None),
        ("pune", "edge", "IN", "hub"),  # k = 1, no DP: its own update may leave IN
        ("agg-us", "regional", "US", "hub"),  # US has no export rule
    ]
    assert check(write_plan, nodes, policy("IN = { min_sites = 1 }")) == [
        Violation("agg-us", "export-forbidden", "nothing may leave US (US -> EU via hub)")
    ]


def test_export_k_below_says_what_would_happen(write_plan: WritePlan) -> None:
    path = write_plan(REGION, policy(), extra={"agg-in": {"min_sites": "1"}})
    assert check_plan(load_plan(path)) == [
        Violation(
            "agg-in",
            "export-k-below",
            "its min_sites = 1 is below IN's export k = 2: rounds of fewer than 2 sites "
            "would train and then never be exported",
        )
    ]


def test_export_dp_missing_says_what_to_add_or_change(write_plan: WritePlan) -> None:
    missing = check(write_plan, REGION, policy(dp=""))
    assert missing == [
        Violation(
            "agg-in",
            "export-dp-missing",
            "IN exports only with site-level DP; add [policy.site_dp]",
        )
    ]
    silent = check(write_plan, REGION, policy(dp=DP.replace("0.5", "0.0")))
    assert silent == [
        Violation(
            "agg-in",
            "export-dp-missing",
            "IN exports only with site-level DP; its noise_multiplier is 0",
        )
    ]


def test_an_unknown_upstream_alone_holds_back_the_sovereignty_findings(
    write_plan: WritePlan,
) -> None:
    nodes = [*REGION, ("orphan", "edge", "IN", "agg-x")]
    # Without the orphan, IN exporting with no rule would be export-forbidden.
    assert [v.rule for v in check(write_plan, REGION, policy(export=""))] == ["export-forbidden"]
    assert check(write_plan, nodes, policy(export="")) == [
        Violation("orphan", "unknown-upstream", "upstream 'agg-x' is no node")
    ]
