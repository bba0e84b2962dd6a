"""``Guardrails.check``: each stop rule on synthetic round reports, and what it says."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from fedsov.config import GuardrailSettings
from fedsov.coordinator.guardrails import Guardrails, Trip, signal_stop
from fedsov.exitcodes import GUARDRAIL_EXIT, ExitCode
from fedsov.messages import PrivacyReport
from fedsov.node.engine import RoundReport, SiteResult

JURISDICTIONS = {"paris": "EU", "berlin": "EU", "mumbai": "IN", "agg-us": "US"}


def site(
    name: str,
    *,
    epsilon: float | None = 1.0,
    seconds: float | None = None,
    status: str = "accepted",
    contributors: tuple[str, ...] = (),
) -> SiteResult:
    privacy = (
        PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)
        if epsilon is None
        else PrivacyReport(enabled=True, epsilon=epsilon, delta=1e-5)
    )
    metrics = {} if seconds is None else {"training_seconds": seconds}
    return SiteResult(name, f"t-{name}", status, "", 100, privacy, metrics, contributors)


def report(
    number: int,
    *sites: SiteResult,
    metrics: Mapping[str, float] | None = None,
    completed: bool = True,
    seconds: float = 60.0,
) -> RoundReport:
    return RoundReport(number, 1, completed, "a" * 64, seconds, dict(metrics or {}), sites)


def rules(**settings: object) -> Guardrails:
    return Guardrails(GuardrailSettings(**settings), JURISDICTIONS.get)  # type: ignore[arg-type]


def accuracy(*values: float) -> list[RoundReport]:
    return [report(i, site("paris"), metrics={"accuracy": v}) for i, v in enumerate(values, 1)]


def test_no_rule_set_never_trips() -> None:
    reports = [report(1, site("paris", epsilon=None, seconds=1e6), metrics={"accuracy": 0.1})]
    assert rules().check(reports, elapsed_s=1e9) is None


def test_wall_time_trips_at_its_limit() -> None:
    g = rules(max_wall_time_s=60.0)
    assert g.check([report(1, site("paris"))], elapsed_s=59.9) is None
    trip = g.check([report(1, site("paris"))], elapsed_s=61.25)
    assert trip == Trip(
        "wall-time", "the federation ran 61.2 s, its limit max_wall_time_s is 60 s (after round 1)"
    )
    assert trip.exit_code is ExitCode.WALL_TIME


def test_the_privacy_ceiling_is_per_jurisdiction_over_its_worst_participant() -> None:
    g = rules(epsilon_ceiling={"EU": 8.0, "IN": 20.0})
    reports = [
        report(5, site("paris", epsilon=7.9), site("mumbai", epsilon=12.0)),
        report(6, site("paris", epsilon=7.95), site("berlin", epsilon=8.31)),
    ]
    assert g.check(reports[:1], 0.0) is None  # IN's 12 is under its own ceiling
    trip = g.check(reports, 0.0)
    assert trip == Trip(
        "privacy-ceiling", "EU's worst site ε 8.31 (berlin) passed its ceiling 8 after round 6"
    )
    assert trip.exit_code is ExitCode.PRIVACY_CEILING


def test_a_ceiling_of_every_jurisdiction_and_a_site_without_dp() -> None:
    g = rules(epsilon_ceiling={"*": 100.0})
    trip = g.check([report(1, site("mumbai", epsilon=None))], 0.0)
    assert trip is not None and trip.kind == "privacy-ceiling"
    assert trip.detail.startswith("IN's worst site ε ∞ (no DP) (mumbai) passed its ceiling 100")


def test_only_accepted_updates_count_and_a_stranger_only_under_every_jurisdiction() -> None:
    reports = [
        report(1, site("paris", epsilon=50.0, status="rejected"), site("stranger", epsilon=50.0))
    ]
    assert rules(epsilon_ceiling={"EU": 1.0}).check(reports, 0.0) is None
    trip = rules(epsilon_ceiling={"*": 1.0}).check(reports, 0.0)
    assert trip is not None and trip.detail.startswith(
        "unknown jurisdiction's worst site ε 50 (stranger)"
    )


def test_a_region_reports_its_site_level_epsilon_and_none_without_site_dp() -> None:
    g = rules(epsilon_ceiling={"US": 2.0})
    behind = ("nyc", "boston")
    plain = report(1, site("agg-us", epsilon=None, contributors=behind))
    assert g.check([plain], 0.0) is None  # no site-level DP: its sites' ε stays in the region
    dp = report(2, site("agg-us", epsilon=2.5, contributors=behind))
    trip = g.check([plain, dp], 0.0)
    assert trip is not None and trip.detail.startswith("US's worst region ε 2.5 (agg-us)")


def test_compute_budget_per_site() -> None:
    g = rules(max_site_training_s=10.0)
    reports = [report(n, site("paris", seconds=4.0), site("berlin", seconds=1.0)) for n in (1, 2)]
    assert g.check(reports, 0.0) is None
    reports.append(report(3, site("paris", seconds=4.0), site("berlin", status="late")))
    trip = g.check(reports, 0.0)
    assert trip == Trip(
        "compute-budget",
        "site paris reported 12.0 training seconds, past max_site_training_s = 10 after round 3",
    )
    assert trip.exit_code is ExitCode.COMPUTE_BUDGET


def test_compute_budget_per_jurisdiction_counts_regions_sites_too() -> None:
    g = rules(max_jurisdiction_training_s={"EU": 10.0, "*": 100.0})
    region = site("agg-us", seconds=90.0, contributors=("nyc", "boston"))
    reports = [report(1, site("paris", seconds=6.0), site("berlin", seconds=3.0), region)]
    assert g.check(reports, 0.0) is None
    reports.append(report(2, site("paris", seconds=1.5), site("agg-us", seconds=11.0)))
    trip = g.check(reports, 0.0)
    assert trip is not None and trip.kind == "compute-budget"
    assert trip.detail == (
        "EU's sites reported 10.5 training seconds, past its max_jurisdiction_training_s 10 "
        "after round 2"
    )
    trip = rules(max_jurisdiction_training_s=100.0).check(reports, 0.0)
    assert trip is not None and trip.detail.startswith("US's sites reported 101.0")


def test_a_claim_is_bounded_by_what_the_coordinator_saw() -> None:
    """A site cannot train longer than its round was open (a hostile one cannot end the
    federation by claiming a year); a region, once per site behind it."""
    g = rules(max_site_training_s=100.0, max_jurisdiction_training_s={"US": 25.0})
    hostile = report(1, site("paris", seconds=3e7), seconds=60.0)
    assert g.check([hostile], 0.0) is None  # counted as 60 s
    assert g.check([hostile, hostile], 0.0) is not None  # 120 s
    for bad in (math.inf, -5.0):  # not finite (never on the wire), negative: nothing
        assert g.check([report(1, site("paris", seconds=bad))] * 9, 0.0) is None
    region = site("agg-us", seconds=1e6, contributors=("nyc", "boston"))
    assert g.check([report(1, region, seconds=12.0)], 0.0) is None  # 2 sites x 12 s
    trip = g.check([report(1, region, seconds=12.6)], 0.0)
    assert trip is not None and trip.detail.startswith("US's sites reported 25.2 training")


def test_no_improvement_for_n_rounds() -> None:
    g = rules(no_improvement_rounds=2, min_delta=0.01)
    assert g.check(accuracy(0.5, 0.6, 0.605), 0.0) is None  # one round without
    trip = g.check(accuracy(0.5, 0.6, 0.605, 0.59), 0.0)
    assert trip == Trip(
        "no-improvement",
        "accuracy has not improved on 0.6 (round 2) by more than min_delta 0.01 for 2 rounds "
        "(no_improvement_rounds 2)",
    )
    assert trip.exit_code is ExitCode.NO_IMPROVEMENT
    assert g.check(accuracy(0.5, 0.6, 0.605, 0.62), 0.0) is None  # 0.62 beats 0.6 + 0.01


def test_no_improvement_skips_failed_rounds_and_rounds_without_the_metric() -> None:
    g = rules(no_improvement_rounds=1)
    reports = [
        report(1, site("paris"), metrics={"accuracy": 0.5}),
        report(2, site("paris"), metrics={"accuracy": 0.1}, completed=False),
        report(2, site("paris"), metrics={"loss": 2.0}),
    ]
    assert g.check(reports, 0.0) is None


def test_regression_from_the_best_round() -> None:
    g = rules(max_drop=0.1)
    assert g.check(accuracy(0.7, 0.82, 0.75), 0.0) is None  # 0.07 below: within
    trip = g.check(accuracy(0.7, 0.82, 0.75, 0.61), 0.0)
    assert trip == Trip(
        "regression",
        "accuracy 0.61 after round 4 is 0.21 below the best, 0.82 after round 2 (max_drop 0.1)",
    )
    assert trip.exit_code is ExitCode.REGRESSION


def test_a_metric_where_lower_is_better() -> None:
    losses = [
        report(i, site("paris"), metrics={"loss": v}) for i, v in enumerate((2.0, 1.2, 1.9), 1)
    ]
    trip = rules(metric="loss", mode="min", max_drop=0.5).check(losses, 0.0)
    assert trip is not None and trip.detail == (
        "loss 1.9 after round 3 is 0.7 above the best, 1.2 after round 2 (max_drop 0.5)"
    )
    trip = rules(metric="loss", mode="min", no_improvement_rounds=1).check(losses, 0.0)
    assert trip is not None and "not improved on 1.2 (round 2)" in trip.detail


def test_the_first_rule_that_trips_is_named() -> None:
    g = rules(max_wall_time_s=1.0, max_drop=0.0, epsilon_ceiling={"EU": 0.5})
    trip = g.check(accuracy(0.9, 0.1), elapsed_s=10.0)
    assert trip is not None and trip.kind == "privacy-ceiling"


def test_every_kind_has_its_exit_code_and_status() -> None:
    for kind, code in GUARDRAIL_EXIT.items():
        trip = Trip(kind, "why")
        assert trip.exit_code is code
        assert trip.status == f"stopped by guardrail {kind}: why"
        assert trip.to_json() == {"kind": kind, "detail": "why", "exit_code": int(code)}
    operator = Trip("operator", "maintenance (operator ops)")
    assert operator.exit_code is ExitCode.OPERATOR_STOP and int(operator.exit_code) == 8
    assert operator.status == "stopped by operator: maintenance (operator ops)"
    with pytest.raises(ValueError, match="no stop of kind 'bored'"):
        Trip("bored", "x")
    assert signal_stop("SIGTERM")["exit_code"] == 143
    assert signal_stop("SIGINT") == {"kind": "signal", "detail": "SIGINT", "exit_code": 130}
