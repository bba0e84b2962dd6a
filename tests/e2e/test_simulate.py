"""A small federation end to end: real processes, real mTLS gRPC over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from opacus.accountants import PRVAccountant

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


@pytest.mark.e2e
def test_simulated_federation_trains_over_mtls_with_dp(tmp_path: Path) -> None:
    scenario = tmp_path / "e2e.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "round   8/8" in proc.stderr
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
        # The ε the site reported is what Opacus' own accountant gives for the same
        # (noise multiplier, sample rate, steps, δ).
        oracle = PRVAccountant()
        oracle.history = [(1.0, site["sample_rate"], site["total_steps"])]
        assert site["epsilon"] == pytest.approx(oracle.get_epsilon(1e-5), rel=1e-9)
        assert 0 < site["epsilon"] < 10

    # Every process logged through mTLS; the certificates are the simulation's own.
    assert (out / "pki" / "ca.pem").exists()
    coordinator_log = (out / "logs" / "coordinator.log").read_text()
    assert "Traceback" not in coordinator_log
