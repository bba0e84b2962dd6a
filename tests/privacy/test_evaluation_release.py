"""Federated evaluation's release (fedsov.privacy.evaluation): the noised sums a site
sends, how they add up upstream, and what its ε counts."""

from __future__ import annotations

import math
import statistics

import pytest

from fedsov.exceptions import ConfigError
from fedsov.privacy.evaluation import (
    EvalOutcome,
    MetricValue,
    federated_means,
    release,
    sum_releases,
)

ACC = MetricValue("accuracy", 0.75, 0.0, 1.0)
LOSS = MetricValue("loss", 12.0, 0.0, 10.0)  # clipped to 10


def test_without_dp_the_sums_are_exact_and_clipped() -> None:
    out = release(EvalOutcome((ACC, LOSS), 200, "record"), noise_multiplier=None, seed=1)
    assert out == {
        "eval/accuracy": pytest.approx(150.0),
        "eval/accuracy/n": 200.0,
        "eval/loss": pytest.approx(2000.0),
        "eval/loss/n": 200.0,
    }


@pytest.mark.parametrize(("unit", "scale"), [("record", 1.0), ("dataset", 200.0)])
def test_the_noise_on_each_sum_has_the_mechanisms_std(unit: str, scale: float) -> None:
    # k = 2 metrics, z = 4: std z·√k/2 on v; per record v is the sum (range 1 per
    # record), per dataset the mean's fraction (times n = 200 for the sum).
    z, n = 4.0, 200
    outcome = EvalOutcome((ACC, MetricValue("loss", 2.0, 0.0, 10.0)), n, unit)
    sums = [release(outcome, noise_multiplier=z, seed=i)["eval/accuracy"] for i in range(4000)]
    expected = z * math.sqrt(2) / 2 * scale
    assert statistics.fmean(sums) == pytest.approx(150.0, abs=6 * expected / math.sqrt(4000))
    assert statistics.stdev(sums) == pytest.approx(expected, rel=0.05)


def test_one_record_or_one_whole_dataset_moves_each_normalized_value_by_at_most_one() -> None:
    # With k metrics the release is then a Gaussian of sensitivity √k = 2C and std zC,
    # which the site's replace-one accountant counts as the step (σ = z, q = 1, 1 step):
    # tests/site/test_flower_trainer.py checks that step against the analytic Gaussian.
    n, span = 50, 10.0
    before = MetricValue("loss", 3.0, 0.0, span)
    worst = MetricValue("loss", 3.0 + span / n, 0.0, span)  # one record: 0 -> 10
    assert worst.normalized(n, per_record=True) - before.normalized(n, per_record=True) == (
        pytest.approx(1.0)
    )
    low, high = MetricValue("loss", -4.0, 0.0, span), MetricValue("loss", 99.0, 0.0, span)
    assert high.normalized(n, per_record=False) - low.normalized(n, per_record=False) == 1.0


def test_sums_and_counts_add_up_upstream_and_the_coordinator_divides() -> None:
    a = release(EvalOutcome((ACC,), 100, "record"), noise_multiplier=None, seed=0)
    b = release(
        EvalOutcome((MetricValue("accuracy", 0.5, 0.0, 1.0),), 300, "record"),
        noise_multiplier=None,
        seed=0,
    )
    region = sum_releases([a, b])
    assert region == {"eval/accuracy": pytest.approx(225.0), "eval/accuracy/n": 400.0}
    other = release(EvalOutcome((LOSS,), 50, "dataset"), noise_multiplier=None, seed=0)
    means = federated_means([region, other, {"sites": 2.0}])
    assert means == {
        "accuracy": pytest.approx(225.0 / 400),
        "accuracy/examples": 400.0,
        "loss": pytest.approx(10.0),
        "loss/examples": 50.0,
    }


def test_a_hostile_header_cannot_divide_by_zero_or_add_non_finite_sums() -> None:
    sums = sum_releases(
        [
            {"eval/accuracy": math.nan, "eval/accuracy/n": 10.0},
            {"eval/loss": 5.0, "eval/loss/n": 0.0},
            {"eval/x": 1.0},  # no count
            {"eval/accuracy": 3.0, "eval/accuracy/n": 4.0},
        ]
    )
    assert sums == {"eval/accuracy": 3.0, "eval/accuracy/n": 4.0}


def test_a_release_needs_sound_metrics() -> None:
    with pytest.raises(ConfigError, match="low < high"):
        release(
            EvalOutcome((MetricValue("a", 0.5, 1.0, 1.0),), 5, "record"),
            noise_multiplier=None,
            seed=0,
        )
    with pytest.raises(ConfigError, match="without '/'"):
        release(
            EvalOutcome((MetricValue("a/b", 0.5, 0.0, 1.0),), 5, "record"),
            noise_multiplier=None,
            seed=0,
        )
    with pytest.raises(ConfigError, match="1 to 8 metrics"):
        release(EvalOutcome((), 5, "record"), noise_multiplier=None, seed=0)
