"""A coordinator killed with SIGKILL at every point of a round resumes and loses nothing.

Real processes over mTLS: three sites stay up while the coordinator is killed at
each crash point of ``fedsov.faults`` (before, during and after uploads, during
the commit) and at a random moment, then started again with the same config.
With DP off, the final model equals that of an uninterrupted run, and the
receipts in the state store count every site once per round.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from crashkit import Federation

from fedsov.faults import POINTS

pytestmark = pytest.mark.e2e

ROUNDS = 6
# Each entry: the coordinator dies at this point (POINT@ROUND[#N]); "random@R": at a
# random moment soon after round R opened. Every point of fedsov.faults appears.
SCHEDULE = [
    "round-opened@1",
    "tasks-pushed@1",
    "upload-folding@1",
    "upload-spooled@2",
    "upload-acknowledged@2",
    "upload-acknowledged@2#2",
    "round-closing@3",
    "model-written@3",
    "round-committed@3",
    "upload-folding@4#2",
    "round-opened@5",
    "round-committed@5",
    "random@6",
]


def run_uninterrupted(out: Path) -> dict[str, np.ndarray]:
    fed = Federation(out, rounds=ROUNDS)
    try:
        fed.start_coordinator()
        fed.start_sites()
        assert fed.wait_coordinator() == 0, fed.log_tail()
        return fed.final_model()
    finally:
        fed.stop()


def test_schedule_covers_every_crash_point() -> None:
    named = {entry.partition("@")[0] for entry in SCHEDULE}
    assert named == {*POINTS, "random"}
    assert len(SCHEDULE) >= 10


def test_coordinator_killed_at_every_point_resumes_to_the_same_model(tmp_path: Path) -> None:
    reference = run_uninterrupted(tmp_path / "reference")
    fed = Federation(tmp_path / "crashed", rounds=ROUNDS)
    rng = random.Random(20261123)
    try:
        for step, crash_at in enumerate(SCHEDULE):
            point, _, round_text = crash_at.partition("@")
            if point == "random":
                fed.start_coordinator()
                fed.wait_for_log(f"round {round_text} opened")
                time.sleep(rng.uniform(0.0, 0.3))
                fed.kill_coordinator()
                continue
            fed.start_coordinator(crash_at)
            if step == 0:
                fed.start_sites()
            code = fed.wait_coordinator()
            assert code == -signal.SIGKILL, f"{crash_at}: exit {code}\n{fed.log_tail()}"
        fed.start_coordinator()
        assert fed.wait_coordinator() == 0, fed.log_tail()
        final = fed.final_model()
        site_codes = [proc.wait(60) for proc in fed.sites.values()]
    finally:
        fed.stop()
    assert site_codes == [0] * len(fed.names)  # every site heard the federation finish

    summary = json.loads((fed.coordinator_out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds"] == ROUNDS
    assert fed.starts == len(SCHEDULE) + 1
    assert final.keys() == reference.keys()
    worst = max(float(np.max(np.abs(final[k] - reference[k]))) for k in final)
    print(f"final model vs uninterrupted run: max abs difference {worst:.3g}")
    assert worst <= 1e-6, f"max abs difference {worst}"

    db = sqlite3.connect(fed.coordinator_out / "state" / "fedsov.db")
    completed = db.execute(
        "SELECT number, attempt FROM rounds WHERE state = 'completed' ORDER BY number"
    ).fetchall()
    assert [n for n, _ in completed] == list(range(1, ROUNDS + 1))
    for number, attempt in completed:
        sites = [
            s
            for (s,) in db.execute(
                "SELECT site FROM receipts WHERE round = ? AND attempt = ?", (number, attempt)
            )
        ]
        assert sorted(sites) == fed.names, f"round {number}: receipts {sites}"
    duplicates = db.execute(
        "SELECT round, attempt, site, COUNT(*) FROM receipts GROUP BY round, attempt, site "
        "HAVING COUNT(*) > 1"
    ).fetchall()
    assert duplicates == []
    models = db.execute("SELECT round, parent FROM models ORDER BY round").fetchall()
    assert [r for r, _ in models] == list(range(ROUNDS + 1))  # one version per round
    db.close()
    rounds_log = (fed.coordinator_out / "rounds.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in rounds_log if json.loads(line)["completed"]] == [
        *range(1, ROUNDS + 1)
    ]
