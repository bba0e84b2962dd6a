"""`fedsov status` and `fedsov stop` on a running consortium simulation (every tier real).

`fedsov simulate PLAN` issues the researcher an operator certificate and writes
RUN/operator.toml once the coordinator listens. The test asks the coordinator for its
status (round, participants by jurisdiction), is refused with a site's certificate,
then stops the federation: `fedsov simulate` exits with the operator-stop code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsov.exitcodes import ExitCode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "provision"))
from small_consortium import small_consortium

pytestmark = pytest.mark.e2e

ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
# Far more rounds than the test waits for: it stops the federation after round 1.
ROUNDS = 40


def fedsov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fedsov", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
    )


def wait_for(path: Path, proc: subprocess.Popen[bytes], lines: int = 1) -> None:
    deadline = time.monotonic() + 240
    while not path.exists() or len(path.read_text().splitlines()) < lines:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {path.name} (simulate exited {proc.poll()})")
        time.sleep(0.1)


def test_status_and_stop_of_a_running_consortium(tmp_path: Path) -> None:
    plan = small_consortium(tmp_path / "consortium.toml", rounds=ROUNDS)
    run = tmp_path / "run"
    with open(tmp_path / "simulate.log", "wb") as log:
        sim = subprocess.Popen(
            [sys.executable, "-m", "fedsov", "simulate", str(plan), "--out", str(run)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=ENV,
            start_new_session=True,  # its nodes too: the finally kills the whole group
        )
    try:
        wait_for(run / "operator.toml", sim)
        wait_for(run / "rounds.jsonl", sim)  # round 1 closed
        status = fedsov("status", "--config", str(run / "operator.toml"), "--json")
        paris = run / "pki" / "paris"
        as_site = fedsov(
            "status",
            "--config",
            str(run / "operator.toml"),
            "--cert",
            str(paris / "paris.pem"),
            "--key",
            str(paris / "paris.key"),
        )
        stop = fedsov("stop", "--config", str(run / "operator.toml"), "--reason", "enough")
        code = sim.wait(240)
    finally:
        if sim.poll() is None:
            os.killpg(sim.pid, signal.SIGKILL)
            sim.wait(30)
    log_tail = (tmp_path / "simulate.log").read_text(errors="replace")[-3000:]
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["role"] == "coordinator" and shown["rounds_total"] == ROUNDS
    assert 1 <= shown["round"] < ROUNDS
    assert {p["name"]: p["jurisdiction"] for p in shown["participants"]} == {
        "agg-eu": "EU",
        "agg-in": "IN",
    }
    assert all(p["connected"] for p in shown["participants"])
    assert shown["last_report"]["round"] >= 1
    assert as_site.returncode == 2 and "PERMISSION_DENIED" in as_site.stderr, as_site.stderr
    assert stop.returncode == 0, stop.stderr
    assert code == ExitCode.OPERATOR_STOP, log_tail
    summary = json.loads((run / "summary.json").read_text())
    assert "operator" in summary["status"] and "enough" in summary["status"]
    assert summary["rounds"] < ROUNDS
