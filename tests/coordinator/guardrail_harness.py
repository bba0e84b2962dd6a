"""A real ``fedsov coordinator`` process (mTLS on 127.0.0.1 port 0) and synthetic sites
that answer its tasks with chosen updates: no torch, no training, rounds in milliseconds.

Each site's update of round r sets what the rule under test reads: the model's first
bias moves by ``bias_steps[r - 1]`` (the coordinator's evaluation reports that bias,
guardrail_eval), the header reports ``epsilon[r - 1]`` and ``training_seconds``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedsov.codec import encode
from fedsov.config import write_toml
from fedsov.messages import Finished, PrivacyReport, TrainTask, UpdateHeader
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.transport.client import FederationClient

FEDERATION = "guarded"
SITES = ("site-1", "site-2")
HERE = Path(__file__).resolve().parent


@dataclass
class SitePlan:
    """What every synthetic site sends, round by round (the last entry repeats)."""

    bias_steps: Sequence[float] = (0.0,)
    epsilon: Sequence[float] = (1.0,)
    training_seconds: float = 0.1

    def at(self, values: Sequence[float], round: int) -> float:
        return values[min(round, len(values)) - 1]


@dataclass
class SiteLog:
    rounds: list[int] = field(default_factory=list)
    finished: Finished | None = None


PLAN = """
[federation]
name = "guarded"
[model]
factory = "fedsov.simulation.models:logistic"
kwargs = { in_features = 4, num_classes = 2 }
[rounds]
num_rounds = 20
[[nodes]]
name = "coordinator"
tier = "global"
jurisdiction = "EU"
[[nodes]]
name = "site-1"
tier = "edge"
jurisdiction = "EU"
upstream = "coordinator"
[[nodes]]
name = "site-2"
tier = "edge"
jurisdiction = "EU"
upstream = "coordinator"
"""


class GuardedCoordinator:
    """``python -m fedsov coordinator`` with ``guardrails`` in its config (or, with
    ``plan_guardrails``, in its federation plan, PLAN); killed by PID on exit."""

    def __init__(
        self,
        out: Path,
        guardrails: dict[str, Any],
        *,
        num_rounds: int = 20,
        plan_guardrails: str | None = None,
    ) -> None:
        self.out = out
        self.plan: Path | None = None
        if plan_guardrails is not None:
            self.plan = out / "plan.toml"
            self.plan.write_text(PLAN + plan_guardrails)
        self.pki = build_pki(
            out / "pki",
            federation=FEDERATION,
            nodes=[
                NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
                *(NodeSpec(s, Role.site, "EU") for s in SITES),
            ],
        )
        self.output_dir = out / "coordinator"
        self.port_file = out / "coordinator.port"
        self.log = out / "coordinator.log"
        c = self.pki["coordinator"]
        self.config = write_toml(
            out / "coordinator.toml",
            {
                "federation": {"name": FEDERATION, "seed": 1}
                | ({"plan": str(self.plan)} if self.plan else {}),
                "server": {
                    "address": "127.0.0.1:0",
                    "port_file": str(self.port_file),
                    "cert": str(c.cert),
                    "key": str(c.key),
                    "ca": str(c.ca),
                },
                "model": {
                    "factory": "fedsov.simulation.models:logistic",
                    "kwargs": {"in_features": 4, "num_classes": 2},
                },
                "rounds": {
                    "num_rounds": num_rounds,
                    "min_sites": len(SITES),
                    "timeout_s": 30.0,
                    "start_timeout_s": 60.0,
                },
                "evaluation": {"function": "guardrail_eval:first_bias"},
                "output": {"dir": str(self.output_dir)},
                "heartbeat_s": 0.5,
            }
            | ({"guardrails": guardrails} if guardrails else {}),
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> GuardedCoordinator:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fedsov", "coordinator", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        try:
            deadline = time.monotonic() + 120
            while not self.port_file.exists():
                assert self.proc.poll() is None, f"coordinator exited:\n{self.log_tail()}"
                assert time.monotonic() < deadline, (
                    f"coordinator never listened:\n{self.log_tail()}"
                )
                time.sleep(0.05)
        except BaseException:
            self.kill()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{int(self.port_file.read_text())}"

    @property
    def plan_sha256(self) -> str | None:
        return hashlib.sha256(self.plan.read_bytes()).hexdigest() if self.plan else None

    def wait(self, timeout: float = 90.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"coordinator still running:\n{self.log_tail()}") from None

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.output_dir / "summary.json").read_text())
        return data

    def audit_events(self) -> list[dict[str, Any]]:
        ledger = self.output_dir / "audit" / "ledger.jsonl"
        return [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def _update(task: TrainTask, step: float) -> tuple[dict[str, np.ndarray], int]:
    delta = {}
    for spec in task.manifest.tensors:
        values = np.zeros(spec.shape, dtype=spec.numpy_dtype)
        if spec.name.endswith("bias"):
            values.reshape(-1)[0] = step
        delta[spec.name] = values
    return delta, 10


async def run_site(
    address: str,
    paths: NodePaths,
    plan: SitePlan,
    *,
    until_round: int | None = None,
    plan_sha256: str | None = None,
) -> SiteLog:
    """Answer every task as ``plan`` says until the coordinator says Finished (or round
    ``until_round`` was answered)."""
    seen = SiteLog()
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    client = FederationClient(address, tls=tls, server_name="localhost", plan_sha256=plan_sha256)
    async with client:
        await client.join(device="cpu")
        async for event in client.tasks():
            if isinstance(event, Finished):
                seen.finished = event
                return seen
            if not isinstance(event, TrainTask):
                continue
            r = event.round
            delta, n = _update(event, plan.at(plan.bias_steps, r))
            enc = encode(delta)
            header = UpdateHeader.answering(
                event,
                enc,
                num_examples=n,
                privacy=PrivacyReport(enabled=True, epsilon=plan.at(plan.epsilon, r), delta=1e-5),
                metrics={"training_seconds": plan.training_seconds},
            )
            await client.upload(header, bytes(enc.payload))
            seen.rounds.append(r)
            if until_round is not None and r >= until_round:
                return seen
    return seen


async def run_sites(
    coordinator: GuardedCoordinator, plan: SitePlan, *, timeout: float = 90.0
) -> list[SiteLog]:
    """Every site, as ``plan`` says, until the federation finishes."""
    address = coordinator.address
    sha = coordinator.plan_sha256
    runs = [run_site(address, coordinator.pki[s], plan, plan_sha256=sha) for s in SITES]
    async with asyncio.timeout(timeout):
        return list(await asyncio.gather(*runs))
