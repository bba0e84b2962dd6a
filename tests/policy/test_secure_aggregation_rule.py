"""``[policy.secure_aggregation]``: the plan table, the ``secure_aggregation`` rule before
launch, ``Plan.secure_aggregation_for`` and the start-up requirement on a node's config."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.config import SecureAggregationSettings
from fedsov.exceptions import ConfigError, FedsovError, PolicyViolation
from fedsov.policy import check_plan, load_plan
from fedsov.policy.plan import Plan
from fedsov.policy.rules.base import Crossing
from fedsov.policy.rules.secure_aggregation import RULE, SecureCrossing
from fedsov.policy.runtime import (
    export_requirement,
    require_export_settings,
    require_secure_aggregation,
)

WritePlan = Callable[..., Path]
SIMULATIONS = Path(__file__).resolve().parents[2] / "simulations"
SCENARIO = SIMULATIONS / "consortium-secagg.toml"

NODES = [
    ("hub", "global", "EU", None),
    ("agg-eu", "regional", "EU", "hub"),
    ("agg-in", "regional", "IN", "hub"),
    ("paris", "edge", "EU", "agg-eu"),
    ("berlin", "edge", "EU", "agg-eu"),
    ("milan", "edge", "EU", "agg-eu"),
    ("pune", "edge", "IN", "agg-in"),
    ("delhi", "edge", "IN", "agg-in"),
    ("zurich", "edge", "CH", "hub"),  # a site directly below the coordinator
]


def secure_policy(body: str) -> str:
    return f"\n[policy.secure_aggregation]\n{body}\n"


def plan_with(
    write_plan: WritePlan, body: str, nodes: list[tuple[str, str, str, str | None]] = NODES
) -> Plan:
    return load_plan(write_plan(nodes, secure_policy(body)))


# The plan table


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'jurisdictions = ["IN"]\nthreshhold = 3',
            r"\[policy\.secure_aggregation\]: unknown key 'threshhold' \(did you mean",
        ),
        ('jurisdictions = ["FR"]', r"policy\.secure_aggregation\.jurisdictions: no node .* 'FR'"),
        ('jurisdictions = ["in"]', r"policy\.secure_aggregation\.jurisdictions: invalid juris"),
        ('nodes = ["ghost"]', r"policy\.secure_aggregation\.nodes: 'ghost' is not a node"),
        ('nodes = ["pune"]', r"policy\.secure_aggregation\.nodes: 'pune' is an edge site"),
        ('nodes = ["Agg!"]', r"policy\.secure_aggregation\.nodes: invalid node name"),
        ('nodes = ["agg-in"]\nthreshold = 1', r"secure_aggregation\.threshold: must be >= 2"),
        ('nodes = ["agg-in"]\nthreshold = 2.5', r"policy\.secure_aggregation\.threshold: must be"),
        ('nodes = ["agg-in"]\nclip = 0', r"policy\.secure_aggregation\.clip: must be > 0"),
        ('nodes = ["agg-in"]\nprecision_bits = 4', r"policy\.secure_aggregation\.precision_bits"),
        ("threshold = 3", r"policy\.secure_aggregation\.jurisdictions: names no jurisdiction"),
    ],
)
def test_table_errors_name_file_and_key(write_plan: WritePlan, body: str, message: str) -> None:
    path = write_plan(NODES, secure_policy(body))
    with pytest.raises(ConfigError, match=message) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: ")


def test_without_the_table_no_node_must_securely_aggregate(write_plan: WritePlan) -> None:
    plan = load_plan(write_plan(NODES))
    assert plan.policy.secure_aggregation is None
    assert all(plan.secure_aggregation_for(n.name) is None for n in plan.nodes)


# Plan.secure_aggregation_for


def test_a_jurisdiction_binds_its_nodes_that_serve_sites_directly(write_plan: WritePlan) -> None:
    plan = plan_with(write_plan, 'jurisdictions = ["EU", "IN"]\nthreshold = 2')
    bound = {n.name for n in plan.nodes if plan.secure_aggregation_for(n.name) is not None}
    assert bound == {"agg-eu", "agg-in", "hub"}  # hub: zurich reports to it directly
    assert plan.secure_aggregation_for("agg-in") == SecureAggregationSettings(threshold=2)
    assert plan.secure_aggregation_for("pune") is None  # a site never aggregates
    with pytest.raises(ConfigError, match="no node 'ghost'"):
        plan.secure_aggregation_for("ghost")


def test_a_coordinator_of_aggregators_only_is_not_bound_by_its_jurisdiction(
    write_plan: WritePlan,
) -> None:
    nodes = [n for n in NODES if n[0] != "zurich"]
    plan = plan_with(write_plan, 'jurisdictions = ["EU"]', nodes)
    assert plan.secure_aggregation_for("hub") is None
    assert plan.secure_aggregation_for("agg-eu") is not None
    assert plan.secure_aggregation_for("agg-in") is None  # IN is not listed


def test_named_nodes_get_the_plans_settings(write_plan: WritePlan) -> None:
    body = 'nodes = ["agg-in"]\nthreshold = 2\nneighbours = 1\nclip = 2.5\nstage_timeout_s = 5'
    plan = plan_with(write_plan, body)
    assert plan.secure_aggregation_for("agg-in") == SecureAggregationSettings(
        threshold=2, neighbours=1, precision_bits=24, clip=2.5, stage_timeout_s=5.0
    )
    assert plan.secure_aggregation_for("agg-eu") is None


def test_the_scenario_binds_every_regional_aggregator() -> None:
    plan = load_plan(SCENARIO)
    bound = {n.name: plan.secure_aggregation_for(n.name) for n in plan.nodes}
    assert {name for name, s in bound.items() if s is not None} == {"agg-eu", "agg-in", "agg-us"}
    assert all(s.threshold == 2 for s in bound.values() if s is not None)
    assert plan.rounds.num_rounds == 5
    assert check_plan(plan) == []


# The rule, before launch


def test_a_node_with_fewer_sites_than_the_threshold_is_a_violation(write_plan: WritePlan) -> None:
    plan = plan_with(write_plan, 'jurisdictions = ["EU", "IN"]\nthreshold = 3')
    found = [v for v in check_plan(plan) if v.rule.startswith("secure-aggregation")]
    assert {(v.node, v.rule) for v in found} == {
        ("agg-in", "secure-aggregation-unreachable"),
        ("hub", "secure-aggregation-unreachable"),
        ("hub", "secure-aggregation-participants"),
    }
    [agg_in] = [v for v in found if v.node == "agg-in"]
    assert "lists IN, with threshold t = 3, but only 2 edge site(s)" in agg_in.reason
    assert "lower policy.secure_aggregation.threshold to 2" in agg_in.reason
    assert "take IN out of policy.secure_aggregation.jurisdictions" in agg_in.reason
    [hub] = [v for v in found if v.rule == "secure-aggregation-unreachable" and v.node == "hub"]
    assert "only 1 edge site(s)" in hub.reason and "lower" not in hub.reason  # t >= 2
    [mixed] = [v for v in found if v.rule == "secure-aggregation-participants"]
    assert "agg-eu, agg-in report(s) to it too: only edge sites" in mixed.reason


def test_a_named_node_is_told_to_leave_nodes(write_plan: WritePlan) -> None:
    plan = plan_with(write_plan, 'nodes = ["agg-in"]\nthreshold = 3')
    [v] = [v for v in check_plan(plan) if v.rule.startswith("secure-aggregation")]
    assert (v.node, v.rule) == ("agg-in", "secure-aggregation-unreachable")
    assert "[policy.secure_aggregation] names it" in v.reason
    assert "take agg-in out of policy.secure_aggregation.nodes" in v.reason


def test_the_scenario_with_threshold_5_is_rejected_in_every_region(tmp_path: Path) -> None:
    text = SCENARIO.read_text()
    assert text.count("threshold = 2\n") == 1
    path = tmp_path / "t5.toml"
    path.write_text(text.replace("threshold = 2\n", "threshold = 5\n"))
    found = check_plan(load_plan(path))
    assert [(v.node, v.rule) for v in found] == [
        (node, "secure-aggregation-unreachable") for node in ("agg-eu", "agg-in", "agg-us")
    ]
    assert "only 4 edge site(s)" in found[0].reason


# At start-up


def test_its_rounds_need_at_least_t_sites(write_plan: WritePlan, tmp_path: Path) -> None:
    plan = plan_with(write_plan, 'jurisdictions = ["EU"]\nthreshold = 3')
    assert export_requirement(plan, "agg-eu").min_sites == 3
    assert export_requirement(plan, "agg-in").min_sites == 1
    with pytest.raises(FedsovError, match=r"rounds\.min_sites is 2, .* >= 3 sites"):
        require_export_settings(plan, "agg-eu", min_sites=2, site_dp=False, source=tmp_path)


@pytest.mark.parametrize(
    ("t", "configured", "message"),
    [
        (2, None, r"requires 'agg-in' to securely aggregate .* configure \[secure_aggregation\]"),
        (3, SecureAggregationSettings(threshold=2), r"threshold: is 2, but the plan requires"),
        (3, SecureAggregationSettings(), r"threshold: is 0 \(auto.*set threshold = 3"),
    ],
)
def test_a_bound_node_refuses_to_start_without_the_plans_secure_aggregation(
    write_plan: WritePlan,
    tmp_path: Path,
    t: int,
    configured: SecureAggregationSettings | None,
    message: str,
) -> None:
    plan = plan_with(write_plan, f'nodes = ["agg-in"]\nthreshold = {t}')
    config = tmp_path / "agg-in.toml"
    with pytest.raises(PolicyViolation, match=message) as info:
        require_secure_aggregation(plan, "agg-in", configured, source=config)
    assert str(info.value).startswith(f"{config}: ")


def test_a_bound_node_with_enough_starts(write_plan: WritePlan, tmp_path: Path) -> None:
    plan = plan_with(write_plan, 'nodes = ["agg-in"]\nthreshold = 2')
    for ok in (SecureAggregationSettings(), SecureAggregationSettings(threshold=2)):
        require_secure_aggregation(plan, "agg-in", ok, source=tmp_path)  # auto: t >= 2
    strict = plan_with(write_plan, 'nodes = ["agg-in"]\nthreshold = 3')
    require_secure_aggregation(
        strict, "agg-in", SecureAggregationSettings(threshold=4), source=tmp_path
    )
    require_secure_aggregation(strict, "agg-eu", None, source=tmp_path)  # not bound


# After the fact (the compliance report builds SecureCrossings from the ledgers)


def crossing(sender: str, receiver: str = "hub", **secure: object) -> Crossing:
    j = {"agg-in": "IN", "zurich": "CH", "agg-eu": "EU"}[sender]
    fields = (sender, j, receiver, "EU", 2, ("pune", "delhi"), {"level": "none"})
    return SecureCrossing(*fields, **secure) if secure else Crossing(*fields)


def test_the_judge_of_a_recorded_crossing(write_plan: WritePlan) -> None:
    plan = plan_with(write_plan, 'jurisdictions = ["IN"]\nnodes = ["hub"]\nthreshold = 3')

    def judge(c: Crossing) -> list[str]:
        return list(RULE.judge(plan, c))

    assert judge(crossing("agg-in", secure_aggregate=True, secure_threshold=3)) == []
    [missing] = judge(crossing("agg-in", secure_aggregate=False))
    assert missing == (
        "the plan requires agg-in to securely aggregate (threshold >= 3), but agg-in's "
        "ledger records no completed secure aggregate of this round"
    )
    [low] = judge(crossing("agg-in", secure_aggregate=True, secure_threshold=2))
    assert low.endswith("but the round's secure aggregate had threshold 2")
    [unknown] = judge(crossing("agg-in", secure_aggregate=None))
    assert unknown.endswith("nothing here shows a secure aggregate (agg-in's ledger is missing)")
    assert judge(crossing("agg-in")) == [unknown]  # a plain Crossing records nothing
    # a site's own update is judged by the node that must sum it securely: its upstream
    [site] = judge(crossing("zurich", secure_aggregate=False))
    assert site.startswith("the plan requires hub to securely aggregate")
    assert judge(crossing("agg-eu", secure_aggregate=False)) == []  # EU is not bound
