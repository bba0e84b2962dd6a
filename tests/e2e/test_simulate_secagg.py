"""Secure aggregation end to end: real site agents and coordinator processes, mTLS.

With DP off and the reproducible mode (tests only), the same scenario with and
without ``[secure_aggregation]`` trains the same model, up to the quantization error;
the coordinator's audit ledger records each secure round (never a key or a share).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

SCENARIO = """
name = "secagg-e2e"
seed = 5

[data]
dataset = "digits"
partition = "iid"
test_fraction = 0.2
sites = 3

[model]
factory = "fedsov.simulation.models:logistic"
kwargs = { in_features = 64, num_classes = 10 }

[rounds]
num_rounds = 2
timeout_s = 60

[training]
local_epochs = 1
batch_size = 64
learning_rate = 0.5

[privacy]
enabled = false
"""


def simulate(scenario: Path, out: Path) -> dict[str, object]:
    env = os.environ | {"FEDSOV_INSECURE_REPRODUCIBLE": "1"}  # the same training both times
    proc = subprocess.run(
        [sys.executable, "-m", "fedsov", "simulate", str(scenario), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


def final_model(out: Path) -> dict[str, np.ndarray]:
    (path,) = sorted((out / "models").glob("round-0002.safetensors"))
    return load_file(str(path))


def test_secure_run_equals_plain_run(tmp_path: Path) -> None:
    plain, secure = tmp_path / "plain.toml", tmp_path / "secure.toml"
    plain.write_text(SCENARIO)
    secure.write_text(SCENARIO + "\n[secure_aggregation]\nthreshold = 2\nstage_timeout_s = 20\n")
    simulate(plain, tmp_path / "plain")
    simulate(secure, tmp_path / "secure")
    a, b = final_model(tmp_path / "plain"), final_model(tmp_path / "secure")
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-5)
    events = [
        json.loads(line)
        for line in (tmp_path / "secure" / "audit" / "ledger.jsonl").read_text().splitlines()
    ]
    secured = [e for e in events if e["event"] == "secure-aggregate"]
    assert [e["round"] for e in secured] == [1, 2]
    for e in secured:
        assert e["detail"]["protocol"] == "secagg+" and e["detail"]["completed"]
        assert e["detail"]["survivors"] == ["site-1", "site-2", "site-3"]
        assert e["detail"]["threshold"] == 2
    text = (tmp_path / "secure" / "audit" / "ledger.jsonl").read_text()
    assert "cipher_key" not in text and "ciphertext" not in text
