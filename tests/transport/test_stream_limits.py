"""Stream limits of the Federation service over mTLS on loopback (issue 13, item 3):
admission before any slot, per-peer limits, idle and rate floors, streams that end
with their round, and named statuses (``fedsov-reason``) for every refusal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fedsov.config import StreamLimits
from fedsov.messages import PrivacyReport, TrainTask, UpdateHeader
from fedsov.node.engine import Engine
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.testing import make_engine, stalling_upload, tls_client
from fedsov.testing import update_for as upload_for
from fedsov.transport.client import FederationClient
from fedsov.transport.options import REASON_KEY
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

BASE = {"w": np.zeros((16, 8), dtype=np.float32)}
SITES = ("site-1", "site-2")
PATIENT = StreamLimits(first_message_timeout_s=60, idle_timeout_s=60, min_transfer_bytes_per_s=0)


@dataclass
class Fed:
    address: str
    engine: Engine
    service: FederationService
    pki: dict[str, NodePaths]
    run: asyncio.Task[Any]

    def client(self, name: str) -> FederationClient:
        return tls_client(self.address, self.pki[name])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
    nodes += [NodeSpec(name, Role.site, "EU") for name in SITES]
    nodes += [NodeSpec("rogue", Role.aggregator, "EU")]  # same CA, not admitted here
    return build_pki(tmp_path_factory.mktemp("pki"), federation="test-fed", nodes=nodes)


@asynccontextmanager
async def federation(
    tmp_path: Path,
    pki: dict[str, NodePaths],
    limits: StreamLimits,
    *,
    min_sites: int = 1,
    timeout_s: float = 30.0,
    max_transfers: int = 4,
) -> AsyncIterator[Fed]:
    engine = make_engine(
        tmp_path, BASE, federation="test-fed", min_sites=min_sites, timeout_s=timeout_s
    )
    c = pki["coordinator"]
    server_tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
    service = FederationService(engine, max_transfers=max_transfers, limits=limits, tls=server_tls)
    server = await start_server(service, address="127.0.0.1:0", tls=server_tls)
    run = asyncio.ensure_future(engine.run())
    try:
        yield Fed(f"127.0.0.1:{server.port}", engine, service, pki, run)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await server.stop(0)


async def first_task(client: FederationClient) -> TrainTask:
    async for event in client.tasks():
        if isinstance(event, TrainTask):
            return event
    raise AssertionError("stream ended without a task")


DP = PrivacyReport(enabled=True, epsilon=0.5, delta=1e-5)


def update_for(task: TrainTask, value: float = 1.0, **metrics: float) -> tuple[UpdateHeader, bytes]:
    delta = {"w": np.full((16, 8), value, dtype=np.float32)}
    return upload_for(task, delta, 10, privacy=DP, metrics=metrics)


def raw_upload(client: FederationClient, stream: AsyncIterator[pb.UpdateChunk]) -> Any:
    return client._stub.UploadUpdate(stream, metadata=client._metadata, timeout=60)


async def refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), dict(info.value.trailing_metadata() or ())[REASON_KEY]


def test_silent_upload_ends_at_its_first_message_timeout(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> None:
        limits = StreamLimits(first_message_timeout_s=0.2)
        async with federation(tmp_path, pki, limits) as fed, fed.client("site-1") as c:
            await first_task(c)
            code, reason = await refusal(raw_upload(c, stalling_upload(None)))
            assert (code, reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "idle-timeout")
            assert fed.service.refusals["idle-timeout"] == 1

    asyncio.run(scenario())


def test_trickling_upload_is_too_slow_and_its_task_stays_open(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> None:
        limits = StreamLimits(transfer_grace_s=0.3, min_transfer_bytes_per_s=1024)
        async with federation(tmp_path, pki, limits) as fed, fed.client("site-1") as c:
            task = await first_task(c)
            header, payload = update_for(task)
            code, reason = await refusal(raw_upload(c, stalling_upload(header, trickle=0.05)))
            assert (code, reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "too-slow")
            assert fed.engine.current is not None
            assert fed.engine.current.tasks[task.task_id].status == "pending"
            assert (await c.upload(header, payload)).payload_sha256 == header.payload_sha256

    asyncio.run(scenario())


def test_streams_of_a_peer_not_admitted_never_take_the_slot(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> None:
        async with (
            federation(tmp_path, pki, PATIENT, max_transfers=1) as fed,
            fed.client("site-1") as honest,
            fed.client("rogue") as rogue,
        ):
            task = await first_task(honest)
            calls = [raw_upload(rogue, stalling_upload(None)) for _ in range(4)]
            header, payload = update_for(task)
            receipt = await honest.upload(header, payload)
            assert receipt.payload_sha256 == header.payload_sha256
            for call in calls:
                assert await refusal(call) == (grpc.StatusCode.PERMISSION_DENIED, "not-admitted")

    asyncio.run(scenario())


def test_a_peer_past_its_stream_limit_is_resource_exhausted(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> None:
        async with federation(tmp_path, pki, PATIENT) as fed, fed.client("site-1") as c:
            await first_task(c)
            held = [raw_upload(c, stalling_upload(None)) for _ in range(2)]
            async with asyncio.timeout(10):
                while fed.service._streams[("upload", "site-1")] < 2:
                    await asyncio.sleep(0.01)
            code, reason = await refusal(raw_upload(c, stalling_upload(None)))
            assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "too-many-streams")
            for call in held:
                call.cancel()

    asyncio.run(scenario())


def test_nan_metric_is_invalid_argument(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    async def scenario() -> None:
        async with federation(tmp_path, pki, PATIENT) as fed, fed.client("site-1") as c:
            header, payload = update_for(await first_task(c), sites=float("nan"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await c.upload(header, payload)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "metrics must be finite" in str(info.value.details())
            assert fed.service.refusals["bad-request"] == 1

    asyncio.run(scenario())


def test_header_then_silence_ends_when_the_round_closes_and_later_chunks_are_late(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> None:
        async with (
            federation(tmp_path, pki, PATIENT, min_sites=2, timeout_s=1.5) as fed,
            fed.client("site-1") as silent,
            fed.client("site-2") as honest,
        ):
            tasks = await asyncio.gather(first_task(silent), first_task(honest))
            call = raw_upload(silent, stalling_upload(update_for(tasks[0])[0]))
            await honest.upload(*update_for(tasks[1]))
            assert await refusal(call) == (grpc.StatusCode.DEADLINE_EXCEEDED, "late")
            (report,) = await asyncio.wait_for(fed.run, 30)
            status = {s.site: s.status for s in report.sites}
            assert report.completed and status == {"site-1": "late", "site-2": "accepted"}
            # A header and chunk of the closed round: late, by name (never RuntimeError).
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await silent.upload(*update_for(tasks[0]))
            assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert dict(info.value.trailing_metadata() or ())[REASON_KEY] == "late"

    asyncio.run(scenario())


def test_a_bug_in_the_handler_is_internal_by_name(
    tmp_path: Path, pki: dict[str, NodePaths], caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with federation(tmp_path, pki, PATIENT) as fed, fed.client("site-1") as c:
            task = await first_task(c)

            def broken(*args: object) -> float:
                raise ZeroDivisionError("a bug")

            fed.engine.check_upload = broken  # type: ignore[method-assign]
            code, reason = await refusal(raw_upload(c, stalling_upload(update_for(task)[0])))
            assert (code, reason) == (grpc.StatusCode.INTERNAL, "internal")

    asyncio.run(scenario())
    (line,) = [r for r in caplog.records if "failed" in r.getMessage()]
    assert "ZeroDivisionError: a bug" in line.getMessage() and line.exc_info is None
