"""What the report's figures show, computed from a run's round records (no drawing here).

Each function returns frozen dataclasses whose numbers are the records' own (nothing
is smoothed or resampled), so a test can hold them against ``rounds.jsonl``:

- ``metrics_data``: accuracy and loss of every completed round, globally (the
  coordinator's evaluation) and per region (each regional aggregator's);
- ``epsilon_data``: the ε each site reported, round by round, to the node it sends
  to; per jurisdiction its worst site (parallel composition over disjoint sites)
  and what its regions exported (their site-level ε); the plan's budgets;
- ``participation_data``: each participant's outcome per round at the tier where
  it takes part (a site at its region, a region at the coordinator).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from fedsov.policy.plan import Tier
from fedsov.report.run import NodeRecords, RoundRecord, Run

__all__ = [
    "Cell",
    "EpsilonFigure",
    "JurisdictionEpsilon",
    "MetricsFigure",
    "Participant",
    "ParticipationFigure",
    "ParticipationRow",
    "Series",
    "SiteEpsilon",
    "epsilon_data",
    "metrics_data",
    "participants",
    "participation_data",
]


class Cell(StrEnum):
    """A participant's outcome in one round, as the heat map colours it."""

    ACCEPTED = "accepted"  # its update was folded in
    DECLINED = "declined"  # it declined the task (a budget spent, a region below k)
    LATE = "late"  # no update before the round closed
    REFUSED = "refused"  # its update was rejected by the receiving node
    ABSENT = "absent"  # no task that round (not connected, not drawn)


_CELL = {
    "accepted": Cell.ACCEPTED,
    "declined": Cell.DECLINED,
    "rejected": Cell.REFUSED,
    "late": Cell.LATE,
    "pending": Cell.LATE,  # a round closes its pending tasks as late; an older
    "receiving": Cell.LATE,  # record may still hold them
}


@dataclass(frozen=True)
class Series:
    """One line of a figure: a value per round, only where the records hold one."""

    label: str
    rounds: tuple[int, ...]
    values: tuple[float, ...]
    jurisdiction: str | None = None  # whose it is, when known: the figures colour by it


@dataclass(frozen=True)
class MetricsFigure:
    """Per-round accuracy and loss; the first series is the global one."""

    accuracy: tuple[Series, ...]
    loss: tuple[Series, ...]


@dataclass(frozen=True)
class Participant:
    """Who takes part where: a site or a region, and the node it sends to."""

    name: str
    upstream: str
    region: bool  # a regional aggregator (a participant of the coordinator)
    jurisdiction: str | None  # None: not known (no plan)

    @property
    def label(self) -> str:
        return f"{self.name} (region)" if self.region else self.name


@dataclass(frozen=True)
class SiteEpsilon:
    participant: Participant
    series: Series  # the ε it reported each round it took part (its running total)


@dataclass(frozen=True)
class JurisdictionEpsilon:
    jurisdiction: str
    worst_site: Series  # per round, the largest ε any of its sites had reported so far
    export: Series | None  # its regions' site-level ε, as sent upstream (None: none)
    budget: float | None  # the plan's jurisdiction_epsilon, which binds the export


@dataclass(frozen=True)
class EpsilonFigure:
    sites: tuple[SiteEpsilon, ...]
    site_budget: float | None  # the plan's site_epsilon
    jurisdictions: tuple[JurisdictionEpsilon, ...]  # () without a plan


@dataclass(frozen=True)
class ParticipationRow:
    participant: Participant
    cells: tuple[Cell, ...]  # one per round of ParticipationFigure.rounds


@dataclass(frozen=True)
class ParticipationFigure:
    rounds: tuple[int, ...]
    rows: tuple[ParticipationRow, ...]


def metrics_data(run: Run) -> MetricsFigure:
    """Accuracy and loss of each completed round: the coordinator's, then each region's."""
    nodes: list[tuple[str, str | None, NodeRecords]] = [
        (f"global ({run.coordinator.node})", None, run.coordinator)
    ]
    for name, records in run.regions.items():
        j = _jurisdiction(run, name)
        nodes.append((f"{name} ({j})" if j else name, j, records))

    def series(metric: str) -> tuple[Series, ...]:
        out = []
        for label, j, records in nodes:
            points = [
                (r.round, r.metrics[metric])
                for r in records.rounds
                if r.completed and metric in r.metrics  # one attempt of a round completes
            ]
            if points:
                out.append(Series(label, *_unzip(points), jurisdiction=j))
        return tuple(out)

    return MetricsFigure(accuracy=series("accuracy"), loss=series("loss"))


