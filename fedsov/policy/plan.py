"""The federation plan: nodes, tiers, upstreams, model, rounds and policy, pinned by SHA-256.

Loading checks each field (types, names, tiers, unknown keys) and names the file and
key of any mistake. Whether the topology obeys the policy is ``check_plan``'s job,
so a plan that breaks its own policy still loads and can be reported on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, TypeVar

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
    "MAX_GROUP_NODES",
    "Budgets",
    "ExportRule",
    "Plan",
    "PlanNode",
    "PlanNodeGroup",
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


MAX_GROUP_NODES = 100_000  # nodes one [[node_groups]] entry may expand to


@section
class PlanNodeGroup(Section):
    """``[[node_groups]]``: ``count`` nodes alike but for their names, ``prefix-001`` to
    ``prefix-100`` (numbers zero-padded to the width of ``count``): a plan of a
    thousand sites without a thousand ``[[nodes]]``."""

    prefix: _NodeName
    count: Annotated[Int, Field(ge=1, le=MAX_GROUP_NODES)]
    tier: Annotated[Tier, one_of(*(t.value for t in Tier))]
    jurisdiction: _Jurisdiction
    upstream: Str | None = None
    min_sites: Annotated[Int, Field(ge=1)] | None = None  # as a [[nodes]] entry's
    dp: Annotated[Str, one_of("sample", "update")] = "sample"

    def __post_init__(self) -> None:
        last = self.name(self.count)  # the longest name it expands to
        try:
            validate_name(last)
        except PKIError as exc:
            raise KeyProblem("prefix", f"expands to names like {last!r}: {exc}") from None

    def name(self, number: int) -> str:
        """The name of the group's node ``number`` (from 1)."""
        return f"{self.prefix}-{number:0{len(str(self.count))}d}"

    def expand(self) -> tuple[PlanNode, ...]:
        """The group's nodes, in number order."""
        first = PlanNode(
            name=self.name(1),
            tier=self.tier,
            jurisdiction=self.jurisdiction,
            upstream=self.upstream,
            min_sites=self.min_sites,
            dp=self.dp,
        )
        rest = (dataclasses.replace(first, name=self.name(i)) for i in range(2, self.count + 1))
        return (first, *rest)


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
    # How many of its sites a node that serves only edge sites (a regional aggregator;
    # the coordinator of a plan without regions) asks each round, drawn anew every
    # round; 0: every connected site. A node with aggregators below asks all of them.
    sites_per_round: Annotated[Int, Field(ge=0)] = 0


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
    node_groups: tuple[PlanNodeGroup, ...] = ()  # expanded after the [[nodes]], in order
    policy: Policy = dataclasses.field(default_factory=Policy)
    simulation: SimulationSpec | None = None
    guardrails: GuardrailSettings | None = None  # the coordinator's stop rules
    # the [[nodes]], then each group's: set on each instance once validated (a ClassVar
    # is no key of the file)
    _every_node: ClassVar[tuple[PlanNode, ...]] = ()

    def __post_init__(self) -> None:
        counts = Counter(n.name for n in self.nodes)
        duplicates = sorted(n for n, c in counts.items() if c > 1)
        if duplicates:
            raise KeyProblem("nodes", f"node {duplicates[0]!r} is declared twice")
        # every node: the [[nodes]], then each group's, in file order
        object.__setattr__(self, "_every_node", self.nodes + self._expand_groups())
        if not self.every_node:
            raise KeyProblem("nodes", "the plan declares no [[nodes]]")
        if self.policy.secure_aggregation is not None:
            self._check_secure(self.policy.secure_aggregation)
        if self.guardrails is not None:
            self._check_guardrails(self.guardrails)

    @property
    def every_node(self) -> tuple[PlanNode, ...]:
        """The [[nodes]], then each ``[[node_groups]]`` entry's nodes, in file order."""
        return self._every_node

    def _expand_groups(self) -> tuple[PlanNode, ...]:
        """Each ``[[node_groups]]`` entry's nodes; a KeyProblem naming the group when one
        of its names is another node's."""
        owner = dict.fromkeys((n.name for n in self.nodes), "a [[nodes]] entry")
        expanded: list[PlanNode] = []
        for i, group in enumerate(self.node_groups):
            mine = f"node group {group.prefix!r} (node_groups[{i}])"
            for node in group.expand():
                other = owner.setdefault(node.name, mine)
                if other != mine:
                    raise KeyProblem(
                        f"node_groups[{i}].prefix",
                        f"group {group.prefix!r} expands to {node.name!r}, "
                        f"which {other} declares too: choose another prefix",
                    )
                expanded.append(node)
        return tuple(expanded)

    def _check_guardrails(self, guardrails: GuardrailSettings) -> None:
        """Every jurisdiction ``[guardrails]`` names has a node in the plan (a typo would
        leave a limit that never applies)."""
        places = sorted({n.jurisdiction for n in self.every_node})
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
        places = sorted({n.jurisdiction for n in self.every_node})
        unknown = sorted(secure.jurisdictions - set(places))
        if unknown:
            raise KeyProblem(
                f"{key}.jurisdictions",
                f"no node of the plan is in {unknown[0]!r} "
                f"(the plan's jurisdictions: {', '.join(places)})",
            )
        tiers = {n.name: n.tier for n in self.every_node}
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
    # lookups by name and by upstream, built once: a plan of 1,000 sites is asked per node
    _by_name: Mapping[str, PlanNode] = field(init=False, repr=False, compare=False)
    _children: Mapping[str, tuple[PlanNode, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name: dict[str, PlanNode] = {}
        children: dict[str, list[PlanNode]] = {}
        for n in self.nodes:
            by_name.setdefault(n.name, n)  # the first of a name, as a scan would find
            if n.upstream is not None:
                children.setdefault(n.upstream, []).append(n)
        object.__setattr__(self, "_by_name", MappingProxyType(by_name))
        object.__setattr__(
            self, "_children", MappingProxyType({k: tuple(v) for k, v in children.items()})
        )

    def node(self, name: str) -> PlanNode:
        """The node called ``name``; a ConfigError naming it if the plan has none."""
        found = self._by_name.get(name)
        if found is None:
            raise ConfigError(f"{self.source}: no node {name!r} in the plan")
        return found

    def find(self, name: str) -> PlanNode | None:
        """The node called ``name``, or None if the plan has none."""
        return self._by_name.get(name)

    def children(self, name: str) -> tuple[PlanNode, ...]:
        """The nodes whose upstream is ``name``, in plan order."""
        return self._children.get(name, ())

    def edges_under(self, name: str) -> tuple[PlanNode, ...]:
        """Every edge site in ``name``'s subtree, in plan order (a cycle is cut, not followed)."""
        todo, seen = [name], {name}
        while todo:
            for child in self.children(todo.pop()):
                if child.name not in seen:
                    seen.add(child.name)
                    todo.append(child.name)
        seen.discard(name)
        return tuple(n for n in self.nodes if n.tier is Tier.EDGE and n.name in seen)

    def sites_per_round_of(self, name: str) -> int:
        """How many of its children node ``name`` asks a round: ``[rounds]
        sites_per_round`` if they are all edge sites, else 0 (every one)."""
        children = self.children(name)
        if children and all(c.tier is Tier.EDGE for c in children):
            return self.rounds.sites_per_round
        return 0

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


_CACHE_SIZE = 8  # plans kept: one process hosting many sites loads one plan for each
_loaded: dict[tuple[str, str, str], Plan] = {}
_loaded_lock = threading.Lock()


def load_plan(path: Path) -> Plan:
    """Read and validate each field of the plan at ``path``; errors name file and key.

    The file is read every time; the same bytes at the same path (and working folder)
    give the same immutable Plan, validated once, so a process that hosts many sites
    pays for one validation, however many nodes the plan expands to.
    """
    where = (str(path), str(path.resolve()))
    try:
        seen = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        seen = ""  # read_toml says why
    with _loaded_lock:
        cached = _loaded.get((*where, seen))
    if cached is not None:
        return cached
    raw, data = read_toml(path, what="plan")
    sha256 = hashlib.sha256(raw).hexdigest()  # what was parsed (the file may have changed)
    key = (*where, sha256)
    doc = validate(_PlanFile, data, file=path)
    plan = Plan(
        source=path,
        sha256=sha256,
        federation=doc.federation.name,
        seed=doc.federation.seed,
        model=doc.model,
        rounds=doc.rounds,
        training=doc.training,
        privacy=doc.privacy,
        nodes=doc.every_node,
        policy=doc.policy,
        simulation=doc.simulation,
        revocation_list=doc.federation.revocation_list,
        guardrails=doc.guardrails,
    )
    with _loaded_lock:
        _loaded[key] = plan
        while len(_loaded) > _CACHE_SIZE:
            del _loaded[next(iter(_loaded))]
    return plan
