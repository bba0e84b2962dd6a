"""Run-time enforcement of the federation plan, at both ends of every link.

Downstream (the serving end): ``PlanAdmission`` lets in only the plan's children
of this node, and only with a certificate whose name, role and jurisdiction match
their plan entry. Upstream (the sending end): ``require_may_send`` refuses to send
anything to an upstream the node's residency and export rules forbid, and
``export_requirement`` says how many sites (and whether site-level DP) a regional
aggregate needs before it may leave the jurisdiction. At both ends,
``require_update_allowed`` refuses an update its sender's DP does not satisfy
(the site, of its own trainer, before it dials; ``UpdatePolicy``, the upstream, of
each update's privacy report on receipt). All ask the rules of ``fedsov.policy.rules``.
At start-up, ``require_secure_aggregation`` refuses a node the plan's
``[policy.secure_aggregation]`` binds unless its config securely aggregates with at
least the plan's threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsov.config import SecureAggregationSettings
from fedsov.exceptions import AccessDenied, ConfigError, FedsovError, PolicyViolation
from fedsov.messages import UpdateHeader
from fedsov.pki.identity import NodeIdentity
from fedsov.policy.plan import Plan, load_plan
from fedsov.policy.rules import RULES, Requirement
from fedsov.policy.rules.base import Announced

__all__ = [
    "ExportRequirement",
    "PlanAdmission",
    "UpdatePolicy",
    "export_requirement",
    "load_node_plan",
    "require_export_settings",
    "require_may_join",
    "require_may_send",
    "require_secure_aggregation",
    "require_update_allowed",
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
        entry = plan.find(identity.name)
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
    """Raise PolicyViolation unless ``node`` may send its updates to its plan upstream:
    the first rule of ``RULES`` that refuses says why."""
    entry = plan.node(node)
    if entry.upstream is None:
        raise PolicyViolation(f"{node!r} has no upstream in the plan: it sends nothing")
    for rule in RULES:
        reason = rule.refuse(plan, node)
        if reason is not None:
            raise PolicyViolation(f"{node!r} refuses to send to {entry.upstream!r}: {reason}")


def require_may_join(
    plan: Plan,
    node: str,
    *,
    federation: str,
    upstream_name: str | None,
    upstream_jurisdiction: str | None,
) -> None:
    """Raise PolicyViolation unless ``node`` may send to the upstream that answered its
    join announcing itself so: the first rule of ``RULES`` that refuses says why."""
    announced = Announced(federation, upstream_name or None, upstream_jurisdiction or None)
    for rule in RULES:
        reason = rule.refuse_upstream(plan, node, announced)
        if reason is not None:
            who = upstream_name or plan.node(node).upstream
            raise PolicyViolation(f"{node!r} refuses to send to {who!r}: {reason}")


def require_update_allowed(plan: Plan, node: str, *, sample_dp: bool) -> None:
    """Raise PolicyViolation unless an update of ``node`` trained with sample-level DP
    (``sample_dp``) or without it may be sent and folded: the first refusal says why."""
    for rule in RULES:
        reason = rule.refuse_update(plan, node, sample_dp)
        if reason is not None:
            raise PolicyViolation(f"update of {node!r} refused: {reason}")


@dataclass(frozen=True)
class UpdatePolicy:
    """The receiving end's judge of each update header: PolicyViolation (the task is
    rejected, nothing folded) when the plan's rules refuse what its privacy reports."""

    plan: Plan

    def __call__(self, sender: str, header: UpdateHeader) -> None:
        require_update_allowed(self.plan, sender, sample_dp=header.privacy.sample_level)


# min_sites: k, fewer contributing sites in a round and nothing is exported;
# site_dp: the aggregate must carry site-level DP.
ExportRequirement = Requirement


def export_requirement(plan: Plan, node: str) -> ExportRequirement:
    """What a regional aggregator's export must satisfy under the plan: the most any
    rule of ``RULES`` asks."""
    needs = [rule.requirement(plan, node) for rule in RULES]
    return ExportRequirement(
        min_sites=max(n.min_sites for n in needs), site_dp=any(n.site_dp for n in needs)
    )


def require_export_settings(
    plan: Plan, node: str, *, min_sites: int, site_dp: bool, source: Path
) -> None:
    """At start-up: FedsovError unless a regional aggregator configured with rounds of
    ``min_sites`` and ``site_dp`` (a DP strategy or not) can export what the plan permits."""
    need = export_requirement(plan, node)
    if need.min_sites > min_sites:
        raise FedsovError(
            f"{source}: rounds.min_sites is {min_sites}, but the plan lets "
            f"{node!r} export only aggregates of >= {need.min_sites} sites"
        )
    if need.site_dp and not site_dp:
        raise FedsovError(
            f"{source}: the plan requires site-level DP on what "
            f"{node!r} exports; configure [site_dp]"
        )


# What an auto threshold (0) can come to: max(2, a strict majority of the share holders).
_AUTO_THRESHOLD_FLOOR = 2


def require_secure_aggregation(
    plan: Plan, node: str, settings: SecureAggregationSettings | None, *, source: Path
) -> None:
    """At start-up: PolicyViolation unless ``node``, configured (in ``source``) with
    ``settings`` (its ``[secure_aggregation]``, None: none), securely aggregates as the
    plan's ``[policy.secure_aggregation]`` requires of it: with a threshold of at least
    the plan's t (an auto threshold, 0, only where t is 2, the least it comes to)."""
    need = plan.secure_aggregation_for(node)
    if need is None:
        return
    t = need.threshold
    required = f"the plan requires {node!r} to securely aggregate its sites (threshold >= {t})"
    if settings is None:
        raise PolicyViolation(
            f"{source}: {required}; configure [secure_aggregation] with threshold = {t}"
        )
    if settings.threshold == 0 and t > _AUTO_THRESHOLD_FLOOR:
        raise PolicyViolation(
            f"{source}: secure_aggregation.threshold: is 0 (auto, which can come to "
            f"{_AUTO_THRESHOLD_FLOOR}), but {required}; set threshold = {t}"
        )
    if 0 < settings.threshold < t:
        raise PolicyViolation(
            f"{source}: secure_aggregation.threshold: is {settings.threshold}, but {required}"
        )
