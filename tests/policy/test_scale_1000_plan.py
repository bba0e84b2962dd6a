"""simulations/scale-1000.toml: 1,000 sites in 10 regions of 3 jurisdictions, and the
plan's ``[rounds] sites_per_round`` (how many of its sites a region asks a round)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedsov.aggregator.config import load as load_aggregator
from fedsov.cli import app
from fedsov.config import Backoff, TlsPaths, write_toml
from fedsov.coordinator.config import load as load_coordinator
from fedsov.exceptions import ConfigError
from fedsov.policy import Tier, check_plan, load_plan
from fedsov.policy.runtime import export_requirement
from fedsov.privacy.accountant import MechanismStep, compute_epsilon
from fedsov.provision import configs
from fedsov.provision.configs import NodeFiles

WritePlan = Callable[..., Path]
SCALE = Path(__file__).resolve().parents[2] / "simulations" / "scale-1000.toml"


def test_the_scale_plan_passes_policy_check() -> None:
    result = CliRunner().invoke(app, ["policy", "check", str(SCALE)])
    assert result.exit_code == 0, result.output
    assert "1 global, 10 regional, 1000 edge across EU, IN, US" in result.output
    assert check_plan(load_plan(SCALE)) == []


def test_the_scale_plan_has_1000_sites_in_ten_regions() -> None:
    plan = load_plan(SCALE)
    regions = [n for n in plan.nodes if n.tier is Tier.REGIONAL]
    assert sorted(n.jurisdiction for n in regions) == ["EU"] * 4 + ["IN"] * 3 + ["US"] * 3
    assert all(n.upstream == plan.global_node.name for n in regions)
    assert plan.global_node.jurisdiction == "EU"
    for region in regions:
        sites = plan.children(region.name)
        assert len(sites) == 100
        assert all(s.tier is Tier.EDGE and s.jurisdiction == region.jurisdiction for s in sites)
    assert sum(n.tier is Tier.EDGE for n in plan.nodes) == 1000
    sim = plan.simulation
    assert sim is not None
    assert (sim.mode, sim.dataset, sim.partition) == ("virtual", "synthetic", "dirichlet")
    assert plan.model.factory == "fedsov.simulation.models:logistic"
    assert plan.model.kwargs == {"in_features": 60, "num_classes": 10}
    assert plan.rounds.num_rounds >= 20


def test_50_to_100_sites_train_a_round_and_each_region_can_export() -> None:
    plan = load_plan(SCALE)
    regions = [n for n in plan.nodes if n.tier is Tier.REGIONAL]
    asked = [plan.sites_per_round_of(n.name) for n in regions]
    assert all(5 <= a <= 10 for a in asked)
    assert 50 <= sum(asked) <= 100
    assert plan.sites_per_round_of(plan.global_node.name) == 0  # every region, every round
    for region, a in zip(regions, asked, strict=True):
        assert export_requirement(plan, region.name).min_sites <= a
    assert {export_requirement(plan, n.name).min_sites for n in regions} == {5}


def test_no_site_reaches_its_budget_even_asked_every_round() -> None:
    """The smallest site (min_site_examples) spends the most per round; asked in all
    num_rounds rounds it stays under the plan's site_epsilon, so no site declines."""
    plan = load_plan(SCALE)
    assert plan.simulation is not None and plan.privacy.enabled
    batches = math.ceil(plan.simulation.min_site_examples / plan.training.batch_size)
    step = MechanismStep(
        plan.privacy.noise_multiplier,
        1.0 / batches,
        plan.training.local_epochs * batches * plan.rounds.num_rounds,
    )
    eps = compute_epsilon(history=[step], delta=plan.privacy.delta, accountant="pld")
    budget = plan.policy.budgets.site_epsilon
    assert budget is not None and eps < budget
    assert eps > 0.5 * budget  # not a budget that means nothing


