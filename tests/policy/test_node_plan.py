"""``load_node_plan``: the plan a node starts with must name that node and its federation."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.exceptions import ConfigError
from fedsov.policy.runtime import load_node_plan

WritePlan = Callable[..., Path]

NODES = [
    ("hub", "global", "EU", None),
    ("agg", "regional", "EU", "hub"),
    ("paris", "edge", "EU", "agg"),
]


def test_without_a_node_the_plan_must_have_its_global_node(write_plan: WritePlan) -> None:
    path = write_plan(NODES)
    plan = load_node_plan(path, None)
    assert plan.source == path and plan.federation == "test-fed"
    assert [n.name for n in plan.nodes] == ["hub", "agg", "paris"]
    assert plan.global_node.name == "hub"


def test_without_a_node_a_plan_with_no_global_node_is_refused(write_plan: WritePlan) -> None:
    path = write_plan(NODES[1:])
    with pytest.raises(ConfigError, match="the plan needs exactly one global node"):
        load_node_plan(path, None)


@pytest.mark.parametrize("node", ["hub", "agg", "paris"])
def test_a_named_node_of_the_plan_loads_it(write_plan: WritePlan, node: str) -> None:
    assert load_node_plan(write_plan(NODES), node).node(node).name == node


def test_a_node_missing_from_the_plan_is_named(write_plan: WritePlan) -> None:
    path = write_plan(NODES)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: no node 'lyon' in the plan")):
        load_node_plan(path, "lyon")


def test_a_matching_federation_loads(write_plan: WritePlan) -> None:
    plan = load_node_plan(write_plan(NODES), "paris", federation="test-fed")
    assert plan.federation == "test-fed"


def test_a_federation_mismatch_names_both_federations(write_plan: WritePlan) -> None:
    path = write_plan(NODES)
    message = f"{path}: the plan is for federation 'test-fed', this node's config says 'other-fed'"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        load_node_plan(path, "agg", federation="other-fed")


def test_an_unreadable_plan_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match=re.escape(f"{path}: cannot read plan")):
        load_node_plan(path, "hub")
