"""The coordinator's schedule asks for a federated evaluation every evaluate_every rounds."""

from __future__ import annotations

import pytest

from fedsov.config import TrainingPlan
from fedsov.coordinator.schedule import Schedule
from fedsov.exceptions import ConfigError


def evaluated(plan: TrainingPlan, rounds: int = 9) -> list[int]:
    schedule = Schedule(num_rounds=rounds, max_attempts=1, training=plan)
    return [n for n in range(1, rounds + 1) if schedule.training_for(n).evaluate]


def test_rounds_1_then_every_kth_evaluate_the_model_they_start_from() -> None:
    assert evaluated(TrainingPlan(evaluate=True, evaluate_every=4)) == [1, 5, 9]
    assert evaluated(TrainingPlan(evaluate=True)) == list(range(1, 10))
    assert evaluated(TrainingPlan(evaluate=False, evaluate_every=2)) == []
    plan = Schedule(3, 1, TrainingPlan(evaluate=True, evaluate_every=2)).training_for(2)
    assert plan == TrainingPlan(evaluate=False, evaluate_every=2)  # the rest as it was


def test_evaluate_every_is_at_least_one() -> None:
    with pytest.raises(ConfigError, match="evaluate_every"):
        TrainingPlan(evaluate=True, evaluate_every=0)
