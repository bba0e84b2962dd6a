"""The report's header and its table of jurisdictions, from a run and its plan."""

from __future__ import annotations

from dataclasses import dataclass

from fedsov.policy.plan import Tier
from fedsov.report.data import EpsilonFigure
from fedsov.report.run import Run

__all__ = ["Header", "JurisdictionRow", "header_data", "jurisdiction_rows"]


@dataclass(frozen=True)
class Header:
    federation: str
    status: str
    rounds_completed: int
    attempts: int
    rounds_planned: int | None
    final_accuracy: float | None
    plan_sha256: str | None  # None: a flat run, without a plan
    run_dir: str


@dataclass(frozen=True)
class JurisdictionRow:
    jurisdiction: str
    aggregators: tuple[str, ...]  # its coordinator or regional aggregators
    sites: tuple[str, ...]
    max_site_epsilon: float | None  # the worst of its sites, at the end
    site_budget: float | None
    export_epsilon: float | None  # what its regions exported, site-level, at the end
    export_budget: float | None  # the plan's jurisdiction_epsilon
    exports: str  # what may leave it: its export rule in words
    sends_to: tuple[str, ...]  # residency: where its nodes may send


def header_data(run: Run) -> Header:
    """Federation, status, rounds, final accuracy and plan hash; the summary's figures
    where the run has ended, else what the coordinator's records hold so far."""
    s, plan, records = run.summary, run.plan, run.coordinator.rounds
    completed = [r for r in records if r.completed]
    accuracy = s.get("final_accuracy")
    if not isinstance(accuracy, int | float):
        with_accuracy = [r.metrics["accuracy"] for r in completed if "accuracy" in r.metrics]
        accuracy = with_accuracy[-1] if with_accuracy else None
    federation = s.get("federation") or (plan.federation if plan else run.path.name)
    return Header(
        federation=str(federation),
        status=str(s.get("status") or "not ended (no summary.json yet)"),
        rounds_completed=len(completed),
        attempts=len(records),
        rounds_planned=plan.rounds.num_rounds if plan else None,
        final_accuracy=float(accuracy) if accuracy is not None else None,
        plan_sha256=plan.sha256 if plan else s.get("plan_sha256"),
        run_dir=str(run.path),
    )


def jurisdiction_rows(run: Run, epsilon: EpsilonFigure) -> tuple[JurisdictionRow, ...]:
    """One row per jurisdiction of the plan (none without one)."""
    plan = run.plan
    if plan is None:
        return ()
    by_place = {j.jurisdiction: j for j in epsilon.jurisdictions}
    rows = []
    for j in sorted({n.jurisdiction for n in plan.nodes}):
        mine = [n for n in plan.nodes if n.jurisdiction == j]
        eps = by_place.get(j)
        rule = plan.export_rule(j)
        if not rule.allow:
            exports = "nothing"
        else:
            exports = f"aggregates of >= {rule.min_sites} site(s)" + (
                ", with site-level DP" if rule.site_dp else ""
            )
        rows.append(
            JurisdictionRow(
                jurisdiction=j,
                aggregators=tuple(n.name for n in mine if n.tier is not Tier.EDGE),
                sites=tuple(n.name for n in mine if n.tier is Tier.EDGE),
                max_site_epsilon=_last(eps.worst_site.values) if eps else None,
                site_budget=plan.policy.budgets.site_epsilon,
                export_epsilon=_last(eps.export.values) if eps and eps.export else None,
                export_budget=plan.policy.budgets.jurisdiction_epsilon.get(j),
                exports=exports,
                sends_to=tuple(sorted(plan.residency_of(j))),
            )
        )
    return tuple(rows)


def _last(values: tuple[float, ...]) -> float | None:
    return values[-1] if values else None
