"""The federation plan: nodes, tiers, upstreams, model, rounds and policy, pinned by SHA-256.

Loading checks each field (types, names, tiers, unknown keys) and names the file and
key of any mistake. Whether the topology obeys the policy is ``check_plan``'s job,
so a plan that breaks its own policy still loads and can be reported on.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field

from fedsov.config import (
    EVERY_JURISDICTION,
    Bool,
    ConfigPath,
    GuardrailSettings,
    Int,
    KeyProblem,
    ModelConfig,
    Number,
    PrivacyConfig,
    Section,
    SecureAggregationSettings,
    SimulationSpec,
    SiteDPSettings,
    Str,
    TrainingPlan,
    one_of,
    read_toml,
    section,
    validate,
)
from fedsov.exceptions import ConfigError, PKIError
from fedsov.pki.identity import Role, validate_jurisdiction, validate_name

__all__ = [
    "Budgets",
    "ExportRule",
    "Plan",
    "PlanNode",
    "PlanRounds",
    "Policy",
    "SecureAggregationPolicy",
    "SimulationSpec",
    "Tier",
    "load_plan",
]

_K = TypeVar("_K")
_V = TypeVar("_V")


class Tier(StrEnum):
    """Where a node sits: the coordinator, a regional aggregator, or an edge site."""

    GLOBAL = "global"
    REGIONAL = "regional"
    EDGE = "edge"


_ROLE = {Tier.GLOBAL: Role.coordinator, Tier.REGIONAL: Role.aggregator, Tier.EDGE: Role.site}


def _checked(check: Callable[[Any], Any]) -> AfterValidator:
    """A pki name check as a field check: its PKIError becomes the key's error."""

    def run(value: Any) -> Any:
        try:
            return check(value)
        except PKIError as exc:
            raise ValueError(str(exc)) from None

    return AfterValidator(run)


def _frozen(mapping: Mapping[_K, _V]) -> Mapping[_K, _V]:
    return MappingProxyType(dict(mapping))


def _each(check: Callable[[str], str]) -> Callable[[frozenset[str]], frozenset[str]]:
    def run(values: frozenset[str]) -> frozenset[str]:
        for value in sorted(values):
            check(value)
        return values

    return run


_Jurisdiction = Annotated[Str, _checked(validate_jurisdiction)]
_Jurisdictions = Annotated[frozenset[Str], _checked(_each(validate_jurisdiction))]
_NodeName = Annotated[Str, _checked(validate_name)]
_NodeNames = Annotated[frozenset[Str], _checked(_each(validate_name))]
_FederationName = Annotated[Str, _checked(lambda v: validate_name(v, what="federation name"))]


@section
class PlanNode(Section):
    name: _NodeName
    tier: Annotated[Tier, one_of(*(t.value for t in Tier))]
    jurisdiction: _Jurisdiction
    upstream: Str | None = None
    hosts: tuple[Str, ...] = ()
    min_sites: Annotated[Int, Field(ge=1)] | None = None  # a regional aggregator's own k
    # What DP an edge site trains with: "sample" (fedsov's DP-SGD) or "update" (its
    # whole update clipped and noised, e.g. a Flower app); sample_dp judges it.
    dp: Annotated[Str, one_of("sample", "update")] = "sample"


@section
class ExportRule(Section):
    allow: Bool = False
    min_sites: Annotated[Int, Field(ge=1)] = 1
    site_dp: Bool = False


def _listed_rules_allow(rules: Any) -> Any:
    """A jurisdiction listed under ``[policy.export]`` may export unless it says otherwise."""
    if not isinstance(rules, dict):
        return rules
    return {j: {"allow": True, **r} if isinstance(r, dict) else r for j, r in rules.items()}


@section
class Budgets(Section):
    site_epsilon: Annotated[Number, Field(gt=0.0)] | None = None
    jurisdiction_epsilon: Annotated[
        Mapping[_Jurisdiction, Annotated[Number, Field(gt=0.0)]], AfterValidator(_frozen)
    ] = dataclasses.field(default_factory=lambda: MappingProxyType({}))


