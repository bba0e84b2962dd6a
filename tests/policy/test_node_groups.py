"""``[[node_groups]]``: many alike nodes in one table, expanded when the plan loads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.exceptions import AccessDenied, ConfigError
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.policy import Tier, check_plan, load_plan
from fedsov.policy.runtime import PlanAdmission, load_node_plan

WritePlan = Callable[..., Path]

HEAD = """\
[federation]
name = "groups"

[model]
factory = "fedsov.simulation.models:logistic"

[rounds]
num_rounds = 2

[[nodes]]
name = "hub"
tier = "global"
jurisdiction = "EU"

[[nodes]]
name = "agg-eu"
tier = "regional"
jurisdiction = "EU"
upstream = "hub"
"""


def group(prefix: str, count: int, upstream: str = "agg-eu", **extra: str) -> str:
    lines = [
        "[[node_groups]]",
        f'prefix = "{prefix}"',
        f"count = {count}",
        'tier = "edge"',
        'jurisdiction = "EU"',
        f'upstream = "{upstream}"',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def write(tmp_path: Path, *tables: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEAD, *tables]))
    return path


def test_a_group_expands_after_the_nodes_with_zero_padded_names(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, group("eu1", 100), group("eu2", 3)))
    names = [n.name for n in plan.nodes]
    assert names[:2] == ["hub", "agg-eu"]
    assert names[2:5] == ["eu1-001", "eu1-002", "eu1-003"]
    assert names[101] == "eu1-100"
    assert names[102:] == ["eu2-1", "eu2-2", "eu2-3"]
    assert len(plan.nodes) == 105
    site = plan.node("eu1-042")
    assert (site.tier, site.jurisdiction, site.upstream, site.dp) == (
        Tier.EDGE,
        "EU",
        "agg-eu",
        "sample",
    )


@pytest.mark.parametrize(("count", "first", "last"), [(9, "s-1", "s-9"), (10, "s-01", "s-10")])
def test_names_are_padded_to_the_width_of_count(
    tmp_path: Path, count: int, first: str, last: str
) -> None:
    plan = load_plan(write(tmp_path, group("s", count)))
    edges = [n.name for n in plan.nodes if n.tier is Tier.EDGE]
    assert (edges[0], edges[-1], len(edges)) == (first, last, count)


def test_a_group_is_the_same_plan_as_its_nodes_written_out(tmp_path: Path) -> None:
    grouped = load_plan(write(tmp_path, group("eu1", 12, dp='"update"'), name="a.toml"))
    written = "".join(
        f'[[nodes]]\nname = "eu1-{i:02d}"\ntier = "edge"\njurisdiction = "EU"\n'
        f'upstream = "agg-eu"\ndp = "update"\n'
        for i in range(1, 13)
    )
    plain = load_plan(write(tmp_path, written, name="b.toml"))
    assert grouped.nodes == plain.nodes
    assert grouped.children("agg-eu") == plain.children("agg-eu")


def test_the_plan_hash_is_still_the_file_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, group("eu1", 5))
    assert load_plan(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_group_of_regional_aggregators_keeps_its_min_sites(tmp_path: Path) -> None:
    regions = (
        '[[node_groups]]\nprefix = "agg"\ncount = 2\ntier = "regional"\n'
        'jurisdiction = "EU"\nupstream = "hub"\nmin_sites = 2\n'
    )
    sites = group("a", 3, upstream="agg-1") + group("b", 3, upstream="agg-2")
    plan = load_plan(write(tmp_path, regions, sites))
    assert plan.node("agg-2").min_sites == 2
    assert [n.name for n in plan.edges_under("agg-2")] == ["b-1", "b-2", "b-3"]
    assert check_plan(plan) == []


def test_a_name_that_clashes_with_a_node_names_the_group(tmp_path: Path) -> None:
    clash = '[[nodes]]\nname = "eu1-2"\ntier = "edge"\njurisdiction = "EU"\nupstream = "agg-eu"\n'
    path = write(tmp_path, clash, group("eu1", 3))
    with pytest.raises(ConfigError) as caught:
        load_plan(path)
    assert str(caught.value) == (
        f"{path}: node_groups[0].prefix: group 'eu1' expands to 'eu1-2', which a [[nodes]] "
        "entry declares too: choose another prefix"
    )


def test_two_groups_with_one_prefix_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, group("eu1", 3), group("eu1", 5))
    with pytest.raises(ConfigError, match=r"node_groups\[1\]\.prefix: group 'eu1' expands to "):
        load_plan(path)
    with pytest.raises(ConfigError, match=r"node group 'eu1' \(node_groups\[0\]\) declares too"):
        load_plan(path)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (group("eu1", 0), r"node_groups\[0\]\.count: must be >= 1, got 0"),
        (group("eu1", 100_001), r"node_groups\[0\]\.count: must be <= 100000, got 100001"),
        (group("EU1", 3), r"node_groups\[0\]\.prefix: invalid node name 'EU1'"),
        (group("x" * 62, 10), r"node_groups\[0\]\.prefix: expands to names like 'x+-10'"),
        (group("eu1", 3, colour='"red"'), r"unknown key 'colour'"),
        (group("eu1", 3).replace('tier = "edge"\n', ""), r"node_groups\[0\]\.tier: is required"),
    ],
)
def test_a_bad_group_is_refused_naming_its_key(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_plan(write(tmp_path, table))


def test_the_largest_group_loads(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, group("s", 100_000)))
    assert plan.nodes[-1].name == "s-100000"
    assert len(plan.children("agg-eu")) == 100_000


def test_policy_check_judges_expanded_nodes(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, group("eu1", 3, upstream="nowhere")))
    found = {(v.node, v.rule) for v in check_plan(plan)}
    assert found == {(f"eu1-{i}", "unknown-upstream") for i in (1, 2, 3)}


def test_lookups_by_name_and_upstream(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, group("eu1", 20)))
    assert plan.find("eu1-07") is plan.node("eu1-07")
    assert plan.find("eu1-21") is None
    with pytest.raises(ConfigError, match="no node 'eu1-21' in the plan"):
        plan.node("eu1-21")
    assert [n.name for n in plan.children("hub")] == ["agg-eu"]
    assert len(plan.children("agg-eu")) == 20 and plan.children("eu1-01") == ()
    assert len(plan.edges_under("hub")) == 20


def test_every_node_of_a_group_loads_its_plan_and_is_admitted(tmp_path: Path) -> None:
    path = write(tmp_path, group("eu1", 30))
    plans = [load_node_plan(path, f"eu1-{i:02d}") for i in range(1, 31)]
    assert all(p == plans[0] for p in plans)
    with pytest.raises(ConfigError, match="no node 'eu1-31'"):
        load_node_plan(path, "eu1-31")
    PlanAdmission(plans[0], "agg-eu")(NodeIdentity("eu1-30", Role.site, "EU", "groups"))
    with pytest.raises(AccessDenied, match="reports to 'agg-eu' in the plan, not to 'hub'"):
        PlanAdmission(plans[0], "hub")(NodeIdentity("eu1-30", Role.site, "EU", "groups"))
    with pytest.raises(AccessDenied, match="is not a node of plan"):
        PlanAdmission(plans[0], "agg-eu")(NodeIdentity("eu1-31", Role.site, "EU", "groups"))


def test_a_plan_file_changed_on_disk_is_read_again(tmp_path: Path) -> None:
    path = write(tmp_path, group("eu1", 3))
    first = load_plan(path)
    assert load_plan(path) is first  # the same bytes: validated once
    path.write_text(path.read_text().replace("count = 3", "count = 4"))
    second = load_plan(path)
    assert len(second.nodes) == len(first.nodes) + 1
    assert second.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() != first.sha256
