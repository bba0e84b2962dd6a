"""A scenario's ``[strategy]`` reaches the coordinator of ``fedsov simulate``: FedAdam's
moments are stored beside the final model, real processes over mTLS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_simulate import SCENARIO, simulate

FEDADAM = (
    SCENARIO.replace("num_rounds = 8", "num_rounds = 2").replace("hidden = 64", "hidden = 16")
    + '[strategy]\nname = "fedadam"\neta = 0.01\n'
)


@pytest.mark.e2e
def test_a_scenario_runs_with_its_strategy(tmp_path: Path) -> None:
    scenario = tmp_path / "adam.toml"
    scenario.write_text(FEDADAM)
    out = tmp_path / "run"
    assert "round   2/2" in simulate(scenario, out)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["status"], summary["rounds"]) == ("completed", 2)
    moments = sorted(out.rglob("*.strategy.safetensors"))
    assert [m.name for m in moments] == [f"{summary['model_sha256']}.strategy.safetensors"]
