"""The one small interface every policy rule implements, and what its judges see.

A rule is judged before launch, at run time and after the fact, by callers that loop
over ``RULES``:

- before launch, ``check_plan`` asks ``check(plan)`` for its ``Violation``\\ s;
- at run time, ``require_may_send`` asks ``refuse(plan, node)`` whether the node may
  send to its plan upstream (a reason to refuse, or None), and ``export_requirement``
  folds every rule's ``requirement(plan, node)`` into what a regional aggregate needs
  before it may leave (checked against the aggregator's settings at start-up),
  once the upstream answered the join, ``require_may_join`` asks
  ``refuse_upstream(plan, node, upstream)`` about what it announced of itself, and
  ``require_update_allowed`` asks ``refuse_update(plan, node, sample_dp)`` whether an
  update of ``node``, trained with sample-level DP or not, may be sent (the site, of
  its own trainer) and folded (its upstream, of the update's privacy report);
- after the fact, the compliance report asks ``judge(plan, crossing)`` what is wrong
  with one update that crossed a border, as the ledgers recorded it.

``RuleBase`` answers "nothing to say" to each, so a rule overrides only what it
judges. ``order`` sorts the rules: at run time the first refusal wins, and the
report lists a crossing's findings in that order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from fedsov.policy.plan import ExportRule, Plan, PlanNode, Tier

__all__ = [
    "Announced",
    "Crossing",
    "Link",
    "Requirement",
    "Rule",
    "RuleBase",
    "Violation",
    "crossings",
    "export_rule_across",
    "links",
    "one_site_may_not_cross",
    "sending_link",
]


@dataclass(frozen=True)
class Violation:
    """One broken rule: where (``node``), which (``rule``, a stable id) and why."""

    node: str
    rule: str
    reason: str


@dataclass(frozen=True)
class Requirement:
    """What one rule asks of a node's export: at least ``min_sites``, site-level DP or not."""

    min_sites: int = 1
    site_dp: bool = False


@dataclass(frozen=True)
class Crossing:
    """One update that left ``from_jurisdiction``, as the ledgers recorded it."""

    sender: str
    from_jurisdiction: str | None  # None: not recorded (then most rules cannot judge)
    receiver: str
    to_jurisdiction: str | None
    sites: int | None  # how many sites it aggregates; None: not recorded
    contributors: Sequence[str]
    dp: Mapping[str, Any] | None


@dataclass(frozen=True)
class Announced:
    """What an upstream said of itself when a node joined it (JoinResponse)."""

    federation: str
    name: str | None  # None: not announced (an insecure upstream)
    jurisdiction: str | None


@dataclass(frozen=True)
class Link:
    """A node and the plan upstream it sends to."""

    node: PlanNode
    upstream: PlanNode

    @property
    def crosses(self) -> bool:
        return self.node.jurisdiction != self.upstream.jurisdiction

    @property
    def route(self) -> str:
        return f"{self.node.jurisdiction} -> {self.upstream.jurisdiction}"


def links(plan: Plan) -> Iterator[Link]:
    """Every node's link to an upstream of the plan that serves (an edge site never does)."""
    names = {n.name: n for n in plan.nodes}
    for node in plan.nodes:
        upstream = names.get(node.upstream or "")
        if upstream is not None and upstream.tier is not Tier.EDGE:
            yield Link(node, upstream)


def crossings(plan: Plan) -> Iterator[tuple[Link, ExportRule]]:
    """The links that cross a border, each with its sender's export rule."""
    for link in links(plan):
        if link.crosses:
            yield link, plan.export_rule(link.node.jurisdiction)


def sending_link(plan: Plan, node: str) -> Link:
    """``node``'s link to its upstream at run time (ConfigError if either is no node)."""
    entry = plan.node(node)
    assert entry.upstream is not None, "require_may_send refuses a node without an upstream"
    return Link(entry, plan.node(entry.upstream))


def export_rule_across(plan: Plan, node: str) -> ExportRule | None:
    """The export rule ``node``'s updates leave under, or None when they stay home."""
    entry = plan.node(node)
    if entry.upstream is None or plan.node(entry.upstream).jurisdiction == entry.jurisdiction:
        return None
    return plan.export_rule(entry.jurisdiction)


def one_site_may_not_cross(node: PlanNode, rule: ExportRule) -> bool:
    """Whether ``rule`` forbids one edge site's own update to cross: it asks for more
    than 1 site, or for site-level DP (which only a regional aggregate carries)."""
    return node.tier is Tier.EDGE and (rule.min_sites > 1 or rule.site_dp)


@runtime_checkable
class Rule(Protocol):
    """A policy rule: its static check, its run-time guard and its after-the-fact judge."""

    @property
    def id(self) -> str:
        """The rule's name (its module's); the ids of its violations may be several."""
        ...

    @property
    def order(self) -> int: ...

    @property
    def needs_sound_topology(self) -> bool:
        """Judged statically only once no upstream is unknown and nothing loops."""
        ...

    @property
    def breaks_topology(self) -> frozenset[str]:
        """Those of its violation ids that make the topology unsound for the others."""
        ...

    def check(self, plan: Plan) -> Iterator[Violation]:
        """Before launch: what in the plan breaks the rule."""
        ...

    def refuse(self, plan: Plan, node: str) -> str | None:
        """At run time: why ``node`` must not send to its plan upstream, or None."""
        ...

    def refuse_upstream(self, plan: Plan, node: str, upstream: Announced) -> str | None:
        """At run time, once joined: why ``node`` must not send to the upstream that
        announced itself so, or None."""
        ...

    def refuse_update(self, plan: Plan, node: str, sample_dp: bool) -> str | None:
        """At run time, at both ends: why an update of ``node``, trained with
        sample-level DP or not, must be neither sent nor folded, or None."""
        ...

    def requirement(self, plan: Plan, node: str) -> Requirement:
        """At start-up: what ``node``'s export must satisfy under this rule."""
        ...

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        """After the fact: what is wrong with one recorded border crossing."""
        ...


class RuleBase:
    """Defaults for ``Rule``: nothing to check, refuse, require or find."""

    id: ClassVar[str]
    order: ClassVar[int] = 100
    needs_sound_topology: ClassVar[bool] = True
    breaks_topology: ClassVar[frozenset[str]] = frozenset()

    def check(self, plan: Plan) -> Iterator[Violation]:
        return iter(())

    def refuse(self, plan: Plan, node: str) -> str | None:
        return None

    def refuse_upstream(self, plan: Plan, node: str, upstream: Announced) -> str | None:
        return None

    def refuse_update(self, plan: Plan, node: str, sample_dp: bool) -> str | None:
        return None

    def requirement(self, plan: Plan, node: str) -> Requirement:
        return Requirement()

    def judge(self, plan: Plan, crossing: Crossing) -> Iterator[str]:
        return iter(())
