"""A regional aggregator killed mid-round (or stopped with SIGTERM) resumes from its state.

Real processes from a plan: coordinator <- agg-eu <- paris, berlin. The aggregator
dies at crash points of its regional rounds and is stopped once gracefully; each
time it is started again with the same config. With DP off the final global model
equals that of an uninterrupted run, and the region counted every site once a round.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.numpy
from rich.console import Console

from fedsov.config import write_toml
from fedsov.exitcodes import ExitCode
from fedsov.faults import ENV as CRASH_ENV
from fedsov.faults import STOP_ENV
from fedsov.policy.plan import load_plan
from fedsov.simulation.hierarchy import (
    Deployment,
    aggregator_config,
    coordinator_config,
    prepare_deployment,
    site_config,
)
from fedsov.simulation.processes import ProcessGroup

pytestmark = pytest.mark.e2e

ROUNDS = 4
PLAN = """
[federation]
name = "regional"
seed = 4

[model]
factory = "fedsov.simulation.models:mlp"
kwargs = { in_features = 64, hidden = 16, num_classes = 10 }

[rounds]
num_rounds = 4
timeout_s = 60

[training]
local_epochs = 1
batch_size = 32
learning_rate = 0.5

[privacy]
enabled = false

[[nodes]]
name = "coordinator"
tier = "global"
jurisdiction = "EU"

[[nodes]]
name = "agg-eu"
tier = "regional"
jurisdiction = "EU"
upstream = "coordinator"

[[nodes]]
name = "paris"
tier = "edge"
jurisdiction = "EU"
upstream = "agg-eu"

[[nodes]]
name = "berlin"
tier = "edge"
jurisdiction = "EU"
upstream = "agg-eu"

[policy.residency]
EU = ["EU"]

[simulation]
dataset = "digits"
partition = "iid"
"""


def deploy(tmp_path: Path, name: str) -> Deployment:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    return prepare_deployment(load_plan(path), tmp_path / name)


def final_model(dep: Deployment) -> dict[str, np.ndarray]:
    summary: dict[str, Any] = json.loads((dep.out / "summary.json").read_text())
    assert summary["status"] == "completed", summary["status"]
    return dict(safetensors.numpy.load_file(summary["model_file"]))


def wait(group: ProcessGroup, name: str, timeout: float = 240.0) -> int:
    deadline = time.monotonic() + timeout
    proc = group.procs[name]
    while proc.poll() is None:
        assert time.monotonic() < deadline, f"{name} still running"
        time.sleep(0.1)
    return proc.returncode


def start_aggregator(dep: Deployment, group: ProcessGroup, env: dict[str, str]) -> None:
    """(Re)start agg-eu on the port of its first start, so its sites find it again."""
    node = dep.plan.node("agg-eu")
    config = aggregator_config(dep, node)
    config["rounds"]["min_sites"] = 2  # both sites in every regional round, as uninterrupted
    if "agg-eu" in dep.ports:
        config["server"]["address"] = f"127.0.0.1:{dep.ports['agg-eu']}"
    dep.port_file("agg-eu").unlink(missing_ok=True)
    write_toml(dep.config_file("agg-eu"), config)
    group.spawn("agg-eu", "aggregator", "--config", str(dep.config_file("agg-eu")), env=env)
    dep.ports["agg-eu"] = group.wait_for_port("agg-eu", dep.port_file("agg-eu"))


def start_all(dep: Deployment, group: ProcessGroup, aggregator_env: dict[str, str]) -> None:
    write_toml(dep.config_file("coordinator"), coordinator_config(dep))
    group.spawn("coordinator", "coordinator", "--config", str(dep.config_file("coordinator")))
    dep.ports["coordinator"] = group.wait_for_port("coordinator", dep.port_file("coordinator"))
    start_aggregator(dep, group, aggregator_env)
    for index, site in enumerate(("paris", "berlin"), start=1):
        write_toml(dep.config_file(site), site_config(dep, dep.plan.node(site), index))
        group.spawn(site, "site", "--config", str(dep.config_file(site)))


def test_aggregator_killed_mid_round_resumes_to_the_same_model(tmp_path: Path) -> None:
    console = Console(stderr=True)
    reference = deploy(tmp_path, "reference")
    with ProcessGroup(reference.out / "logs", log_level="INFO", console=console) as group:
        start_all(reference, group, {})
        assert wait(group, "coordinator") == 0
    expected = final_model(reference)

    dep = deploy(tmp_path, "crashed")
    with ProcessGroup(dep.out / "logs", log_level="INFO", console=console) as group:
        start_all(dep, group, {CRASH_ENV: "upload-acknowledged@2"})
        assert wait(group, "agg-eu") == -signal.SIGKILL  # mid-round, one update acknowledged
        start_aggregator(dep, group, {CRASH_ENV: "round-committed@3"})
        assert wait(group, "agg-eu") == -signal.SIGKILL  # its round 3 stored, not exported
        # Graceful, mid-round: SIGTERM once the first site's update of round 4 is in.
        start_aggregator(dep, group, {STOP_ENV: "upload-acknowledged@4"})
        assert wait(group, "agg-eu") == ExitCode.SIGTERM  # a stop, not a success
        assert "stopped by SIGTERM" in group.log("agg-eu").read_text()
        start_aggregator(dep, group, {})
        assert wait(group, "coordinator") == 0
        assert wait(group, "agg-eu") == 0
        assert [wait(group, s) for s in ("paris", "berlin")] == [0, 0]
    final = final_model(dep)
    worst = max(float(np.max(np.abs(final[k] - expected[k]))) for k in final)
    print(f"final model vs uninterrupted run: max abs difference {worst:.3g}")
    assert worst <= 1e-6, f"max abs difference {worst}"

    log = group.log("agg-eu").read_text()
    assert "round 2 re-opened after a restart (attempt 1): 1 acknowledged updates kept" in log
    db = sqlite3.connect(dep.node_out("agg-eu") / "state" / "fedsov.db")
    per_round = db.execute(
        "SELECT r.number, COUNT(c.site), COUNT(DISTINCT c.site) FROM rounds r "
        "JOIN receipts c ON c.round = r.number AND c.attempt = r.attempt "
        "WHERE r.state = 'completed' GROUP BY r.number ORDER BY r.number"
    ).fetchall()
    db.close()
    assert per_round == [(n, 2, 2) for n in range(1, ROUNDS + 1)]
    top = [json.loads(line) for line in (dep.out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in top if r["completed"]] == list(range(1, ROUNDS + 1))
