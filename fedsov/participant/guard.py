"""Before any byte leaves: may this node send to the upstream its plan names?"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedsov.audit.trail import AuditTrail
from fedsov.exceptions import PolicyViolation

if TYPE_CHECKING:  # interim, until the role configs stop importing participant
    from fedsov.policy.plan import Plan

__all__ = ["may_send"]


def may_send(plan: Plan, node: str, audit: AuditTrail) -> None:
    """Refuse an upstream the plan's residency forbids: recorded in the node's audit
    trail, then raised (PolicyViolation)."""
    from fedsov.policy.runtime import require_may_send

    try:
        require_may_send(plan, node)
    except PolicyViolation as exc:
        upstream = plan.node(node).upstream
        if upstream:
            audit.refused(
                peer=upstream,
                peer_jurisdiction={n.name: n.jurisdiction for n in plan.nodes}.get(upstream),
                decision="residency",
                reason=str(exc),
            )
        raise
