"""A real coordinator output folder, written by the coordinator's own stores, no network.

Round 0 is the initial MLP; rounds 1 and 3 close in a two-tier federation (a region
and a direct site), round 2 as an older coordinator wrote it (contributors and
metrics only); round 3's first attempt failed and wrote no model.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fedsov.modelref import build_model
from fedsov.node.model import GlobalModel, ModelStore, state_to_numpy
from fedsov.node.state import ModelRow, RoundRow, TaskRow
from fedsov.node.state_sqlite import STATE_FILE, SqliteStateStore

FACTORY = "fedsov.simulation.models:mlp"
KWARGS = {"in_features": 64, "hidden": 16}
PLAN_SHA = "ab" * 32


def build() -> torch.nn.Module:
    return build_model(FACTORY, KWARGS)


def hierarchical(round: int, accuracy: float, loss: float) -> dict[str, Any]:
    return {
        "contributors": ["agg-eu", "site-us-1"],
        "sites": ["site-eu-1", "site-eu-2", "site-us-1"],
        "regions": ["agg-eu"],
        "epsilon": {"site-eu-1": 0.5 * round, "site-eu-2": 0.75 * round, "site-us-1": 1.0 * round},
        "site_level_epsilon": {"agg-eu": 0.25 * round},
        "plan_sha256": PLAN_SHA,
        "metrics": {"accuracy": accuracy, "loss": loss},
        "created": f"2025-01-0{round + 1}T12:00:00+00:00",
    }


METADATA: dict[int, dict[str, Any]] = {
    0: {"contributors": [], "sites": [], "plan_sha256": PLAN_SHA, "created": "2025-01-01T12:00:00"},
    1: hierarchical(1, 0.61, 1.39),
    2: {"contributors": ["site-us-1"], "metrics": {"accuracy": 0.7}},  # an older row
    3: hierarchical(3, 0.83, 1.17),
}


@dataclass(frozen=True)
class Federation:
    out: Path
    models: dict[int, GlobalModel]  # by round

    def sha(self, round: int) -> str:
        return self.models[round].sha256

    def blob(self, round: int) -> Path:
        return self.out / "models" / "blobs" / f"{self.sha(round)}.safetensors"


def write_federation(out: Path) -> Federation:
    store = ModelStore(out / "models")
    state = SqliteStateStore(out / STATE_FILE)
    state.bind("models-test", "f" * 64)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = GlobalModel.from_arrays(state_to_numpy(build()), round=0, parent=None)
    models = {0: model}
    state.add_model(row(store, model, METADATA[0]))
    attempts = [(1, 1, True), (2, 1, True), (3, 1, False), (3, 2, True)]
    for number, attempt, completed in attempts:
        base = models[number - 1]
        task = TaskRow(f"t{number}.{attempt}", number, attempt, "site-us-1")
        state.open_round(RoundRow(number, attempt, base.sha256, number, {}, 0.0), [task])
        new = None
        if completed:
            arrays = {
                k: (a + rng.normal(0, 0.01, a.shape)).astype(a.dtype)
                for k, a in base.arrays().items()
            }
            new = models[number] = GlobalModel.from_arrays(arrays, round=number, parent=base.sha256)
        state.close_round(
            number,
            attempt,
            report={"round": number, "completed": completed},
            model=None if new is None else row(store, new, METADATA[number]),
            strategy_state={},
        )
    state.close()
    return Federation(out, models)


def row(store: ModelStore, model: GlobalModel, metadata: dict[str, Any]) -> ModelRow:
    store.save(model, metadata)
    return ModelRow(
        model.sha256, model.round, model.parent, store.blob_name(model.sha256), metadata
    )


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return write_federation(tmp_path_factory.mktemp("fed") / "out")


@pytest.fixture
def federation(pristine: Federation, tmp_path: Path) -> Federation:
    """A copy of the federation's folder that a test may damage."""
    out = tmp_path / "out"
    shutil.copytree(pristine.out, out)
    return Federation(out, pristine.models)
