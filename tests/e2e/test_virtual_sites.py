"""Virtual sites: the same federation with a process per site and with site hosts.

With DP off and the reproducible seeds, both modes must give the same partition, the
same selection every round and the same model (up to the order uploads are summed in).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from virtual_runs import final_model, max_abs_diff, run

SCENARIO = """
name = "virtual"
seed = 11

[data]
dataset = "digits"
partition = "dirichlet"
alpha = 1.0
test_fraction = 0.2
sites = 4

[model]
factory = "fedsov.simulation.models:logistic"
kwargs = { in_features = 64, num_classes = 10 }

[rounds]
num_rounds = 3
min_sites = 4           # every site connected before round 1: the same population
min_updates = 3
sites_per_round = 3
timeout_s = 60

[training]
local_epochs = 1
batch_size = 32
learning_rate = 0.5

[privacy]
enabled = false
"""


def selections(out: Path) -> list[list[str]]:
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    return [sorted(s["site"] for s in r["sites"]) for r in rounds]


def test_process_and_virtual_sites_give_the_same_run(tmp_path: Path) -> None:
    scenario = tmp_path / "virtual.toml"
    scenario.write_text(SCENARIO)
    process = run(scenario, tmp_path / "process", "--mode", "process")
    virtual = run(scenario, tmp_path / "virtual", "--mode", "virtual", "--workers", "2")
    assert process["status"] == virtual["status"] == "completed"
    assert virtual["simulation"] == {**process["simulation"], "mode": "virtual", "workers": 2}
    # the same partition: each site's data file byte for byte
    for name in ("site-1", "site-2", "site-3", "site-4", "test"):
        a = (tmp_path / "process" / "data" / f"{name}.npz").read_bytes()
        assert a == (tmp_path / "virtual" / "data" / f"{name}.npz").read_bytes(), name
    # the same 3 of 4 sites every round
    chosen = selections(tmp_path / "process")
    assert chosen == selections(tmp_path / "virtual")
    assert len(chosen) == 3 and all(len(c) == 3 for c in chosen)
    # the same model
    diff = max_abs_diff(final_model(tmp_path / "process"), final_model(tmp_path / "virtual"))
    assert diff <= 1e-6, diff
    logs = sorted(p.name for p in (tmp_path / "virtual" / "logs").iterdir())
    assert logs == ["coordinator.log", "site-host-1.log", "site-host-2.log"]
    hosted = (tmp_path / "virtual" / "logs" / "site-host-1.log").read_text()
    assert '"site": "site-1"' in hosted and '"site": "site-3"' in hosted  # dealt round-robin


@pytest.mark.parametrize("given", [["--backend", "nope"], ["--mode", "threads"]])
def test_a_wrong_mode_or_backend_is_named(tmp_path: Path, given: list[str]) -> None:
    scenario = tmp_path / "virtual.toml"
    scenario.write_text(SCENARIO)
    cmd = [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(tmp_path / "o")]
    proc = subprocess.run([*cmd, *given], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "simulation." in proc.stderr and "is not one of" in proc.stderr
