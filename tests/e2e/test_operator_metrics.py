"""Operating a running federation: /metrics moves as the round reports say, and
`fedsov status` / `fedsov stop` answer an operator certificate and nobody else.

Real processes over mTLS on loopback: a coordinator and a site agent; a second site is
this test, through the real client, so that it decides when a round may close (it holds
its task until the test has looked): "during a round" is a fact, not a race.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedsov.config import write_toml
from fedsov.exitcodes import ExitCode
from fedsov.messages import Finished, TrainTask
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki
from fedsov.pki.tls import load_tls_material
from fedsov.simulation.datasets import load_digits
from fedsov.simulation.processes import tls_table
from fedsov.site.data import save_npz
from fedsov.transport.client import FederationClient

pytestmark = pytest.mark.e2e

MODEL = {"factory": "fedsov.simulation.models:mlp", "kwargs": {"in_features": 64, "hidden": 16}}
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


class Run:
    """A coordinator (with [metrics]) and one real site under ``out``; the test is site-b."""

    def __init__(self, out: Path, *, rounds: int, sites: tuple[str, ...]) -> None:
        self.out = out
        nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
        nodes += [NodeSpec(name, Role.site, "EU") for name in sites]
        nodes.append(NodeSpec("ops", Role.operator, "EU"))
        self.pki: dict[str, NodePaths] = build_pki(out / "pki", federation="ops", nodes=nodes)
        self.config = write_toml(
            out / "coordinator.toml",
            {
                "federation": {"name": "ops", "seed": 3, "sites": list(sites)},
                "server": {
                    "address": "127.0.0.1:0",
                    "port_file": str(out / "coordinator.port"),
                    **tls_table(self.pki["coordinator"]),
                },
                "model": MODEL,
                "rounds": {
                    "num_rounds": rounds,
                    "min_sites": len(sites),
                    "min_updates": 1,
                    "timeout_s": 120.0,
                    "start_timeout_s": 120.0,
                },
                "training": {"local_epochs": 1, "batch_size": 32, "learning_rate": 0.5},
                "output": {"dir": str(out / "coordinator")},
                "metrics": {"address": "127.0.0.1:0", "port_file": str(out / "metrics.port")},
                "heartbeat_s": 1.0,
            },
        )
        self.procs: list[subprocess.Popen[Any]] = []
        save_npz(out / "site-a.npz", load_digits().subset(np.arange(0, 150)))

    def start(self) -> subprocess.Popen[bytes]:
        coordinator = self._spawn("coordinator", "coordinator", self.config)
        self.port = int(self._wait_file(self.out / "coordinator.port", coordinator))
        self.metrics_port = int(self._wait_file(self.out / "metrics.port", coordinator))
        site = write_toml(
            self.out / "site-a.toml",
            {
                "site": {"name": "site-a", "seed": 11, "device": "cpu"},
                "upstream": {
                    "address": f"127.0.0.1:{self.port}",
                    "server_name": "localhost",
                    **tls_table(self.pki["site-a"]),
                },
                "data": {"path": str(self.out / "site-a.npz")},
                "model": MODEL,
                "privacy": {"enabled": False},
                "reconnect": {"initial_backoff_s": 0.1, "max_backoff_s": 0.5, "max_attempts": 0},
                "metrics": {"address": "127.0.0.1:0", "port_file": str(self.out / "site.port")},
            },
        )
        self._spawn("site-a", "site", site)
        return coordinator

    def _spawn(self, name: str, role: str, config: Path) -> subprocess.Popen[bytes]:
        with open(self.out / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fedsov", role, "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        self.procs.append(proc)
        return proc

    def _wait_file(self, path: Path, proc: subprocess.Popen[bytes]) -> str:
        deadline = time.monotonic() + 120
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {path.name}: {self.log('coordinator')}")
            time.sleep(0.05)
        return path.read_text().strip()

    def log(self, name: str) -> str:
        return (self.out / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(30)

    def scrape(
        self, port: int | None = None
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{port or self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def rounds(self) -> list[dict[str, Any]]:
        path = self.out / "coordinator" / "rounds.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        return [json.loads(line) for line in lines]

    def _operator_args(self, as_node: str) -> list[str]:
        paths = self.pki[as_node]
        tls = ["--cert", str(paths.cert), "--key", str(paths.key), "--ca", str(paths.ca)]
        return ["--address", f"127.0.0.1:{self.port}", "--server-name", "localhost", *tls]

    def watch(self) -> subprocess.Popen[str]:
        """`fedsov status --watch --json` in the background (killed by ``stop``)."""
        args = ["status", "--watch", "0.2", "--json", *self._operator_args("ops")]
        proc = subprocess.Popen(
            [sys.executable, "-m", "fedsov", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, as_node: str = "ops") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fedsov", *args, *self._operator_args(as_node)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=ENV,
        )


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def wait_for_rounds(run: Run, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120
    while len(reports := run.rounds()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"round {count} never closed: {run.log('coordinator')}")
        await asyncio.sleep(0.05)
    return reports


async def as_site_b(run: Run, on_task: Any) -> None:
    """Be site-b: each task goes to ``on_task(task)``, then is declined; until Finished."""
    paths = run.pki["site-b"]
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    async with FederationClient(
        f"127.0.0.1:{run.port}", tls=tls, server_name="localhost"
    ) as client:
        await client.join(device="cpu")
        async for event in client.tasks():
            if isinstance(event, TrainTask):
                await on_task(event)
                await client.decline(
                    task_id=event.task_id, round=event.round, code="busy", reason="held by test"
                )
            elif isinstance(event, Finished):
                return


async def operator_joins(run: Run) -> grpc.StatusCode | None:
    """What the federation service answers an operator certificate that tries to join."""
    paths = run.pki["ops"]
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    async with FederationClient(
        f"127.0.0.1:{run.port}", tls=tls, server_name="localhost"
    ) as client:
        try:
            await client.join(device="cpu")
        except grpc.aio.AioRpcError as exc:
            return exc.code()
    return None


def test_metrics_and_status_follow_the_rounds(tmp_path: Path) -> None:
    run = Run(tmp_path, rounds=2, sites=("site-a", "site-b"))
    seen: dict[str, Any] = {}

    async def on_task(task: TrainTask) -> None:
        if task.round == 1:  # round 1 is open until this returns
            seen["during"] = await asyncio.to_thread(run.scrape)
            seen["status"] = await asyncio.to_thread(run.cli, "status", "--json")
            seen["as_site"] = await asyncio.to_thread(run.cli, "status", as_node="site-a")
            seen["operator_joins"] = await operator_joins(run)
        else:  # round 1 closed and reported; round 2 waits for this
            seen["report"] = (await wait_for_rounds(run, 1))[0]
            seen["after"] = await asyncio.to_thread(run.scrape)
            site_port = int((run.out / "site.port").read_text())
            seen["site"] = await asyncio.to_thread(run.scrape, site_port)

    try:
        coordinator = run.start()
        asyncio.run(asyncio.wait_for(as_site_b(run, on_task), 240))
        assert coordinator.wait(120) == ExitCode.COMPLETED, run.log("coordinator")
    finally:
        run.stop()

    check_during_round_1(seen)
    check_after_round_1(seen)


def check_during_round_1(seen: dict[str, Any]) -> None:
    during = seen["during"]
    assert value(during, "fedsov_rounds_opened_total") == 1
    assert value(during, "fedsov_rounds_completed_total") == 0
    assert value(during, "fedsov_round") == 1
    assert value(during, "fedsov_participants_connected") == 2

    status = seen["status"]
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["round"] == 1 and shown["state"] == "round 1 open"
    assert shown["rounds_total"] == 2 and shown["role"] == "coordinator"
    assert {p["name"]: p["connected"] for p in shown["participants"]} == {
        "site-a": True,
        "site-b": True,
    }
    assert seen["operator_joins"] is grpc.StatusCode.PERMISSION_DENIED  # it never takes part
    refused = seen["as_site"]
    assert refused.returncode == 2 and "PERMISSION_DENIED" in refused.stderr, refused.stderr


def check_after_round_1(seen: dict[str, Any]) -> None:
    report, after, during = seen["report"], seen["after"], seen["during"]
    statuses = {s["site"]: s["status"] for s in report["sites"]}
    assert statuses == {"site-a": "accepted", "site-b": "declined"}
    assert value(after, "fedsov_rounds_opened_total") == 2  # round 2 is open, held by us
    assert value(after, "fedsov_rounds_completed_total") == 1
    assert value(after, "fedsov_rounds_failed_total") == 0
    assert value(after, "fedsov_updates_accepted_total") == 1
    refused_count = value(after, "fedsov_updates_refused_total", status="declined", reason="busy")
    assert refused_count == 1
    assert value(after, "fedsov_round_duration_seconds_count") == 1
    assert value(after, "fedsov_round_duration_seconds_sum") == pytest.approx(
        report["seconds"], abs=1e-3
    )
    assert value(after, "fedsov_upload_duration_seconds_count") == 1
    assert value(after, "fedsov_sent_bytes_total") > 0  # site-a downloaded the model
    assert value(after, "fedsov_received_bytes_total") > value(
        during, "fedsov_received_bytes_total"
    )
    # the operator's refused call is counted, and the ledger head moved
    assert value(after, "fedsov_rpc_refusals_total", reason="not-an-operator") == 1
    assert value(after, "fedsov_rpc_refusals_total", reason="operator-role") == 1
    assert value(after, "fedsov_policy_refusals_total", decision="operator-role") == 1
    assert value(after, "fedsov_audit_ledger_entries") > 0
    site = seen["site"]  # site-a's own endpoint: what it trained and sent
    assert value(site, "fedsov_site_rounds_trained_total") >= 1
    assert value(site, "fedsov_site_sent_bytes_total") > 0
    assert value(site, "fedsov_site_epsilon_spent") == float("inf")  # no DP in this run: ε = ∞


def test_an_operator_stops_the_federation(tmp_path: Path) -> None:
    run = Run(tmp_path, rounds=5, sites=("site-a", "site-b"))
    told: dict[str, Any] = {}

    async def on_task(task: TrainTask) -> None:
        if task.round == 1:  # an operator watching: JSON lines until the node finishes
            told["watch"] = run.watch()
        if task.round == 2:  # asked while round 2 is open: it closes, then the stop
            told["stop"] = await asyncio.to_thread(run.cli, "stop", "--reason", "maintenance")

    try:
        coordinator = run.start()
        asyncio.run(asyncio.wait_for(as_site_b(run, on_task), 240))  # Finished reaches us
        assert coordinator.wait(120) == ExitCode.OPERATOR_STOP, run.log("coordinator")
        watched, _ = told["watch"].communicate(timeout=60)  # it ends with the federation
    finally:
        run.stop()
    lines = [json.loads(line) for line in watched.splitlines() if line.startswith("{")]
    assert lines and lines[0]["round"] >= 1
    rounds_seen = [line["round"] for line in lines]
    assert rounds_seen == sorted(rounds_seen)
    assert lines[-1]["stop_requested"] or "went away" in watched
    assert told["stop"].returncode == 0, told["stop"].stderr
    assert "round 2" in told["stop"].stdout
    summary = json.loads((tmp_path / "coordinator" / "summary.json").read_text())
    assert "operator" in summary["status"] and "maintenance" in summary["status"]
    assert [r["round"] for r in run.rounds()] == [1, 2]
