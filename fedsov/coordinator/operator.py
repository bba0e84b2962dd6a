"""The coordinator's answer to an operator's stop: its schedule ends after the open round."""

from __future__ import annotations

from fedsov.coordinator.schedule import ScheduledEngine
from fedsov.node.status import NodeOperator
from fedsov.pki.identity import NodeIdentity

__all__ = ["CoordinatorOperator"]


class CoordinatorOperator(NodeOperator):
    """Status as every node gives it; a stop ends the federation (exit code 8)."""

    engine: ScheduledEngine

    def request_stop(self, operator: NodeIdentity, reason: str) -> str:
        detail = f"{reason} (operator {operator.name})"
        if not self.engine.request_stop("operator", detail):
            already = self.stop_requested or "the federation has finished"
            return f"nothing to do: {already}"
        self.stop_requested = detail
        if self.engine.current is not None:
            return (
                f"stopping after round {self.engine.current.number} closes; "
                "state is committed and every participant is told"
            )
        return "stopping now; state is committed and every participant is told"
