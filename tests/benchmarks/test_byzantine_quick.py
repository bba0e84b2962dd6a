"""benchmarks/byzantine/run.py end to end, tiny: 4 sites (1 attacker), 2 rounds, FedAvg."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--sites", "4", "--attackers", "1", "--rounds", "2", "--seeds", "1", "--hidden", "16"]


@pytest.fixture(scope="module")
def harness() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(
        "byzantine_run", ROOT / "benchmarks/byzantine/run.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def run(harness: ModuleType, out: Path, *extra: str) -> dict[str, Any]:
    assert harness.main([*QUICK, "--out", str(out), *extra]) == 0
    results: dict[str, Any] = json.loads((out / "results.json").read_text())
    return results


def test_honest_and_attacked_fedavg_run_through_rounds(harness: ModuleType, tmp_path: Path) -> None:
    results = run(harness, tmp_path, "--rules", "fedavg,no-such-rule")
    honest, attacked = results["runs"]
    assert (honest["rule"], honest["attacked"]) == ("fedavg", False)
    assert (attacked["rule"], attacked["attacked"]) == ("fedavg", True)
    for r in (honest, attacked):
        assert len(r["accuracy_by_round"]) == 2
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["refused"] == 0  # no bound by default: the rule alone must hold
        assert r["failed"] == 0
        assert r["diverged_round"] is None
    assert honest["attacker_sites"] == [] and len(attacked["attacker_sites"]) == 1
    assert attacked["attack_norm_max"] > honest["honest_norm_max"] > 0
    assert "create_strategy does not know it" in results["skipped"]["no-such-rule"]
    table = (tmp_path / "table.md").read_text()
    assert "| fedavg | - |" in table
    assert "no-such-rule: skipped" in table


def test_the_norm_bound_refuses_the_attacker_only(harness: ModuleType, tmp_path: Path) -> None:
    first = run(harness, tmp_path / "free", "--rules", "fedavg")["runs"][1]
    bound = (first["honest_norm_max"] + first["attack_norm_max"]) / 2
    (_, attacked) = run(
        harness, tmp_path / "bound", "--rules", "fedavg", "--max-update-norm", str(bound)
    )["runs"]
    # Seeded: each round the attack is ~10x an honest update, the honest ones pass.
    assert attacked["refused"] == 2  # the attacker, in each of the 2 rounds
    assert attacked["honest_norm_max"] < bound
