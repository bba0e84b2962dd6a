"""Issue 13, item 2 over the wire: one bad upload erases no honest ones.

A real coordinator engine behind FederationService on mTLS (throwaway PKI, loopback
port 0), with sites uploading through FederationClient with their certificates:
1e30 values with a wrong hash, a weight of 1e9 and an upload aborted halfway are
refused or dropped with a named status and reason, and the round's model equals the
FedAvg of the honest updates to 1e-6.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedsov.codec import iter_chunks
from fedsov.messages import TrainTask, UpdateHeader
from fedsov.node.rounds import TaskStatus
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.testing import make_engine, update_for
from fedsov.transport import serde
from fedsov.transport.client import FederationClient
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

BASE = {"w": np.zeros((16, 8), dtype=np.float32), "b": np.ones(8, dtype=np.float32)}
SITES = ("honest-1", "huge", "heavy", "honest-2")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
    nodes += [NodeSpec(name, Role.site, "EU") for name in SITES]
    return build_pki(tmp_path_factory.mktemp("pki") / "fed", federation="fed", nodes=nodes)


def client(address: str, paths: NodePaths) -> FederationClient:
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    return FederationClient(address, tls=tls, server_name="localhost")


def full(value: float) -> dict[str, np.ndarray]:
    return {k: np.full(v.shape, value, dtype=np.float32) for k, v in BASE.items()}


async def first_task(events: AsyncIterator[object]) -> TrainTask:
    async for event in events:
        if isinstance(event, TrainTask):
            return event
    raise AssertionError("stream ended without a task")


async def refused(upload: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await upload  # type: ignore[misc]
    return info.value


def test_poisoned_uploads_leave_the_honest_fedavg(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> None:
        engine = make_engine(tmp_path, BASE, federation="fed", min_sites=4, min_updates=2)
        c = pki["coordinator"]
        server_tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        server = await start_server(
            FederationService(engine, tls=server_tls),
            address="127.0.0.1:0",
            tls=server_tls,
        )
        address = f"127.0.0.1:{server.port}"
        run = asyncio.ensure_future(engine.run())
        clients = {name: client(address, pki[name]) for name in SITES}
        try:
            streams = {name: cl.tasks() for name, cl in clients.items()}
            firsts = await asyncio.gather(*(first_task(s) for s in streams.values()))
            tasks = dict(zip(SITES, firsts, strict=True))

            h, p = update_for(tasks["honest-1"], full(0.5), 10)
            await clients["honest-1"].upload(h, p)

            h, p = update_for(tasks["huge"], full(1e30), 10, sha256="0" * 64)
            error = await refused(clients["huge"].upload(h, p))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "max_update_norm = 1000 ([rounds] max_update_norm)" in str(error.details())

            h, p = update_for(tasks["heavy"], full(0.1), 10**9)
            error = await refused(clients["heavy"].upload(h, p))
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "num_examples = 1000000000 is above" in str(error.details())

            h, p = update_for(tasks["honest-2"], full(50.0), 10**6)  # within the bounds
            await _abort_halfway(clients["honest-2"], engine, h, p)
            h, p = update_for(tasks["honest-2"], full(-0.25), 30)
            await clients["honest-2"].upload(h, p)

            (report,) = await asyncio.wait_for(run, 30)  # type: ignore[misc]
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            for cl in clients.values():
                await cl.close()
            await server.stop(0)
        status = {s.site: s.status for s in report.sites}
        assert status == {
            "honest-1": "accepted",
            "huge": "rejected",
            "heavy": "rejected",
            "honest-2": "accepted",
        }
        mean = (0.5 * 10 - 0.25 * 30) / 40
        model = engine.model.arrays()
        error = max(float(np.abs(model[k] - (b + mean)).max()) for k, b in BASE.items())
        print(f"max abs error vs the honest FedAvg: {error:.3g}")  # pytest -s shows it
        for name, base in BASE.items():
            assert np.isfinite(model[name]).all()
            np.testing.assert_allclose(model[name], base + mean, atol=1e-6)

    asyncio.run(scenario())


async def _abort_halfway(
    cl: FederationClient, engine: object, header: UpdateHeader, payload: bytes
) -> None:
    """Send the header and half the payload, then cancel the call."""
    pieces = [bytes(c) for c in iter_chunks(payload, 64)]
    half = len(pieces) // 2

    async def messages() -> AsyncIterator[pb.UpdateChunk]:
        yield pb.UpdateChunk(header=serde.update_header_to_proto(header))
        for piece in pieces[:half]:
            yield pb.UpdateChunk(data=piece)
        await asyncio.Event().wait()  # the rest never comes

    current = engine.current  # type: ignore[attr-defined]
    record = current.tasks[header.task_id]
    call = cl._stub.UploadUpdate(messages(), metadata=cl._metadata)
    async with asyncio.timeout(10):
        while record.upload is None or record.upload.reader.received < half * 64:
            await asyncio.sleep(0.005)  # half the payload is in
        call.cancel()
        while record.status is TaskStatus.RECEIVING:
            await asyncio.sleep(0.005)
    assert record.status is TaskStatus.PENDING
