"""``fedsov simulate``: the configs it writes carry the plan's ``[policy.secure_aggregation]``
to each node it binds, and load as that node's config (no process is started)."""

from __future__ import annotations

from pathlib import Path

from fedsov.aggregator.config import load as load_aggregator
from fedsov.config import SecureAggregationSettings, write_toml
from fedsov.coordinator.config import load as load_coordinator
from fedsov.pki.throwaway import NodePaths
from fedsov.policy.plan import Plan, Tier, load_plan
from fedsov.simulation.hierarchy import Deployment, aggregator_config, coordinator_config

SIMULATIONS = Path(__file__).resolve().parents[2] / "simulations"


def deployment(plan: Plan, out: Path) -> Deployment:
    """A deployment on paper: placeholder certificate files, the coordinator's port."""
    for name in ("cert.pem", "key.pem", "ca.pem", "test.npz"):
        (out / name).write_text("placeholder")
    paths = NodePaths(out / "cert.pem", out / "key.pem", out / "ca.pem")
    plan_file = out / "plan.toml"
    plan_file.write_bytes(plan.source.read_bytes())
    dep = Deployment(
        plan, out, plan_file, {n.name: paths for n in plan.nodes}, {}, out / "test.npz"
    )
    dep.ports.update(
        {n.name: 50000 + i for i, n in enumerate(plan.nodes) if n.tier is not Tier.EDGE}
    )
    return dep


def test_each_regional_aggregator_of_the_scenario_securely_aggregates(tmp_path: Path) -> None:
    dep = deployment(load_plan(SIMULATIONS / "consortium-secagg.toml"), tmp_path)
    for node in dep.plan.nodes:
        if node.tier is not Tier.REGIONAL:
            continue
        config = aggregator_config(dep, node)
        assert config["secure_aggregation"] == SecureAggregationSettings(threshold=2)
        loaded = load_aggregator(write_toml(tmp_path / f"{node.name}.toml", config))
        assert loaded.secure == SecureAggregationSettings(threshold=2)
        assert loaded.rounds.min_sites >= 2  # a secure round sums at least t sites
    coordinator = coordinator_config(dep)  # no site reports to it directly
    assert "secure_aggregation" not in coordinator
    assert load_coordinator(write_toml(tmp_path / "coordinator.toml", coordinator)).secure is None


def test_the_plain_consortium_writes_no_secure_aggregation(tmp_path: Path) -> None:
    dep = deployment(load_plan(SIMULATIONS / "consortium.toml"), tmp_path)
    regional = [n for n in dep.plan.nodes if n.tier is Tier.REGIONAL]
    assert all("secure_aggregation" not in aggregator_config(dep, n) for n in regional)
    assert "secure_aggregation" not in coordinator_config(dep)


def test_a_coordinator_of_sites_gets_the_plans_settings(tmp_path: Path) -> None:
    text = (SIMULATIONS / "consortium-secagg.toml").read_text()
    plan_path = tmp_path / "flat.toml"
    flat = text.replace('upstream = "agg-eu"', 'upstream = "coordinator"')  # EU sites go up
    flat = flat.replace("threshold = 2\n", "threshold = 3\nneighbours = 2\nclip = 4.0\n")
    plan_path.write_text(flat)
    out = tmp_path / "run"
    out.mkdir()
    dep = deployment(load_plan(plan_path), out)
    expected = SecureAggregationSettings(threshold=3, neighbours=2, clip=4.0)
    config = coordinator_config(dep)
    assert config["secure_aggregation"] == expected
    assert load_coordinator(write_toml(out / "coordinator.toml", config)).secure == expected
    # agg-eu lost its sites: the plan's jurisdictions no longer bind it
    agg_eu = dep.plan.node("agg-eu")
    assert "secure_aggregation" not in aggregator_config(dep, agg_eu)
