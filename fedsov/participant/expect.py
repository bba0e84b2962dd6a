"""Who this node's upstream must be: checked against the identity its join proof
verified (``FederationClient.upstream``), before any task is taken."""

from __future__ import annotations

from dataclasses import dataclass

from fedsov.exceptions import AccessDenied, ConfigError
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.policy.plan import Plan

__all__ = ["UPSTREAM_ROLES", "ExpectedUpstream"]

UPSTREAM_ROLES = frozenset({Role.coordinator, Role.aggregator})
"""The roles that serve; a site never does."""


@dataclass(frozen=True)
class ExpectedUpstream:
    """What the upstream's certificate must say; None: anything (for the role: any of
    ``UPSTREAM_ROLES``)."""

    name: str | None = None
    role: Role | None = None
    jurisdiction: str | None = None

    @classmethod
    def of(cls, *, plan: Plan | None, node: str, name: str | None) -> ExpectedUpstream:
        """From the plan's entry of ``node``'s upstream, else from the config's
        ``[upstream] name``; ConfigError when the two disagree."""
        if plan is None:
            return cls(name=name)
        upstream = plan.node(node).upstream
        if upstream is None:
            return cls(name=name)
        if name is not None and name != upstream:
            raise ConfigError(
                f"[upstream] name is {name!r}, but the plan {plan.source} says {node!r} "
                f"reports to {upstream!r}; fix one of them"
            )
        entry = plan.node(upstream)
        return cls(name=upstream, role=plan.role_of(entry.tier), jurisdiction=entry.jurisdiction)

    def describe(self) -> str:
        roles = str(self.role) if self.role else " or ".join(sorted(UPSTREAM_ROLES))
        parts = [f"name {self.name}" if self.name else "any name", f"role {roles}"]
        parts += [f"jurisdiction {self.jurisdiction}"] if self.jurisdiction else []
        return ", ".join(parts)

    def mismatch(self, seen: NodeIdentity) -> str | None:
        """Which of ``seen``'s facts this expectation refuses; None when it has none."""
        wrong = []
        if seen.role not in UPSTREAM_ROLES or (self.role and seen.role is not self.role):
            wrong.append("role")
        if self.name and seen.name != self.name:
            wrong.append("name")
        if self.jurisdiction and seen.jurisdiction != self.jurisdiction:
            wrong.append("jurisdiction")
        return " and ".join(wrong) or None

    def check(self, seen: NodeIdentity) -> None:
        """AccessDenied naming both what the certificate says and what was expected."""
        wrong = self.mismatch(seen)
        if wrong is None:
            return
        raise AccessDenied(
            f"the upstream's certificate says name {seen.name}, role {seen.role}, "
            f"jurisdiction {seen.jurisdiction}; this node expects {self.describe()} "
            f"(wrong {wrong}). It is not this node's upstream: check [upstream] address, "
            "server_name and name, or the plan"
        )
