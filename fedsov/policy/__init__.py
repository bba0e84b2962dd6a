"""Federation plan, its static policy check, and run-time enforcement."""

from fedsov.policy.check import Violation, check_plan
from fedsov.policy.plan import ExportRule, Plan, PlanNode, Tier, load_plan

__all__ = ["ExportRule", "Plan", "PlanNode", "Tier", "Violation", "check_plan", "load_plan"]
