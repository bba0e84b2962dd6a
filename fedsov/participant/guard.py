"""Before any byte leaves, and before any task is taken: may this node send to the
upstream its plan names, and is the upstream that answered the join the plan's?"""

from __future__ import annotations

from collections.abc import Callable

from fedsov.audit.trail import AuditTrail
from fedsov.exceptions import PolicyViolation
from fedsov.participant.upstream import Upstream
from fedsov.policy.plan import Plan
from fedsov.policy.runtime import require_may_join, require_may_send
from fedsov.proto.v1.federation_pb2 import JoinResponse

__all__ = ["JoinCheck", "may_join", "may_send"]

JoinCheck = Callable[[Upstream, JoinResponse], None]
"""Called with each join's answer before any task is taken; what it raises ends the loop."""


def may_send(plan: Plan, node: str, audit: AuditTrail) -> None:
    """Refuse an upstream the plan's residency forbids: recorded in the node's audit
    trail, then raised (PolicyViolation)."""
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


def may_join(plan: Plan, node: str, audit: AuditTrail) -> JoinCheck:
    """``serve_upstream``'s ``on_join``: refuse, before any task is taken, an upstream
    whose federation, name and jurisdiction (those its join proof showed; without TLS,
    those its answer says) the plan's rules forbid.

    The refusal is recorded in the node's audit trail, then raised (PolicyViolation).
    """

    def check(upstream: Upstream, joined: JoinResponse) -> None:
        proved = upstream.client.upstream  # None without TLS: then what the answer says
        try:
            require_may_join(
                plan,
                node,
                federation=proved.federation if proved else joined.federation,
                upstream_name=proved.name if proved else joined.upstream_name,
                upstream_jurisdiction=proved.jurisdiction
                if proved
                else joined.upstream_jurisdiction,
            )
        except PolicyViolation as exc:
            audit.refused(
                peer=upstream.name or plan.node(node).upstream or "",
                peer_jurisdiction=upstream.jurisdiction,
                decision="policy",
                reason=str(exc),
            )
            raise

    return check
