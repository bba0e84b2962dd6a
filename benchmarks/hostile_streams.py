"""An honest upload while 8 idle and 8 slow streams are open (issue 13, item 3).

A coordinator's engine and gRPC server (mTLS, default ``[server]`` limits) run in this
process. Four hostile sites are admitted and hold tasks; a same-CA aggregator
certificate is not admitted. They open 8 idle streams (no header, or a header then
silence) and 8 slow ones (a header, then a byte every 0.25 s); then the honest site
downloads the model and uploads its update. Prints the honest upload's wall time and
the round's outcome.

    .venv/bin/python benchmarks/hostile_streams.py [--runs 3]

Target: the honest upload completes in < 2 s; the round closes at its deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from fedsov.config import StreamLimits
from fedsov.messages import PrivacyReport, TrainTask, UpdateHeader
from fedsov.node.engine import RoundReport
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.testing import make_engine, stalling_upload, update_for
from fedsov.transport.client import FederationClient
from fedsov.transport.options import REASON_KEY
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

HONEST = "honest"
HOSTILE = ("hostile-1", "hostile-2", "hostile-3", "hostile-4")
ROGUE = "rogue"  # a same-CA aggregator certificate: not admitted by a coordinator
BASE = {"w": np.zeros((256, 256), dtype=np.float32)}  # 256 KiB


@dataclass
class Outcome:
    honest_seconds: float
    report: RoundReport
    hostile: list[tuple[str, str]]  # (status, fedsov-reason) of each hostile stream
    refusals: dict[str, int]


def make_pki(root: Path) -> dict[str, NodePaths]:
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
    nodes += [NodeSpec(name, Role.site, "EU") for name in (HONEST, *HOSTILE)]
    nodes += [NodeSpec(ROGUE, Role.aggregator, "EU")]
    return build_pki(root, federation="bench-fed", nodes=nodes)


def _client(address: str, p: NodePaths) -> FederationClient:
    tls = load_tls_material(cert=p.cert, key=p.key, ca=p.ca)
    return FederationClient(address, tls=tls, server_name="localhost")


async def _task(client: FederationClient) -> TrainTask:
    async for event in client.tasks():
        if isinstance(event, TrainTask):
            return event
    raise RuntimeError("task stream ended without a task")


def _update(task: TrainTask) -> tuple[UpdateHeader, bytes]:
    delta = {"w": np.full((256, 256), 0.5, dtype=np.float32)}
    return update_for(task, delta, 10, privacy=PrivacyReport(enabled=True, epsilon=0.5, delta=1e-5))


# What grpc's client reports, instead of the server's status, when the server ended
# the call while a trickling request stream was still writing to it.
CLIENT_SIDE_INTERNAL = "Internal error from Core"


async def _ended(call: Any) -> tuple[str, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() is grpc.StatusCode.INTERNAL and exc.details() == CLIENT_SIDE_INTERNAL:
            return "CLIENT_SIDE", ""  # the server's refusal lands in its own counts
        return exc.code().name, dict(exc.trailing_metadata() or ()).get(REASON_KEY, "")
    return "OK", ""


def _open_hostile(clients: dict[str, FederationClient], tasks: dict[str, TrainTask]) -> list[Any]:
    """8 idle and 8 slow streams: half from admitted sites with tasks, half not admitted."""
    rogue_task = tasks[HOSTILE[0]]  # a real task id, not the rogue's
    specs: list[tuple[str, TrainTask | None, float | None]] = []
    for i, name in enumerate(HOSTILE):
        specs.append((name, tasks[name] if i >= 2 else None, None))  # idle
        specs.append((name, tasks[name], 0.25))  # slow
    specs += [(ROGUE, None, None)] * 2 + [(ROGUE, rogue_task, None)] * 2  # idle
    specs += [(ROGUE, rogue_task, 0.25)] * 4  # slow
    calls = []
    for name, task, trickle in specs:
        c = clients[name]
        header = _update(task)[0] if task else None
        stream = stalling_upload(header, trickle=trickle)
        calls.append(c._stub.UploadUpdate(stream, metadata=c._metadata, timeout=120))
    return calls


async def scenario(
    root: Path, *, round_timeout_s: float = 6.0, limits: StreamLimits | None = None
) -> Outcome:
    """``limits``: the server's ``[server]`` stream limits (default: the defaults)."""
    pki = make_pki(root / "pki")
    engine = make_engine(root, BASE, federation="bench-fed", min_sites=5, timeout_s=round_timeout_s)
    c = pki["coordinator"]
    tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
    service = FederationService(engine, tls=tls, limits=limits)  # 4 transfers
    server = await start_server(service, address="127.0.0.1:0", tls=tls)
    address = f"127.0.0.1:{server.port}"
    run = asyncio.ensure_future(engine.run())
    clients = {name: _client(address, pki[name]) for name in (HONEST, *HOSTILE, ROGUE)}
    try:
        names = (HONEST, *HOSTILE)
        found = await asyncio.gather(*(_task(clients[n]) for n in names))
        tasks = dict(zip(names, found, strict=True))
        hostile = [asyncio.ensure_future(_ended(call)) for call in _open_hostile(clients, tasks)]
        await asyncio.sleep(0.2)  # the hostile streams are open (and have their slots)
        honest = clients[HONEST]
        started = time.perf_counter()
        task = tasks[HONEST]
        await honest.download(task.model_sha256, size=task.model_size)
        await honest.upload(*_update(task))
        seconds = time.perf_counter() - started
        reports = await asyncio.wait_for(run, round_timeout_s + 30)
        ended = await asyncio.wait_for(asyncio.gather(*hostile), 30)
        return Outcome(seconds, reports[0], ended, dict(service.refusals))
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        for client in clients.values():
            await client.close()
        await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            outcome = asyncio.run(scenario(Path(tmp)))
        statuses = {s.site: s.status for s in outcome.report.sites}
        print(
            json.dumps(
                {
                    "run": run,
                    "honest_upload_s": round(outcome.honest_seconds, 3),
                    "round_completed": outcome.report.completed,
                    "round_seconds": round(outcome.report.seconds, 2),
                    "sites": statuses,
                    "refusals": outcome.refusals,
                }
            )
        )


if __name__ == "__main__":
    main()
