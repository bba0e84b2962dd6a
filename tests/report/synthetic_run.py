"""Synthetic run folders for the report's tests: what ``fedsov simulate`` would leave,
written record by record with the engine's own types (RoundReport.to_json, the state
store), so no federation has to run.

The hierarchical one: a coordinator (EU) with a direct site (lyon, EU), agg-eu (EU:
paris, berlin) and agg-us (US: boston, austin, seattle; US exports only aggregates of
>= 3 sites with site-level DP). Four rounds; the coordinator's round 3 needs a second
attempt; berlin is late once and refused once; seattle misses round 2; boston
declines rounds 3 and 4 (its budget), so agg-us is below k and declines them too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedsov.messages import PrivacyReport
from fedsov.node.engine import RoundReport, SiteResult
from fedsov.node.state import RoundRow, TaskRow
from fedsov.node.state_sqlite import STATE_FILE, SqliteStateStore

PLAN = """
[federation]
name = "synthetic"
seed = 1

[model]
factory = "fedsov.simulation.models:mlp"
kwargs = { in_features = 64, hidden = 16, num_classes = 10 }

[rounds]
num_rounds = 4

[privacy]
noise_multiplier = 1.0
max_grad_norm = 1.0
delta = 1e-5

[[nodes]]
name = "coordinator"
tier = "global"
jurisdiction = "EU"

[[nodes]]
name = "agg-eu"
tier = "regional"
jurisdiction = "EU"
upstream = "coordinator"

[[nodes]]
name = "agg-us"
tier = "regional"
jurisdiction = "US"
upstream = "coordinator"

[[nodes]]
name = "lyon"
tier = "edge"
jurisdiction = "EU"
upstream = "coordinator"

[[nodes]]
name = "paris"
tier = "edge"
jurisdiction = "EU"
upstream = "agg-eu"

[[nodes]]
name = "berlin"
tier = "edge"
jurisdiction = "EU"
upstream = "agg-eu"

[[nodes]]
name = "boston"
tier = "edge"
jurisdiction = "US"
upstream = "agg-us"

[[nodes]]
name = "austin"
tier = "edge"
jurisdiction = "US"
upstream = "agg-us"

[[nodes]]
name = "seattle"
tier = "edge"
jurisdiction = "US"
upstream = "agg-us"

[policy.residency]
EU = ["EU"]
US = ["US", "EU"]

[policy.export]
US = { min_sites = 3, site_dp = true }

[policy.site_dp]
clip = 0.5
noise_multiplier = 0.5

