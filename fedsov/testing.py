"""Helpers for tests and benchmarks: a round engine without config files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from fedsov.coordinator.engine import Engine, EngineSettings
from fedsov.coordinator.model import GlobalModel, ModelStore
from fedsov.messages import TrainingPlan
from fedsov.strategy import FedAvg

__all__ = ["make_engine"]

DEFAULT_PLAN = TrainingPlan(local_epochs=1, batch_size=8, learning_rate=0.1)


def make_engine(
    tmp_path: Path,
    initial: Mapping[str, np.ndarray],
    *,
    federation: str,
    num_rounds: int = 1,
    min_sites: int = 1,
    min_updates: int = 1,
    timeout_s: float = 30.0,
    plan: TrainingPlan = DEFAULT_PLAN,
) -> Engine:
    """A FedAvg round engine over ``initial``, storing models under ``tmp_path``."""
    return Engine(
        EngineSettings(
            federation=federation,
            num_rounds=num_rounds,
            min_sites=min_sites,
            min_updates=min_updates,
            sites_per_round=0,
            round_timeout_s=timeout_s,
            start_timeout_s=timeout_s,
            max_attempts=1,
            plan=plan,
            seed=0,
            heartbeat_s=1.0,
        ),
        initial=GlobalModel.from_arrays(initial, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
    )
