"""Loading a federation plan: fields, SHA-256 pinning, errors naming file and key, helpers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from fedsov.config import PrivacyConfig
from fedsov.exceptions import ConfigError
from fedsov.messages import TrainingPlan
from fedsov.pki.identity import Role
from fedsov.policy import ExportRule, Tier, load_plan

WritePlan = Callable[..., Path]
CONSORTIUM = Path(__file__).resolve().parents[2] / "simulations" / "consortium.toml"

STAR = [
    ("hub", "global", "EU", None),
    ("agg", "regional", "IN", "hub"),
    ("sub", "regional", "IN", "agg"),
    ("a", "edge", "IN", "agg"),
    ("b", "edge", "IN", "sub"),
    ("c", "edge", "IN", "sub"),
    ("d", "edge", "EU", "hub"),
]


def test_consortium_loads_every_section() -> None:
    plan = load_plan(CONSORTIUM)
    assert plan.source == CONSORTIUM
    assert plan.federation == "consortium" and plan.seed == 7
    assert plan.model.factory == "fedsov.simulation.models:mlp"
    assert plan.model.kwargs["num_classes"] == 10
    assert plan.rounds.num_rounds == 20 and plan.rounds.timeout_s == 120.0
    assert isinstance(plan.training, TrainingPlan) and plan.training.batch_size == 32
    assert isinstance(plan.privacy, PrivacyConfig) and plan.privacy.delta == 1e-5
    assert plan.global_node.name == "coordinator"
    assert {n.jurisdiction for n in plan.nodes} == {"EU", "IN", "US"}
    assert sum(n.tier is Tier.REGIONAL for n in plan.nodes) >= 2
    assert sum(n.tier is Tier.EDGE for n in plan.nodes) >= 9
    assert plan.policy.residency["IN"] == frozenset({"IN", "EU"})
    assert plan.policy.site_dp is not None and plan.policy.site_dp.adaptive
    assert set(plan.policy.budgets.jurisdiction_epsilon) == {"EU", "IN", "US"}
    assert plan.simulation is not None
    assert (plan.simulation.dataset, plan.simulation.partition) == ("digits", "dirichlet")
    assert plan.simulation.alpha == 0.5


def test_sha256_is_the_hash_of_the_exact_bytes(tmp_path: Path) -> None:
    raw = CONSORTIUM.read_bytes()
    assert load_plan(CONSORTIUM).sha256 == hashlib.sha256(raw).hexdigest()
    copy = tmp_path / "plan.toml"
    i = raw.index(b"consortium")  # one byte inside a comment: same plan, other bytes
    copy.write_bytes(raw[:i] + b"C" + raw[i + 1 :])
    assert load_plan(copy).nodes == load_plan(CONSORTIUM).nodes
    assert load_plan(copy).sha256 != load_plan(CONSORTIUM).sha256


def test_policy_mappings_are_read_only() -> None:
    plan = load_plan(CONSORTIUM)
    with pytest.raises(TypeError):
        plan.policy.residency["EU"] = frozenset({"US"})  # type: ignore[index]
    with pytest.raises(TypeError):
        plan.policy.export["EU"] = ExportRule(allow=True)  # type: ignore[index]


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('tier = "edge"', 'tier = "leaf"', r"nodes\[4\]\.tier: 'leaf' is not one of global"),
        ('name = "berlin"', 'name = "paris"', r"nodes: node 'paris' is declared twice"),
        ('jurisdiction = "US"', 'jurisdiction = "usa"', r"nodes\[3\]\.jurisdiction: invalid"),
        ('name = "paris"', 'name = "Paris!"', r"nodes\[4\]\.name: invalid node name"),
        (
            'upstream = "agg-eu"',
            'upstream = "agg-eu"\ncolour = "red"',
            r"\[nodes\[4\]\]: unknown key",
        ),
        ("[policy.budgets]", "[policy.budget]", r"\[policy\]: unknown key 'budget'"),
        ('IN = ["IN", "EU"]', 'in = ["IN", "EU"]', r"policy\.residency\.in: invalid jurisdiction"),
        ('IN = ["IN", "EU"]', 'IN = ["IN", "eu"]', r"policy\.residency\.IN: invalid jurisdiction"),
        (
            "IN = { min_sites = 3",
            "IN = { min_sites = 0",
            r"policy\.export\.IN\.min_sites: must be >=",
        ),
        ("IN = { min_sites = 3", "IN = { k = 3", r"\[policy\.export\.IN\]: unknown key 'k'"),
        ("EU = 10.0, IN", "Eu = 10.0, IN", r"policy\.budgets\.jurisdiction_epsilon\.Eu: invalid"),
        ('name = "consortium"', 'name = "Consortium"', r"federation\.name: invalid federation"),
        ('dataset = "digits"', 'dataset = "cifar"', r"simulation\.dataset: 'cifar' is not one of"),
        ("alpha = 0.5\n", "", r"simulation\.alpha: is required with partition = 'dirichlet'"),
        ("num_rounds = 20", "num_rounds = 0", r"rounds\.num_rounds: must be >= 1"),
        ("batch_size = 32", "batch_size = 32\nepochs = 2", r"\[training\]: unknown key 'epochs'"),
        ("[federation]", "[federaton]", r"federation: is required"),
    ],
)
def test_load_errors_name_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(_replace(CONSORTIUM.read_text(), old, new))
    with pytest.raises(ConfigError, match=message) as info:
        load_plan(path)
    assert str(info.value).startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("content", "message"), [(None, "cannot read plan"), (b"[[nodes]\n", "invalid TOML")]
)
def test_unreadable_plans_are_config_errors(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    path = tmp_path / "plan.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as info:
        load_plan(path)
    assert str(path) in str(info.value)


def test_a_plan_that_breaks_its_policy_still_loads(write_plan: WritePlan) -> None:
    plan = load_plan(write_plan([("a", "regional", "EU", "b"), ("b", "regional", "EU", "a")]))
    assert [n.upstream for n in plan.nodes] == ["b", "a"]
    with pytest.raises(ConfigError, match="exactly one global node"):
        _ = plan.global_node


def test_node_children_and_edges_under(write_plan: WritePlan) -> None:
    plan = load_plan(write_plan(STAR))
    assert plan.node("sub").upstream == "agg"
    with pytest.raises(ConfigError, match=r"plan\.toml: no node 'ghost'"):
        plan.node("ghost")
    assert [n.name for n in plan.children("hub")] == ["agg", "d"]
    assert [n.name for n in plan.children("sub")] == ["b", "c"]
    assert [n.name for n in plan.edges_under("hub")] == ["a", "b", "c", "d"]
    assert [n.name for n in plan.edges_under("agg")] == ["a", "b", "c"]
    assert [n.name for n in plan.edges_under("sub")] == ["b", "c"]
    assert plan.edges_under("a") == ()


def test_edges_under_stops_at_a_cycle(write_plan: WritePlan) -> None:
    nodes = [("x", "regional", "EU", "y"), ("y", "regional", "EU", "x"), ("e", "edge", "EU", "x")]
    plan = load_plan(write_plan(nodes))
    assert [n.name for n in plan.edges_under("x")] == ["e"]
    assert [n.name for n in plan.edges_under("y")] == ["e"]


def test_role_of_each_tier() -> None:
    plan = load_plan(CONSORTIUM)
    assert plan.role_of(Tier.GLOBAL) is Role.coordinator
    assert plan.role_of(Tier.REGIONAL) is Role.aggregator
    assert plan.role_of(Tier.EDGE) is Role.site


def test_may_send_follows_residency_with_own_jurisdiction_by_default(
    write_plan: WritePlan,
) -> None:
    nodes = [
        ("hub", "global", "EU", None),
        ("agg-in", "regional", "IN", "hub"),
        ("agg-us", "regional", "US", "hub"),
        ("agg-br", "regional", "BR", "hub"),
        ("rio", "edge", "BR", "agg-br"),
    ]
    plan = load_plan(write_plan(nodes, '[policy.residency]\nIN = ["IN", "EU"]\nUS = ["US"]\n'))
    assert plan.may_send("hub") == (True, "no upstream")
    assert plan.may_send("agg-in")[0]
    allowed, reason = plan.may_send("agg-us")
    assert not allowed and "not to EU (hub)" in reason and "allows sending to US" in reason
    allowed, reason = plan.may_send("agg-br")  # no residency entry: only BR itself
    assert not allowed and "allows sending to BR, not to EU" in reason
    assert plan.may_send("rio")[0]


def test_export_rule_defaults(write_plan: WritePlan) -> None:
    policy = "[policy.export]\nIN = { min_sites = 2, site_dp = true }\nUS = { allow = false }\n"
    plan = load_plan(write_plan([("hub", "global", "EU", None)], policy))
    assert plan.export_rule("IN") == ExportRule(allow=True, min_sites=2, site_dp=True)
    assert plan.export_rule("US") == ExportRule(allow=False, min_sites=1, site_dp=False)
    assert plan.export_rule("EU") == ExportRule(allow=False)  # no rule: nothing leaves
    assert not plan.export_rule("EU").allow


def test_optional_sections_take_their_defaults(write_plan: WritePlan) -> None:
    plan = load_plan(write_plan([("hub", "global", "EU", None)]))
    assert plan.policy.site_dp is None and plan.simulation is None
    assert plan.policy.budgets.site_epsilon is None
    assert dict(plan.policy.budgets.jurisdiction_epsilon) == {}
    assert dict(plan.policy.residency) == {} and dict(plan.policy.export) == {}
    hub = plan.node("hub")
    assert (hub.hosts, hub.min_sites, hub.upstream) == ((), None, None)


def test_node_hosts_and_min_sites(write_plan: WritePlan) -> None:
    extra = {"hub": {"hosts": '["localhost", "127.0.0.1"]'}, "agg": {"min_sites": "3"}}
    nodes = [("hub", "global", "EU", None), ("agg", "regional", "EU", "hub")]
    plan = load_plan(write_plan(nodes, extra=extra))
    assert plan.node("hub").hosts == ("localhost", "127.0.0.1")
    assert plan.node("agg").min_sites == 3
