"""The federation plan: nodes, tiers, upstreams, model, rounds and policy, pinned by SHA-256.

Loading checks each field (types, names, tiers, unknown keys) and names the file and
key of any mistake. Whether the topology obeys the policy is ``check_plan``'s job,
so a plan that breaks its own policy still loads and can be reported on.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from fedsov.aggregator.config import read_site_dp
from fedsov.config import Table
from fedsov.coordinator.config import ModelConfig, read_model, read_training
from fedsov.exceptions import ConfigError, PKIError
from fedsov.messages import TrainingPlan
from fedsov.pki.identity import Role, validate_jurisdiction, validate_name
from fedsov.simulation.scenario import read_data_choice
from fedsov.site.config import read_privacy
from fedsov.site.trainer import PrivacyConfig
from fedsov.strategy import SiteDPSettings

__all__ = [
    "Budgets",
    "ExportRule",
    "Plan",
    "PlanNode",
    "PlanRounds",
    "Policy",
    "SimulationSpec",
    "Tier",
    "load_plan",
]


class Tier(StrEnum):
    """Where a node sits: the coordinator, a regional aggregator, or an edge site."""

    GLOBAL = "global"
    REGIONAL = "regional"
    EDGE = "edge"


_ROLE = {Tier.GLOBAL: Role.coordinator, Tier.REGIONAL: Role.aggregator, Tier.EDGE: Role.site}


@dataclass(frozen=True)
class PlanNode:
    name: str
    tier: Tier
    jurisdiction: str
    upstream: str | None = None
    hosts: tuple[str, ...] = ()
    min_sites: int | None = None  # a regional aggregator's own k


@dataclass(frozen=True)
class ExportRule:
    allow: bool = False
    min_sites: int = 1
    site_dp: bool = False


@dataclass(frozen=True)
class Budgets:
    site_epsilon: float | None = None
    jurisdiction_epsilon: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    residency: Mapping[str, frozenset[str]]
    export: Mapping[str, ExportRule]
    site_dp: SiteDPSettings | None
    budgets: Budgets


@dataclass(frozen=True)
class PlanRounds:
    num_rounds: int
    timeout_s: float


@dataclass(frozen=True)
class SimulationSpec:
    dataset: str
    partition: str
    alpha: float | None
    test_fraction: float


@dataclass(frozen=True)
class Plan:
    source: Path
    sha256: str
    federation: str
    seed: int
    model: ModelConfig
    rounds: PlanRounds
    training: TrainingPlan
    privacy: PrivacyConfig
    nodes: tuple[PlanNode, ...]
    policy: Policy
    simulation: SimulationSpec | None

    def node(self, name: str) -> PlanNode:
        """The node called ``name``; a ConfigError naming it if the plan has none."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(f"{self.source}: no node {name!r} in the plan")

    def children(self, name: str) -> tuple[PlanNode, ...]:
        """The nodes whose upstream is ``name``, in plan order."""
        return tuple(n for n in self.nodes if n.upstream == name)

    def edges_under(self, name: str) -> tuple[PlanNode, ...]:
        """Every edge site in ``name``'s subtree, in plan order (a cycle is cut, not followed)."""
        todo, seen = [name], {name}
        while todo:
            for child in self.children(todo.pop()):
                if child.name not in seen:
                    seen.add(child.name)
                    todo.append(child.name)
        return tuple(n for n in self.nodes if n.tier is Tier.EDGE and n.name in seen - {name})

    @property
    def global_node(self) -> PlanNode:
        """The coordinator; a ConfigError unless the plan has exactly one global node."""
        tops = [n for n in self.nodes if n.tier is Tier.GLOBAL]
        if len(tops) != 1:
            raise ConfigError(f"{self.source}: the plan needs exactly one global node")
        return tops[0]

    @staticmethod
    def role_of(tier: Tier) -> Role:
        """The certificate role of a node of ``tier``."""
        return _ROLE[tier]

    def residency_of(self, jurisdiction: str) -> frozenset[str]:
        """Jurisdictions its nodes may send to; by default only its own."""
        return self.policy.residency.get(jurisdiction, frozenset({jurisdiction}))

    def may_send(self, name: str) -> tuple[bool, str]:
        """Whether residency lets ``name`` send to its upstream, and why (or why not)."""
        node = self.node(name)
        if node.upstream is None:
            return True, "no upstream"
        upstream = self.node(node.upstream)
        allowed = self.residency_of(node.jurisdiction)
        if upstream.jurisdiction in allowed:
            return True, f"{upstream.jurisdiction} is in {node.jurisdiction}'s residency"
        return False, (
            f"residency of {node.jurisdiction} allows sending to {', '.join(sorted(allowed))}, "
            f"not to {upstream.jurisdiction} ({upstream.name})"
        )

    def export_rule(self, jurisdiction: str) -> ExportRule:
        """What may leave ``jurisdiction``; without a rule, nothing."""
        return self.policy.export.get(jurisdiction, ExportRule(allow=False))