@section
class SecureAggregationPolicy(Section):
    """``[policy.secure_aggregation]``: which aggregating nodes must run SecAgg+ with the
    sites directly below them, and with what settings (docs/secure-aggregation.md)."""

    # every node of these jurisdictions that serves edge sites directly (a regional
    # aggregator, or the coordinator of sites directly below it)
    jurisdictions: _Jurisdictions = frozenset()
    nodes: _NodeNames = frozenset()  # and these aggregating nodes, by name
    threshold: Annotated[Int, Field(ge=2)] = 2  # the t each of them uses at least
    # passed on to each node's [secure_aggregation]; unset: its own default
    neighbours: Annotated[Int, Field(ge=0, le=512)] | None = None
    precision_bits: Annotated[Int, Field(ge=8, le=40)] | None = None
    clip: Annotated[Number, Field(gt=0.0)] | None = None
    stage_timeout_s: Annotated[Number, Field(gt=0.0)] | None = None

    def __post_init__(self) -> None:
        if not self.jurisdictions and not self.nodes:
            raise KeyProblem(
                "jurisdictions",
                "names no jurisdiction and no node: list the jurisdictions (or nodes) "
                "that must securely aggregate, or leave the table out",
            )

    def settings(self) -> SecureAggregationSettings:
        """The ``[secure_aggregation]`` a node it binds runs with."""
        given: dict[str, Any] = {
            "neighbours": self.neighbours,
            "precision_bits": self.precision_bits,
            "clip": self.clip,
            "stage_timeout_s": self.stage_timeout_s,
        }
        return SecureAggregationSettings(
            threshold=self.threshold, **{k: v for k, v in given.items() if v is not None}
        )


@section
class Policy(Section):
    residency: Annotated[Mapping[_Jurisdiction, _Jurisdictions], AfterValidator(_frozen)] = (
        dataclasses.field(default_factory=lambda: MappingProxyType({}))
    )
    export: Annotated[
        Mapping[_Jurisdiction, ExportRule],
        BeforeValidator(_listed_rules_allow),
        AfterValidator(_frozen),
    ] = dataclasses.field(default_factory=lambda: MappingProxyType({}))
    site_dp: SiteDPSettings | None = None
    sample_dp: _Jurisdictions = frozenset()  # whose sites must train with sample-level DP
    budgets: Budgets = dataclasses.field(default_factory=Budgets)
    secure_aggregation: SecureAggregationPolicy | None = None


@section
class PlanRounds(Section):
    num_rounds: Annotated[Int, Field(ge=1)]
    timeout_s: Annotated[Number, Field(gt=0.0)] = 300.0


@section
class _Federation(Section):
    name: _FederationName
    seed: Annotated[Int, Field(ge=0)] = 0
    revocation_list: ConfigPath | None = None  # the CA's CRL; its content is not hashed


