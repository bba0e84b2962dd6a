"""Federation plan, its static policy check, and run-time enforcement."""

from fedsov.policy.check import Violation, check_plan
from fedsov.policy.plan import (
    Budgets,
    ExportRule,
    Plan,
    PlanNode,
    PlanNodeGroup,
    PlanRounds,
    Policy,
    SecureAggregationPolicy,
    SimulationSpec,
    Tier,
    load_plan,
)

__all__ = [
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
    "Violation",
    "check_plan",
    "load_plan",
]
