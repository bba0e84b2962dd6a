"""A small federation end to end: real processes, real mTLS gRPC over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dp_accounting import dp_event
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation

SCENARIO = """
name = "e2e"
seed = 3

[data]
dataset = "digits"
partition = "iid"
test_fraction = 0.2
sites = 3

[model]
factory = "fedsov.simulation.models:mlp"
kwargs = { in_features = 64, hidden = 64, num_classes = 10 }

[rounds]
num_rounds = 8
timeout_s = 60

[training]
local_epochs = 1
batch_size = 64
learning_rate = 1.0

[privacy]
noise_multiplier = 1.0
max_grad_norm = 1.0
delta = 1e-5
"""


def simulate(scenario: Path, out: Path) -> str:
    """Run ``fedsov simulate`` as a user would; returns its stderr (the round log)."""
    proc = subprocess.run(
        [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


@pytest.mark.e2e
def test_simulated_federation_trains_over_mtls_with_dp(tmp_path: Path) -> None:
    scenario = tmp_path / "e2e.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    assert "round   8/8" in simulate(scenario, out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["rounds"] == 8
    assert summary["final_accuracy"] >= 0.80
    assert len(summary["model_sha256"]) == 64
    model_file = Path(summary["model_file"])
    assert model_file.exists()
    expected_line = f"{model_file.name}"
    assert expected_line in model_file.with_suffix(".safetensors.sha256").read_text()

    assert sorted(summary["sites"]) == ["site-1", "site-2", "site-3"]
    for name, site in summary["sites"].items():
        assert site["rounds_contributed"] == 8, name
        assert site["examples"] > 400
        assert site["delta"] == 1e-5
        # The ε the site reported is dp-accounting's for replace-one neighbours (the
        # relation the docs name: N is public) and the same (σ, q, steps, δ): equal up
        # to the site's coarser, pessimistic discretisation (never below).
        oracle = PLDAccountant(NeighboringRelation.REPLACE_ONE, value_discretization_interval=1e-4)
        event = dp_event.PoissonSampledDpEvent(site["sample_rate"], dp_event.GaussianDpEvent(1.0))
        reference = oracle.compose(event, site["total_steps"]).get_epsilon(1e-5)
        assert reference * (1 - 1e-9) <= site["epsilon"] <= reference * (1 + 5e-3)
        assert 0 < site["epsilon"] < 20

    # What the coordinator recorded of each update: nothing computed from a site's data
    # without noise (no loss, no time), only the DP-protected update's public metadata.
    records = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert len(records) == 8
    for record in records:
        for result in record["sites"]:
            assert result["metrics"] == {}, result
    text = (out / "rounds.jsonl").read_text()
    assert "train_loss" not in text and "train_seconds" not in text

    # Every process logged through mTLS; the certificates are the simulation's own.
    assert (out / "pki" / "ca.pem").exists()
    coordinator_log = (out / "logs" / "coordinator.log").read_text()
    assert "Traceback" not in coordinator_log


ONE_SITE = (
    SCENARIO.replace("sites = 3", "sites = 1")
    .replace("num_rounds = 8", "num_rounds = 2")
    .replace("hidden = 64", "hidden = 16")
)


@pytest.mark.e2e
def test_two_runs_of_one_scenario_publish_different_models(tmp_path: Path) -> None:
    """The DP randomness is secret: the same config, seed and data give another model
    every run, so an upstream that knows them all cannot replay a site's training."""
    scenario = tmp_path / "one.toml"
    scenario.write_text(ONE_SITE)
    models = []
    for run in ("a", "b"):
        out = tmp_path / run
        simulate(scenario, out)
        models.append(json.loads((out / "summary.json").read_text())["model_sha256"])
    assert models[0] != models[1]