[policy.budgets]
site_epsilon = 10.0
jurisdiction_epsilon = { EU = 5.0, US = 50.0 }
"""


@dataclass
class SyntheticRun:
    path: Path
    coordinator: list[dict[str, Any]] = field(default_factory=list)  # rounds.jsonl lines
    regions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # their reports


def _site(
    name: str, status: str, epsilon: float | None = None, *, reason: str = "", sites: int = 0
) -> SiteResult:
    privacy = None
    if status == "accepted" or epsilon is not None:
        privacy = PrivacyReport(
            enabled=epsilon is not None,
            epsilon=epsilon or 0.0,
            delta=1e-5,
            noise_multiplier=1.0,
            sample_rate=0.1,
            steps=3,
            total_steps=3,
            accountant="pld",
        )
    return SiteResult(
        site=name,
        task_id=f"task-{name}",
        status=status,
        reason=reason,
        num_examples=100 if status == "accepted" else 0,
        privacy=privacy,
        metrics={"sites": float(sites)} if sites else {},
    )


def _report(
    number: int,
    sites: list[SiteResult],
    *,
    attempt: int = 1,
    accuracy: float | None = None,
    loss: float | None = None,
) -> dict[str, Any]:
    metrics = {} if accuracy is None else {"accuracy": accuracy, "loss": loss, "examples": 50.0}
    return RoundReport(
        round=number,
        attempt=attempt,
        completed=accuracy is not None,
        model_sha256=f"{number:064x}",
        seconds=0.5,
        metrics=metrics,
        sites=tuple(replace(s, task_id=f"{s.site}-{number}-{attempt}") for s in sites),
        population=tuple(sorted(s.site for s in sites)),
    ).to_json()


def _coordinator_reports() -> list[dict[str, Any]]:
    reports, reason = _coordinator_rounds()
    return [_with_reason(r, reason) for r in reports]


def _coordinator_rounds() -> tuple[list[dict[str, Any]], str]:
    def at(
        n: int, eu: str, us: str, us_eps: float | None, lyon: float, **kw: Any
    ) -> dict[str, Any]:
        return _report(
            n,
            [
                _site("agg-eu", eu, sites=2 if eu == "accepted" else 0),
                _site("agg-us", us, us_eps, sites=3 if us == "accepted" else 0),
                _site("lyon", "accepted", lyon),
            ],
            **kw,
        )

    below_k = "below-k: only 2 of the 3 sites needed contributed; nothing is exported"
    return [
        at(1, "accepted", "accepted", 20.0, 1.1, accuracy=0.30, loss=2.0),
        at(2, "accepted", "accepted", 30.0, 1.6, accuracy=0.45, loss=1.7),
        at(3, "late", "declined", None, 2.0, attempt=1),  # too few updates: a second attempt
        at(3, "accepted", "declined", None, 2.4, attempt=2, accuracy=0.50, loss=1.5),
        at(4, "accepted", "declined", None, 2.9, accuracy=0.58, loss=1.3),
    ], below_k


def _with_reason(report: dict[str, Any], reason: str) -> dict[str, Any]:
    for s in report["sites"]:
        if s["status"] == "declined":
            s["reason"] = reason
    return report


def _eu_reports() -> list[dict[str, Any]]:
    return [
        _report(1, [_site("paris", "accepted", 1.0), _site("berlin", "accepted", 0.9)],
                accuracy=0.25, loss=2.1),
        _report(2, [_site("paris", "accepted", 2.0), _site("berlin", "late", reason="no update")],
                accuracy=0.40, loss=1.8),
        _report(3, [_site("paris", "accepted", 3.0), _site("berlin", "accepted", 1.8)],
                accuracy=0.48, loss=1.6),
        _report(4, [_site("paris", "accepted", 4.0),
                    _site("berlin", "rejected", reason="update norm past the bound")],
                accuracy=0.55, loss=1.4),
    ]  # fmt: skip


def _us_reports() -> list[dict[str, Any]]:
    budget = "budget-exhausted: round would take ε past the budget 10"
    return [
        _report(1, [_site("boston", "accepted", 5.0), _site("austin", "accepted", 2.0),
                    _site("seattle", "accepted", 2.0)], accuracy=0.20, loss=2.2),
        _report(2, [_site("boston", "accepted", 8.0), _site("austin", "accepted", 3.0)],
                accuracy=0.35, loss=1.9),
        _report(3, [_site("boston", "declined", reason=budget), _site("austin", "accepted", 4.0),
                    _site("seattle", "accepted", 3.0)]),
        _report(4, [_site("boston", "declined", reason=budget), _site("austin", "accepted", 5.0),
                    _site("seattle", "accepted", 4.0)]),
    ]  # fmt: skip


def _write_state(folder: Path, reports: list[dict[str, Any]]) -> None:
    """The regional aggregator's state store, holding ``reports`` as it closed them."""
    store = SqliteStateStore(folder / STATE_FILE)
    try:
        for r in reports:
            row = RoundRow(r["round"], r["attempt"], "0" * 64, 1, {}, 0.0)
            tasks = [TaskRow(s["task_id"], r["round"], r["attempt"], s["site"]) for s in r["sites"]]
            store.open_round(row, tasks)
            store.close_round(r["round"], r["attempt"], report=r, model=None, strategy_state={})
    finally:
        store.close()


def _summary(federation: str, reports: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    completed = [r for r in reports if r["completed"]]
    return {
        "federation": federation,
        "status": "completed",
        "rounds": len(completed),
        "attempts": len(reports),
        "final_accuracy": completed[-1]["metrics"]["accuracy"] if completed else None,
        "history": [
            {
                "round": r["round"],
                "attempt": r["attempt"],
                "completed": r["completed"],
                **r["metrics"],
            }
            for r in reports
        ],
        **extra,
    }


def _lines(reports: list[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in reports)


def write_hierarchical_run(path: Path) -> SyntheticRun:
    """The hierarchical run described above, at ``path``."""
    path.mkdir(parents=True)
    (path / "plan.toml").write_text(PLAN)
    run = SyntheticRun(
        path, _coordinator_reports(), {"agg-eu": _eu_reports(), "agg-us": _us_reports()}
    )
    (path / "rounds.jsonl").write_text(_lines(run.coordinator))
    (path / "summary.json").write_text(json.dumps(_summary("synthetic", run.coordinator)))
    for name, reports in run.regions.items():
        folder = path / "nodes" / name
        _write_state(folder, reports)
        summary = _summary("synthetic", reports, node=name, role="aggregator")
        (folder / "summary.json").write_text(json.dumps(summary))
    return run


def write_flat_run(path: Path, *, rounds: int = 3) -> SyntheticRun:
    """A flat run (no plan): three sites sending to the coordinator; site-3 joins late."""
    path.mkdir(parents=True)
    reports = [
        _report(
            n,
            [
                _site(f"site-{i}", "accepted", 0.5 * n + 0.1 * i)
                for i in (1, 2, 3)
                if n > 1 or i < 3
            ],
            accuracy=0.5 + 0.1 * n,
            loss=1.0 / n,
        )
        for n in range(1, rounds + 1)
    ]
    run = SyntheticRun(path, reports)
    (path / "rounds.jsonl").write_text(_lines(reports))
    (path / "summary.json").write_text(json.dumps(_summary("flat", reports)))
    return run
