"""``fedsov simulate simulations/guardrails/<kind>.toml``: real sites train until the
coordinator's guardrail trips; the run stops cleanly with the rule named in
summary.json, the audit ledger and the exit code, and every site is told.

Measured on two shared cores: about 8 s a scenario (process start-up dominates), 16 s
for wall-time (12 s of rounds); about 50 s for the five."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsov.audit.verify import verify_ledger
from fedsov.exitcodes import GUARDRAIL_EXIT

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).resolve().parents[2] / "simulations" / "guardrails"


EXPECTED = {  # what each scenario's stop says, whatever the DP noise did
    "wall-time": "its limit max_wall_time_s is 12 s",
    "compute-budget": "training seconds, past max_site_training_s = 0.25",
    "privacy-ceiling": "passed its ceiling 1 after round",
    "no-improvement": "by more than min_delta 1 for 2 rounds",
    "regression": "above the best",
}


@pytest.mark.parametrize("kind", sorted(GUARDRAIL_EXIT))
def test_a_guardrail_scenario_stops_with_its_rule_and_exit_code(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fedsov",
            "simulate",
            str(SCENARIOS / f"{kind}.toml"),
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=240,
    )
    print(f"{kind}: fedsov simulate took {time.monotonic() - started:.1f} s")
    assert proc.returncode == GUARDRAIL_EXIT[kind], proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop"]["kind"] == kind
    assert summary["stop"]["exit_code"] == GUARDRAIL_EXIT[kind]
    assert summary["status"] == f"stopped by guardrail {kind}: {summary['stop']['detail']}"
    assert f"coordinator stopped: guardrail {kind}" in proc.stderr
    assert "exited with code" not in proc.stderr  # every site ended cleanly, told
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    accepted = [s for r in rounds for s in r["sites"] if s["status"] == "accepted"]
    assert accepted and all(s["metrics"]["training_seconds"] >= 0.1 for s in accepted)
    events = [
        json.loads(line) for line in (out / "audit" / "ledger.jsonl").read_text().splitlines()
    ]
    (stop,) = [e for e in events if e["event"] == "guardrail-stop"]
    assert stop["decision"] == kind and stop["detail"]["exit_code"] == GUARDRAIL_EXIT[kind]
    assert verify_ledger(out / "audit" / "ledger.jsonl").ok
    assert EXPECTED[kind] in summary["stop"]["detail"]
    for log in sorted((out / "logs").glob("site-*.log")):  # told, not terminated
        assert "stopped by SIGTERM" not in log.read_text(errors="replace"), log.name
    if kind == "compute-budget":  # 0.1 s at least a round: round 3 at the latest
        assert summary["rounds"] <= 3
    if kind == "no-improvement":
        assert summary["rounds"] == 3