def test_the_scale_plans_configs_ask_that_many_sites(tmp_path: Path) -> None:
    plan = load_plan(SCALE)
    files = NodeFiles(TlsPaths(tmp_path, tmp_path, tmp_path), SCALE, output=tmp_path)
    region = plan.node("agg-in-2")
    written = configs.aggregator_config(
        plan,
        region,
        files,
        listen="127.0.0.1:0",
        upstream="127.0.0.1:1",
        reconnect=Backoff(),
    )
    loaded = load_aggregator(write_toml(tmp_path / "agg.toml", written))
    assert (loaded.rounds.sites_per_round, loaded.rounds.min_sites) == (8, 5)
    assert loaded.rounds.first_round_sites == 100
    top = configs.coordinator_config(plan, files, listen="127.0.0.1:0")
    coordinator = load_coordinator(write_toml(tmp_path / "coordinator.toml", top))
    assert (coordinator.rounds.sites_per_round, coordinator.rounds.min_sites) == (0, 10)


def _flat(write_plan: WritePlan, policy: str = "", extra: str = "sites_per_round = 2") -> Path:
    nodes = [("hub", "global", "EU", None), *((f"s{i}", "edge", "EU", "hub") for i in range(5))]
    path = write_plan(nodes, policy)
    path.write_text(path.read_text().replace("num_rounds = 2", f"num_rounds = 2\n{extra}"))
    return path


def test_a_coordinator_of_sites_asks_sites_per_round(write_plan: WritePlan, tmp_path: Path) -> None:
    plan = load_plan(_flat(write_plan))
    assert plan.sites_per_round_of("hub") == 2 and plan.sites_per_round_of("s1") == 0
    files = NodeFiles(TlsPaths(tmp_path, tmp_path, tmp_path), plan.source, output=tmp_path)
    config = configs.coordinator_config(plan, files, listen="127.0.0.1:0")
    assert config["rounds"]["sites_per_round"] == 2
    assert load_coordinator(write_toml(tmp_path / "c.toml", config)).rounds.sites_per_round == 2


def test_sites_per_round_defaults_to_every_site(write_plan: WritePlan) -> None:
    plan = load_plan(_flat(write_plan, extra=""))
    assert plan.rounds.sites_per_round == 0 and plan.sites_per_round_of("hub") == 0
    with pytest.raises(ConfigError, match=r"rounds\.sites_per_round: must be >= 0, got -1"):
        load_plan(_flat(write_plan, extra="sites_per_round = -1"))


REGION = [
    ("hub", "global", "EU", None),
    ("agg", "regional", "IN", "hub"),
    *((f"s{i}", "edge", "IN", "agg") for i in range(6)),
]
EXPORT = """
[policy.residency]
IN = ["IN", "EU"]

[policy.export]
IN = { min_sites = 4 }

[policy.budgets]
jurisdiction_epsilon = { IN = 5.0 }
"""


def _region(write_plan: WritePlan, asked: int, policy: str = EXPORT, **extra: str) -> Path:
    path = write_plan(REGION, policy, extra={"agg": extra} if extra else None)
    text = path.read_text().replace("num_rounds = 2", f"num_rounds = 2\nsites_per_round = {asked}")
    path.write_text(text)
    return path


def reasons(path: Path) -> list[tuple[str, str, str]]:
    return [(v.node, v.rule, v.reason) for v in check_plan(load_plan(path))]


def test_asking_fewer_sites_than_the_export_k_is_a_violation(write_plan: WritePlan) -> None:
    assert reasons(_region(write_plan, 4)) == []
    assert reasons(_region(write_plan, 3)) == [
        (
            "agg",
            "sites-per-round-below-k",
            "[rounds] sites_per_round = 3 asks 3 of its sites a round, but IN exports only "
            "aggregates of >= 4 sites: no round could ever meet that; raise sites_per_round "
            "to 4 or more",
        )
    ]


def test_asking_fewer_sites_than_min_sites_is_a_violation(write_plan: WritePlan) -> None:
    found = reasons(_region(write_plan, 4, min_sites="5"))
    assert [(node, rule) for node, rule, _ in found] == [("agg", "sites-per-round-below-k")]
    assert "its min_sites = 5" in found[0][2]


def test_asking_fewer_sites_than_the_secure_threshold_is_a_violation(
    write_plan: WritePlan,
) -> None:
    secure = EXPORT + '\n[policy.secure_aggregation]\njurisdictions = ["IN"]\nthreshold = 5\n'
    found = reasons(_region(write_plan, 4, secure))
    assert [(node, rule) for node, rule, _ in found] == [("agg", "sites-per-round-below-k")]
    assert "secure aggregation needs t = 5" in found[0][2]
