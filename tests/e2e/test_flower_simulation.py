"""``fedsov simulate`` of a plan whose sites run a Flower app: real processes, mTLS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "examples" / "flower-app"

PLAN = f"""
[federation]
name = "flower-e2e"
seed = 5

[model]
factory = "flower_app.task:Net"

[rounds]
num_rounds = 2
timeout_s = 60

[training]
local_epochs = 1
batch_size = 32
learning_rate = 0.5
evaluate = true

[privacy]
delta = 1e-5

[[nodes]]
name = "coordinator"
tier = "global"
jurisdiction = "EU"

[[nodes]]
name = "paris"
tier = "edge"
jurisdiction = "EU"
upstream = "coordinator"

[[nodes]]
name = "lyon"
tier = "edge"
jurisdiction = "EU"
upstream = "coordinator"

[policy.residency]
EU = ["EU"]

[simulation]
dataset = "digits"

[simulation.trainer]
kind = "flower"
app = "flower_app.client_app:app"
app_dir = "{APP}"
update_clip = 1.0
update_noise_multiplier = 0.05
eval_metrics = {{ eval_acc = [0.0, 1.0] }}
"""


@pytest.mark.e2e
def test_sites_running_a_flower_app_train_and_evaluate_with_update_level_dp(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN, encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedsov", "simulate", str(plan), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == 2
    assert summary["final_accuracy"] > 0.3  # two noisy rounds from 0.1
    for site in ("paris", "lyon"):
        entries = [
            json.loads(line)
            for line in (out / "configs" / f"{site}.privacy-ledger.jsonl").read_text().splitlines()
        ]
        # each round: the update, then the federated evaluation of the model received
        assert [(e["unit"], e["noise_multiplier"], e["steps"]) for e in entries] == [
            ("dataset", 0.05, 1)
        ] * 4
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    for r in rounds:  # the app's evaluate handler on each site's data, noised (z 0.05)
        assert (
            r["federated"]["eval_acc/examples"]
            == summary["sites"]["paris"]["examples"] + (summary["sites"]["lyon"]["examples"])
        )
        assert -0.5 < r["federated"]["eval_acc"] < 1.5  # in [0, 1] plus noise of sd 0.025
