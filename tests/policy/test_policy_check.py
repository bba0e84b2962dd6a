"""``check_plan``: the consortium passes, each violation scenario fails for its own rule."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov import policy
from fedsov.policy import Violation, check, check_plan, load_plan

WritePlan = Callable[..., Path]
ROOT = Path(__file__).resolve().parents[2]
CONSORTIUM = ROOT / "simulations" / "consortium.toml"
VIOLATIONS = sorted((ROOT / "simulations" / "violations").glob("*.toml"))

EXPORT = """
[policy.residency]
EU = ["EU"]
IN = ["IN", "EU"]

[policy.export]
IN = { min_sites = 2, site_dp = true }

[policy.site_dp]
clip = 1.0
noise_multiplier = 0.5

[policy.budgets]
jurisdiction_epsilon = { IN = 5.0 }
"""

REGION = [
    ("hub", "global", "EU", None),
    ("agg-in", "regional", "IN", "hub"),
    ("mumbai", "edge", "IN", "agg-in"),
    ("delhi", "edge", "IN", "agg-in"),
]


def rules(violations: list[Violation]) -> set[str]:
    return {v.rule for v in violations}


def test_consortium_plan_has_no_violations() -> None:
    assert check_plan(load_plan(CONSORTIUM)) == []


def test_there_are_violation_scenarios() -> None:
    assert len(VIOLATIONS) >= 9


@pytest.mark.parametrize("path", VIOLATIONS, ids=[p.stem for p in VIOLATIONS])
def test_each_violation_scenario_breaks_exactly_its_rule(path: Path) -> None:
    assert path.read_text().startswith(f"# Violates {path.stem}:")
    violations = check_plan(load_plan(path))
    assert violations, f"{path.name} passes the check"
    assert rules(violations) == {path.stem}, violations
    assert all(v.node and v.reason for v in violations)


def test_every_documented_rule_has_a_scenario() -> None:
    documented = {
        line.split("``")[1]
        for line in (check.__doc__ or "").splitlines()
        if line.startswith("- ``")
    }
    assert documented == {p.stem for p in VIOLATIONS}


def test_a_valid_small_region_passes(write_plan: WritePlan) -> None:
    assert check_plan(load_plan(write_plan(REGION, EXPORT))) == []


def test_cycle_names_every_node_in_it(write_plan: WritePlan) -> None:
    nodes = [
        ("hub", "global", "EU", None),
        ("a", "regional", "EU", "c"),
        ("b", "regional", "EU", "a"),
        ("c", "regional", "EU", "b"),
        ("s", "edge", "EU", "a"),
    ]
    found = check_plan(load_plan(write_plan(nodes)))
    assert [v.rule for v in found] == ["cycle"]
    assert all(name in found[0].reason for name in ("a", "b", "c"))
    assert "s" not in found[0].reason.split(" -> ")


def test_a_node_that_is_its_own_upstream_is_a_cycle(write_plan: WritePlan) -> None:
    nodes = [("hub", "global", "EU", None), ("a", "regional", "EU", "a")]
    found = check_plan(load_plan(write_plan(nodes)))
    assert found == [Violation("a", "cycle", "a -> a loops")]


@pytest.mark.parametrize(
    ("nodes", "reason"),
    [
        ([("a", "regional", "EU", None)], "no global node"),
        ([("hub", "global", "EU", "agg"), ("agg", "regional", "EU", None)], "has an upstream"),
    ],
)
def test_global_count(write_plan: WritePlan, nodes: list[tuple[str, ...]], reason: str) -> None:
    found = [v for v in check_plan(load_plan(write_plan(nodes))) if v.rule == "global-count"]
    assert len(found) == 1 and reason in found[0].reason


def test_nothing_may_report_to_an_edge_site(write_plan: WritePlan) -> None:
    nodes = [*REGION, ("agg-x", "regional", "IN", "mumbai")]
    found = check_plan(load_plan(write_plan(nodes, EXPORT)))
    assert found[0].node == "agg-x" and rules(found) == {"tier-order"}


def test_a_site_exports_its_own_update_only_under_a_k1_rule_without_dp(
    write_plan: WritePlan,
) -> None:
    nodes = [("hub", "global", "EU", None), ("pune", "edge", "IN", "hub")]
    residency = '[policy.residency]\nIN = ["EU"]\n'
    loose = residency + "[policy.export]\nIN = { min_sites = 1 }\n"
    loose += "[policy.budgets]\njurisdiction_epsilon = { IN = 1.0 }\n"
    assert check_plan(load_plan(write_plan(nodes, loose))) == []
    for rule in ("{ min_sites = 2 }", "{ site_dp = true }", "{ allow = false }"):
        strict = residency + f"[policy.export]\nIN = {rule}\n"
        strict += "[policy.site_dp]\nclip = 1.0\nnoise_multiplier = 1.0\n"
        strict += "[policy.budgets]\njurisdiction_epsilon = { IN = 1.0 }\n"
        found = check_plan(load_plan(write_plan(nodes, strict)))
        assert [(v.node, v.rule) for v in found] == [("pune", "export-forbidden")], rule


def test_no_export_rule_means_nothing_leaves(write_plan: WritePlan) -> None:
    policy = EXPORT.replace("IN = { min_sites = 2, site_dp = true }", "")
    found = check_plan(load_plan(write_plan(REGION, policy)))
    assert [(v.node, v.rule) for v in found] == [("agg-in", "export-forbidden")]
    assert "nothing may leave IN" in found[0].reason


def test_site_dp_without_noise_is_missing_dp(write_plan: WritePlan) -> None:
    policy = EXPORT.replace("noise_multiplier = 0.5", "noise_multiplier = 0.0")
    found = check_plan(load_plan(write_plan(REGION, policy)))
    assert [(v.node, v.rule) for v in found] == [("agg-in", "export-dp-missing")]


def test_export_k_counts_sites_in_nested_regions(write_plan: WritePlan) -> None:
    nodes = [
        ("hub", "global", "EU", None),
        ("agg-in", "regional", "IN", "hub"),
        ("agg-south", "regional", "IN", "agg-in"),
        ("chennai", "edge", "IN", "agg-south"),
        ("mumbai", "edge", "IN", "agg-in"),
    ]
    assert check_plan(load_plan(write_plan(nodes, EXPORT))) == []
    found = check_plan(load_plan(write_plan(nodes[:-1], EXPORT)))
    assert [(v.node, v.rule) for v in found] == [("agg-in", "export-k-unreachable")]


def test_own_min_sites_below_and_above_the_cohort(write_plan: WritePlan) -> None:
    def check_with(min_sites: str) -> list[tuple[str, str]]:
        extra = {"agg-in": {"min_sites": min_sites}}
        found = check_plan(load_plan(write_plan(REGION, EXPORT, extra=extra)))
        return [(v.node, v.rule) for v in found]

    assert check_with("1") == [("agg-in", "export-k-below")]
    assert check_with("2") == []
    assert check_with("3") == [("agg-in", "min-sites-unreachable")]


def test_budget_missing_only_for_jurisdictions_that_export(write_plan: WritePlan) -> None:
    policy = EXPORT.replace("jurisdiction_epsilon = { IN = 5.0 }", "")
    found = check_plan(load_plan(write_plan(REGION, policy)))
    assert found == [
        Violation(
            "IN", "budget-missing", "IN exports aggregates but has no jurisdiction_epsilon budget"
        )
    ]


def test_sovereignty_is_not_judged_on_a_broken_topology(write_plan: WritePlan) -> None:
    nodes = [*REGION, ("orphan", "edge", "US", "agg-us")]  # also: US exports nothing
    found = check_plan(load_plan(write_plan(nodes, EXPORT)))
    assert [(v.node, v.rule) for v in found] == [("orphan", "unknown-upstream")]


def test_violations_are_ordered_the_same_whatever_the_node_order(write_plan: WritePlan) -> None:
    nodes = [
        ("hub", "global", "EU", None),
        ("hub2", "global", "EU", None),
        ("agg-in", "regional", "IN", "hub"),
        ("agg-us", "regional", "US", "hub"),
        ("x", "edge", "IN", "agg-in"),
        ("y", "edge", "US", "agg-us"),
        ("z", "edge", "EU", None),
    ]
    first = check_plan(load_plan(write_plan(nodes, EXPORT, name="a.toml")))
    second = check_plan(load_plan(write_plan(nodes[::-1], EXPORT, name="b.toml")))
    assert first == second
    assert first == sorted(first, key=lambda v: (v.rule, v.node, v.reason))
    assert rules(first) >= {"global-count", "missing-upstream", "export-forbidden"}


def test_public_api_is_sorted_and_complete() -> None:
    assert policy.__all__ == sorted(policy.__all__)
    for module in (policy.plan, policy.check):
        public = {
            name
            for name, value in vars(module).items()
            if not name.startswith("_")
            and (inspect.isclass(value) or inspect.isfunction(value))
            and value.__module__ == module.__name__
        }
        assert public <= set(policy.__all__), module.__name__