@section
class _PlanFile(Section):
    """A plan file, table by table."""

    federation: _Federation
    rounds: PlanRounds
    model: ModelConfig
    training: TrainingPlan = dataclasses.field(default_factory=TrainingPlan)
    privacy: PrivacyConfig = dataclasses.field(default_factory=PrivacyConfig)
    nodes: tuple[PlanNode, ...] = ()
    policy: Policy = dataclasses.field(default_factory=Policy)
    simulation: SimulationSpec | None = None
    guardrails: GuardrailSettings | None = None  # the coordinator's stop rules

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise KeyProblem("nodes", f"node {duplicates[0]!r} is declared twice")
        if not self.nodes:
            raise KeyProblem("nodes", "the plan declares no [[nodes]]")
        if self.policy.secure_aggregation is not None:
            self._check_secure(self.policy.secure_aggregation)
        if self.guardrails is not None:
            self._check_guardrails(self.guardrails)

    def _check_guardrails(self, guardrails: GuardrailSettings) -> None:
        """Every jurisdiction ``[guardrails]`` names has a node in the plan (a typo would
        leave a limit that never applies)."""
        places = sorted({n.jurisdiction for n in self.nodes})
        for key in ("epsilon_ceiling", "max_jurisdiction_training_s"):
            unknown = sorted(set(getattr(guardrails, key)) - {EVERY_JURISDICTION, *places})
            if unknown:
                raise KeyProblem(
                    f"guardrails.{key}",
                    f"no node of the plan is in {unknown[0]!r} "
                    f"(the plan's jurisdictions: {', '.join(places)})",
                )

    def _check_secure(self, secure: SecureAggregationPolicy) -> None:
        """Every jurisdiction and node ``[policy.secure_aggregation]`` names is the plan's."""
        key = "policy.secure_aggregation"
        places = sorted({n.jurisdiction for n in self.nodes})
        unknown = sorted(secure.jurisdictions - set(places))
        if unknown:
            raise KeyProblem(
                f"{key}.jurisdictions",
                f"no node of the plan is in {unknown[0]!r} "
                f"(the plan's jurisdictions: {', '.join(places)})",
            )
        tiers = {n.name: n.tier for n in self.nodes}
        for name in sorted(secure.nodes):
            if name not in tiers:
                raise KeyProblem(f"{key}.nodes", f"{name!r} is not a node of the plan")
            if tiers[name] is Tier.EDGE:
                raise KeyProblem(
                    f"{key}.nodes",
                    f"{name!r} is an edge site: only a node that aggregates sites "
                    "(regional, or global) securely aggregates",
                )


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
    revocation_list: Path | None = None
    guardrails: GuardrailSettings | None = None  # [guardrails]: the coordinator's stop rules

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

    def provides_sample_dp(self, name: str) -> bool:
        """Whether the plan says node ``name`` trains with sample-level DP (DP-SGD): its
        ``[privacy]`` on, the entry's ``dp = "sample"`` and, where ``[simulation.trainer]``
        runs a Flower app at every site, that app training through make_private."""
        return (
            self.privacy.enabled
            and self.node(name).dp == "sample"
            and self.simulated_app_dp in (None, "sample")
        )

    @property
    def simulated_app_dp(self) -> str | None:
        """The ``dp`` of the Flower app ``[simulation.trainer]`` runs at every site, if any."""
        trainer = self.simulation.trainer if self.simulation is not None else None
        return trainer.dp if trainer is not None and trainer.flower else None

    def secure_aggregation_for(self, name: str) -> SecureAggregationSettings | None:
        """The ``[secure_aggregation]`` node ``name`` must run with under
        ``[policy.secure_aggregation]`` (threshold: the plan's t), or None if the plan
        requires none of it: it is named there, or it is of a listed jurisdiction and
        serves edge sites directly. ConfigError if ``name`` is no node of the plan."""
        node, secure = self.node(name), self.policy.secure_aggregation
        if secure is None or node.tier is Tier.EDGE:
            return None
        serves_sites = any(c.tier is Tier.EDGE for c in self.children(name))
        if name in secure.nodes or (node.jurisdiction in secure.jurisdictions and serves_sites):
            return secure.settings()
        return None

    def export_rule(self, jurisdiction: str) -> ExportRule:
        """What may leave ``jurisdiction``; without a rule, nothing."""
        return self.policy.export.get(jurisdiction, ExportRule(allow=False))


def load_plan(path: Path) -> Plan:
    """Read and validate each field of the plan at ``path``; errors name file and key."""
    raw, data = read_toml(path, what="plan")
    doc = validate(_PlanFile, data, file=path)
    return Plan(
        source=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        federation=doc.federation.name,
        seed=doc.federation.seed,
        model=doc.model,
        rounds=doc.rounds,
        training=doc.training,
        privacy=doc.privacy,
        nodes=doc.nodes,
        policy=doc.policy,
        simulation=doc.simulation,
        revocation_list=doc.federation.revocation_list,
        guardrails=doc.guardrails,
    )
