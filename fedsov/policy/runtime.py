"""Run-time enforcement of the federation plan, at both ends of every link.

Downstream (the serving end): ``PlanAdmission`` lets in only the plan's children
of this node, and only with a certificate whose name, role and jurisdiction match
their plan entry. Upstream (the sending end): ``require_may_send`` refuses to send
anything to an upstream the node's residency and export rules forbid, and
``export_threshold`` says how many sites a regional aggregate needs before it may
leave the jurisdiction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsov.exceptions import AccessDenied, ConfigError, PolicyViolation
from fedsov.pki.identity import NodeIdentity
from fedsov.policy.plan import Plan, Tier, load_plan

__all__ = [
    "ExportRequirement",
    "PlanAdmission",
    "export_requirement",
    "load_node_plan",
    "require_may_send",
]


def load_node_plan(path: Path, node: str | None, *, federation: str | None = None) -> Plan:
    """Load the plan a node was started with; the node (default: the global one) must be in it."""
    plan = load_plan(path)
    plan.node(node if node is not None else plan.global_node.name)  # ConfigError if absent
    if federation is not None and federation != plan.federation:
        raise ConfigError(
            f"{path}: the plan is for federation {plan.federation!r}, this node's config "
            f"says {federation!r}"
        )
    return plan


@dataclass(frozen=True)
class PlanAdmission:
    """Admits the plan's children of ``node``, as their certificates must show them."""

    plan: Plan
    node: str

    def __call__(self, identity: NodeIdentity) -> None:
        plan = self.plan
        if identity.federation != plan.federation:
            raise AccessDenied(
                f"certificate of {identity.name!r} is for federation {identity.federation!r}, "
                f"the plan is for {plan.federation!r}"
            )
        entry = next((n for n in plan.nodes if n.name == identity.name), None)
        if entry is None:
            raise AccessDenied(f"{identity.name!r} is not a node of plan {plan.sha256[:16]}")
        if entry.upstream != self.node:
            raise AccessDenied(
                f"{identity.name!r} reports to {entry.upstream!r} in the plan, not to {self.node!r}"
            )
        role = plan.role_of(entry.tier)
        if identity.role is not role:
            raise AccessDenied(
                f"certificate of {identity.name!r} says role {identity.role}, "
                f"the plan says {role} ({entry.tier} tier)"
            )
        if identity.jurisdiction != entry.jurisdiction:
            raise AccessDenied(
                f"certificate of {identity.name!r} says jurisdiction {identity.jurisdiction}, "
                f"the plan says {entry.jurisdiction}"
            )


def require_may_send(plan: Plan, node: str) -> None:
    """Raise PolicyViolation unless ``node`` may send its updates to its plan upstream."""
    entry = plan.node(node)
    if entry.upstream is None:
        raise PolicyViolation(f"{node!r} has no upstream in the plan: it sends nothing")
    allowed, reason = plan.may_send(node)
    if not allowed:
        raise PolicyViolation(f"{node!r} refuses to send to {entry.upstream!r}: {reason}")
    upstream = plan.node(entry.upstream)
    if upstream.jurisdiction == entry.jurisdiction:
        return
    rule = plan.export_rule(entry.jurisdiction)
    if not rule.allow:
        raise PolicyViolation(
            f"{node!r} refuses to send to {entry.upstream!r}: nothing may leave "
            f"{entry.jurisdiction} for {upstream.jurisdiction}"
        )
    if entry.tier is Tier.EDGE and (rule.min_sites > 1 or rule.site_dp):
        dp = " with site-level DP" if rule.site_dp else ""
        raise PolicyViolation(
            f"{node!r} refuses to send to {entry.upstream!r}: only an aggregate of >= "
            f"{rule.min_sites} sites{dp} may leave {entry.jurisdiction}, never one site's update"
        )


@dataclass(frozen=True)
class ExportRequirement:
    min_sites: int  # k: fewer contributing sites in a round and nothing is exported
    site_dp: bool  # the aggregate must carry site-level DP


def export_requirement(plan: Plan, node: str) -> ExportRequirement:
    """What a regional aggregator's export must satisfy under the plan."""
    entry = plan.node(node)
    own = entry.min_sites or 1
    if entry.upstream is None or plan.node(entry.upstream).jurisdiction == entry.jurisdiction:
        return ExportRequirement(min_sites=own, site_dp=False)
    rule = plan.export_rule(entry.jurisdiction)
    return ExportRequirement(min_sites=max(own, rule.min_sites), site_dp=rule.site_dp)
