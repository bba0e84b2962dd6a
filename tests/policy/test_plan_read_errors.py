"""A plan that cannot be read, or lacks a section, is refused with the file and what to fix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.exceptions import ConfigError
from fedsov.policy import load_plan

WritePlan = Callable[..., Path]

NODES = [("hub", "global", "EU", None)]
MODEL = '[model]\nfactory = "fedsov.simulation.models:mlp"\n'
ROUNDS = "[rounds]\nnum_rounds = 2\n"


def message(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_plan(path)
    return str(info.value)


def test_a_missing_file_says_why_it_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert message(path) == f"{path}: cannot read plan: No such file or directory"


def test_a_plan_that_is_not_utf8_says_so(write_plan: WritePlan) -> None:
    path = write_plan(NODES)
    path.write_bytes(path.read_bytes() + b"\n# caf\xe9\n")
    assert message(path).startswith(f"{path}: the plan is not UTF-8: ")


@pytest.mark.parametrize(("section", "key"), [(MODEL, "model"), (ROUNDS, "rounds")])
def test_a_missing_required_section_is_named(write_plan: WritePlan, section: str, key: str) -> None:
    path = write_plan(NODES)
    text = path.read_text()
    assert section in text
    path.write_text(text.replace(section, ""))
    assert message(path).startswith(f"{path}: {key}: is required")


def test_a_plan_without_nodes_is_refused(write_plan: WritePlan) -> None:
    path = write_plan([])
    assert message(path) == f"{path}: nodes: the plan declares no [[nodes]]"


def test_an_unknown_tier_lists_the_tiers(write_plan: WritePlan) -> None:
    path = write_plan([("hub", "top", "EU", None)])
    assert message(path) == f"{path}: nodes[0].tier: 'top' is not one of global, regional, edge"


def test_an_export_rule_for_a_bad_jurisdiction_is_named(write_plan: WritePlan) -> None:
    path = write_plan(NODES, "[policy.export]\nin = { min_sites = 2 }\n")
    assert message(path) == (
        f"{path}: policy.export.in: invalid jurisdiction 'in': use 2-8 uppercase letters A-Z, "
        "e.g. EU, IN, US"
    )


def test_residency_refusal_lists_every_allowed_jurisdiction(write_plan: WritePlan) -> None:
    nodes = [*NODES, ("agg", "regional", "IN", "hub")]
    plan = load_plan(write_plan(nodes, '[policy.residency]\nIN = ["US", "IN"]\n'))
    assert plan.may_send("agg") == (
        False,
        "residency of IN allows sending to IN, US, not to EU (hub)",
    )


def test_an_empty_simulation_section_takes_the_defaults(write_plan: WritePlan) -> None:
    plan = load_plan(write_plan(NODES, "[simulation]\n"))
    assert plan.simulation is not None
    assert (plan.simulation.dataset, plan.simulation.partition) == ("digits", "iid")
    assert plan.simulation.alpha is None
    assert plan.simulation.test_fraction == pytest.approx(0.2)