def participants(run: Run) -> tuple[Participant, ...]:
    """Every participant, grouped by the node it sends to: each region's sites (in plan
    order), then the coordinator's own participants (regions, sites sending directly)."""
    plan = run.plan
    if plan is None:
        regional = set(run.regions)
        aggregators = [*run.regions.values(), run.coordinator]
    else:  # a region of the plan without records still has its sites
        regional = {n.name for n in plan.nodes if n.tier is Tier.REGIONAL}
        aggregators = [
            run.regions.get(n.name) or NodeRecords(n.name, (), "")
            for n in plan.nodes
            if n.name in regional
        ]
        aggregators.append(run.coordinator)
    out: list[Participant] = []
    for agg in aggregators:
        names = [n.name for n in plan.children(agg.node)] if plan is not None else []
        seen = sorted({s.site for r in agg.rounds for s in r.sites} - set(names))
        out += [
            Participant(name, agg.node, name in regional, _jurisdiction(run, name))
            for name in [*names, *seen]
        ]
    return tuple(out)


def participation_data(run: Run) -> ParticipationFigure:
    """Each participant's outcome in every round, from the last attempt of that round at
    the node it sends to; a round that node has no record of is absent."""
    everyone = participants(run)
    nodes = [run.coordinator, *run.regions.values()]
    rounds = tuple(sorted({r.round for records in nodes for r in records.rounds}))
    last = {records.node: {r.round: r for r in _all_last(records)} for records in nodes}
    rows = []
    for p in everyone:
        held = last.get(p.upstream, {})
        cells = []
        for n in rounds:
            record = held.get(n)
            entry = next((s for s in record.sites if s.site == p.name), None) if record else None
            cells.append(Cell.ABSENT if entry is None else _CELL.get(entry.status, Cell.LATE))
        rows.append(ParticipationRow(p, tuple(cells)))
    return ParticipationFigure(rounds, tuple(rows))


def epsilon_data(run: Run) -> EpsilonFigure:
    """The ε of every site per round, and per jurisdiction, against the plan's budgets."""
    sites, exports = [], []
    for p in participants(run):
        records = run.records_of(p.upstream)
        series = _epsilon_series(p, records.rounds if records else ())
        if p.region:
            exports.append((p, series))
        elif series.rounds:
            sites.append(SiteEpsilon(p, series))
    plan = run.plan
    if plan is None:
        return EpsilonFigure(tuple(sites), None, ())
    budgets = plan.policy.budgets
    places = []
    for j in sorted({n.jurisdiction for n in plan.nodes}):
        mine = [s.series for s in sites if s.participant.jurisdiction == j]
        export = [s for p, s in exports if p.jurisdiction == j and s.rounds]
        places.append(
            JurisdictionEpsilon(
                jurisdiction=j,
                worst_site=_worst(f"{j} worst site", j, mine),
                export=_worst(f"{j} export (site-level)", j, export) if export else None,
                budget=budgets.jurisdiction_epsilon.get(j),
            )
        )
    return EpsilonFigure(tuple(sites), budgets.site_epsilon, tuple(places))


def _epsilon_series(p: Participant, rounds: Iterable[RoundRecord]) -> Series:
    """The ε ``p`` reported per round (the last attempt that carried one wins)."""
    by_round: dict[int, float] = {}
    for record in rounds:
        for entry in record.sites:
            if entry.site == p.name and entry.epsilon is not None:
                by_round[record.round] = entry.epsilon
    return Series(p.label, *_unzip(sorted(by_round.items())), jurisdiction=p.jurisdiction)


def _worst(label: str, jurisdiction: str, series: Sequence[Series]) -> Series:
    """Per round, the largest value any series has reached by then (ε only grows)."""
    rounds = sorted({n for s in series for n in s.rounds})
    latest: dict[int, float] = {}
    points = []
    for n in rounds:
        for i, s in enumerate(series):
            for m, v in zip(s.rounds, s.values, strict=True):
                if m == n:
                    latest[i] = v
        points.append((n, max(latest.values())))
    return Series(label, *_unzip(points), jurisdiction=jurisdiction)


def _all_last(records: NodeRecords) -> list[RoundRecord]:
    """The last attempt of each round (the one that counts), in round order."""
    last: dict[int, RoundRecord] = {}
    for r in records.rounds:
        if r.round not in last or r.attempt >= last[r.round].attempt:
            last[r.round] = r
    return [last[n] for n in sorted(last)]


def _unzip(points: Sequence[tuple[int, float]]) -> tuple[tuple[int, ...], tuple[float, ...]]:
    return tuple(n for n, _ in points), tuple(v for _, v in points)


def _jurisdiction(run: Run, name: str) -> str | None:
    if run.plan is None:
        return None
    return next((n.jurisdiction for n in run.plan.nodes if n.name == name), None)