def _read_node(table: Table) -> PlanNode:
    name = table.string("name")
    tier_text = table.string("tier")
    try:
        validate_name(name)
    except PKIError as exc:
        raise table.error("name", str(exc)) from exc
    try:
        tier = Tier(tier_text)
    except ValueError:
        raise table.error(
            "tier", f"{tier_text!r} is not one of {', '.join(t.value for t in Tier)}"
        ) from None
    jurisdiction = table.string("jurisdiction")
    try:
        validate_jurisdiction(jurisdiction)
    except PKIError as exc:
        raise table.error("jurisdiction", str(exc)) from exc
    node = PlanNode(
        name=name,
        tier=tier,
        jurisdiction=jurisdiction,
        upstream=table.string("upstream", None),
        hosts=tuple(table.strings("hosts", [])),
        min_sites=table.integer("min_sites", None, min=1),
    )
    table.done()
    return node


def _jurisdiction(table: Table, key: str, value: str) -> str:
    """``value`` if it is a jurisdiction code, else a ConfigError naming ``key``."""
    try:
        return validate_jurisdiction(value)
    except PKIError as exc:
        raise table.error(key, str(exc)) from exc


def _read_residency(table: Table) -> Mapping[str, frozenset[str]]:
    residency: dict[str, frozenset[str]] = {}
    for j in list(table.keys()):
        _jurisdiction(table, j, j)
        residency[j] = frozenset(_jurisdiction(table, j, t) for t in table.strings(j))
    table.done()
    return MappingProxyType(residency)


def _read_export(table: Table) -> Mapping[str, ExportRule]:
    export: dict[str, ExportRule] = {}
    for j in list(table.keys()):
        _jurisdiction(table, j, j)
        sub = table.table(j)
        export[j] = ExportRule(
            allow=sub.boolean("allow", True),
            min_sites=sub.integer("min_sites", 1, min=1),
            site_dp=sub.boolean("site_dp", False),
        )
        sub.done()
    table.done()
    return MappingProxyType(export)


def _read_budgets(table: Table) -> Budgets:
    jt = table.table("jurisdiction_epsilon")
    per_jurisdiction = {
        _jurisdiction(jt, j, j): jt.number(j, min=0.0, exclusive_min=True) for j in list(jt.keys())
    }
    jt.done()
    budgets = Budgets(
        site_epsilon=table.number("site_epsilon", None, min=0.0, exclusive_min=True),
        jurisdiction_epsilon=MappingProxyType(per_jurisdiction),
    )
    table.done()
    return budgets


def _read_policy(table: Table) -> Policy:
    policy = Policy(
        residency=_read_residency(table.table("residency")),
        export=_read_export(table.table("export")),
        site_dp=read_site_dp(table.table("site_dp")) if table.has("site_dp") else None,
        budgets=_read_budgets(table.table("budgets")),
    )
    table.done()
    return policy


def _read_simulation(table: Table) -> SimulationSpec:
    choice = read_data_choice(table, default_dataset="digits")
    table.done()
    return SimulationSpec(
        dataset=choice.dataset,
        partition=choice.partition,
        alpha=choice.alpha,
        test_fraction=choice.test_fraction,
    )


def _parse(path: Path) -> tuple[bytes, Table]:
    """The file's bytes and their TOML: the hash pins exactly what was parsed."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read plan: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: the plan is not UTF-8: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return raw, Table(data, file=path, prefix="")


def load_plan(path: Path) -> Plan:
    """Read and validate each field of the plan at ``path``; errors name file and key."""
    raw, doc = _parse(path)
    fed = doc.table("federation", required=True)
    federation = fed.string("name")
    try:
        validate_name(federation, what="federation name")
    except PKIError as exc:
        raise fed.error("name", str(exc)) from exc
    seed = fed.integer("seed", 0, min=0)
    fed.done()
    rt = doc.table("rounds", required=True)
    rounds = PlanRounds(
        num_rounds=rt.integer("num_rounds", min=1),
        timeout_s=rt.number("timeout_s", 300.0, min=0.0, exclusive_min=True),
    )
    rt.done()
    nodes = tuple(_read_node(t) for t in doc.tables("nodes"))
    names = [n.name for n in nodes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise doc.error("nodes", f"node {duplicates[0]!r} is declared twice")
    if not nodes:
        raise doc.error("nodes", "the plan declares no [[nodes]]")
    plan = Plan(
        source=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        federation=federation,
        seed=seed,
        model=read_model(doc.table("model", required=True)),
        rounds=rounds,
        training=read_training(doc.table("training")),
        privacy=read_privacy(doc.table("privacy")),
        nodes=nodes,
        policy=_read_policy(doc.table("policy")),
        simulation=_read_simulation(doc.table("simulation")) if doc.has("simulation") else None,
    )
    doc.done()
    return plan
