"""What ``fedsov status`` shows of a serving node, and who may stop it (an operator).

``NodeOperator`` answers the Operator service for a node: its status from the engine
(round, participants, last report) and the plan (who is expected, jurisdictions, ε
budgets). A regional aggregator follows its upstream, so it refuses a stop; the
coordinator's (fedsov.coordinator) stops its schedule.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fedsov.exceptions import ProtocolError
from fedsov.messages import NodeStatus, ParticipantStatus
from fedsov.node.engine import Engine
from fedsov.pki.identity import NodeIdentity
from fedsov.policy.plan import Plan, Tier

__all__ = ["NodeOperator", "plan_budget"]


def plan_budget(plan: Plan | None) -> Callable[[str], float | None]:
    """A participant's ε budget by the plan: an edge site's is the site budget, a
    region's the budget of its jurisdiction (what its exports may spend)."""

    def budget_of(name: str) -> float | None:
        if plan is None:
            return None
        node = next((n for n in plan.nodes if n.name == name), None)
        if node is None:
            return None
        budgets = plan.policy.budgets
        if node.tier is Tier.EDGE:
            return budgets.site_epsilon
        return budgets.jurisdiction_epsilon.get(node.jurisdiction)

    return budget_of


class NodeOperator:
    """The Operator service's handler for ``engine`` (fedsov.transport.OperatorHandler)."""

    def __init__(
        self,
        engine: Engine,
        *,
        identity: NodeIdentity | None,
        role: str,
        plan: Plan | None = None,
        rounds_total: int = 0,
    ) -> None:
        self.engine = engine
        self.identity = identity
        self.role = role
        self.plan = plan
        self.rounds_total = rounds_total
        self.started = time.monotonic()
        self.stop_requested = ""
        self.budget_of = plan_budget(plan)

    def request_stop(self, operator: NodeIdentity, reason: str) -> str:
        raise ProtocolError(
            f"a {self.role} runs the rounds its upstream asks for: stop the coordinator "
            "(`fedsov stop` against it) and every tier below it stops too"
        )

    def _state(self) -> str:
        engine = self.engine
        if engine.finished is not None:
            return f"finished: {engine.finished.reason}"
        if engine.current is not None:
            return f"round {engine.current.number} open"
        if not engine.reports:
            return "waiting for participants"
        return "between rounds"

    def _expected(self) -> list[str]:
        """Who may take part here: the plan's children, else whoever was ever seen."""
        me = self.identity.name if self.identity is not None else None
        names: dict[str, None] = {}
        if self.plan is not None:
            top = me or self.plan.global_node.name
            names.update(dict.fromkeys(n.name for n in self.plan.children(top)))
        for report in self.engine.reports:
            names.update(dict.fromkeys(s.site for s in report.sites))
        names.update(dict.fromkeys(self.engine.connected_sites))
        return list(names)

    def _jurisdiction(self, name: str) -> str:
        if self.plan is not None:
            node = next((n for n in self.plan.nodes if n.name == name), None)
            if node is not None:
                return node.jurisdiction
        return self.engine.jurisdiction_of(name) or ""

    def status(self) -> NodeStatus:
        engine = self.engine
        connected = set(engine.connected_sites)
        epsilon: dict[str, float] = {}
        for report in engine.reports:
            for site in report.sites:
                p = site.privacy
                if site.status == "accepted" and p is not None and p.enabled:
                    epsilon[site.site] = p.epsilon
        last = engine.reports[-1] if engine.reports else None
        last_status = {s.site: s.status for s in last.sites} if last else {}
        participants = tuple(
            ParticipantStatus(
                name=name,
                jurisdiction=self._jurisdiction(name),
                connected=name in connected,
                epsilon=epsilon.get(name),
                budget=self.budget_of(name),
                last_status=last_status.get(name, ""),
            )
            for name in sorted(self._expected())
        )
        identity = self.identity
        return NodeStatus(
            node=identity.name if identity else self.role,
            role=self.role,
            federation=engine.federation,
            jurisdiction=identity.jurisdiction if identity else "",
            state=self._state(),
            round=engine.current.number if engine.current else engine.model.round,
            rounds_total=self.rounds_total,
            participants=participants,
            last_report=last.to_json() if last else None,
            uptime_s=round(time.monotonic() - self.started, 3),
            plan_sha256=self.plan.sha256 if self.plan else "",
            model_sha256=engine.model.sha256,
            stop_requested=self.stop_requested,
        )
