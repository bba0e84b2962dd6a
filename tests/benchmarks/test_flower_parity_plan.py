"""benchmarks/flower_parity/run.py's fedsov side: simulations/flower.toml without DP.

The Flower side needs Ray (the ``flower-sim`` extra), which CI does not install; the
fedsov side of a Flower-app plan runs end to end in tests/e2e/test_flower_simulation.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from fedsov.policy import check_plan, load_plan

ROOT = Path(__file__).resolve().parents[2]


def harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "flower_parity_run", ROOT / "benchmarks/flower_parity/run.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_parity_plan_is_the_flower_scenario_without_dp(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    harness().no_dp_plan(3, 2, path)
    plan, scenario = load_plan(path), load_plan(ROOT / "simulations/flower.toml")
    assert check_plan(plan) == []
    assert (plan.seed, plan.rounds.num_rounds, plan.privacy.enabled) == (3, 2, False)
    assert plan.nodes == scenario.nodes and plan.training == scenario.training
    assert plan.simulation is not None and scenario.simulation is not None
    trainer, original = plan.simulation.trainer, scenario.simulation.trainer
    assert trainer is not None and original is not None
    assert (trainer.app, trainer.app_dir) == (original.app, ROOT / "examples/flower-app")
    assert plan.simulation.partition == scenario.simulation.partition == "iid"
