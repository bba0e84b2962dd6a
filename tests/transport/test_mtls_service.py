"""The Federation service over real mTLS gRPC on loopback (port 0), in one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedsov import testing
from fedsov.messages import PrivacyReport, TrainTask, UpdateHeader
from fedsov.node.engine import Engine
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.testing import make_engine, tls_client
from fedsov.transport.client import FederationClient
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

BASE = {"w": np.zeros((16, 8), dtype=np.float32), "b": np.zeros(8, dtype=np.float32)}
SITES = ("site-1", "site-2", "site-3", "site-4")


@dataclass
class Federation:
    address: str
    engine: Engine
    pki: dict[str, NodePaths]
    run: asyncio.Task[object]

    def client(self, name: str) -> FederationClient:
        return tls_client(self.address, self.pki[name])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    root = tmp_path_factory.mktemp("pki")
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1"))]
    nodes += [NodeSpec(name, Role.site, "EU") for name in SITES]
    nodes += [NodeSpec("rogue-aggregator", Role.aggregator, "EU")]
    paths = build_pki(root / "fed", federation="test-fed", nodes=nodes)
    other = build_pki(
        root / "other", federation="test-fed", nodes=[NodeSpec("site-1", Role.site, "EU")]
    )
    paths["foreign-site-1"] = other["site-1"]
    return paths


@asynccontextmanager
async def federation(
    tmp_path: Path,
    pki: dict[str, NodePaths],
    *,
    min_sites: int,
    min_updates: int = 1,
    timeout_s: float = 30.0,
) -> AsyncIterator[Federation]:
    engine = make_engine(
        tmp_path,
        BASE,
        federation="test-fed",
        min_sites=min_sites,
        min_updates=min_updates,
        timeout_s=timeout_s,
    )
    c = pki["coordinator"]
    tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
    server = await start_server(FederationService(engine, tls=tls), address="127.0.0.1:0", tls=tls)
    run = asyncio.ensure_future(engine.run())
    try:
        yield Federation(f"127.0.0.1:{server.port}", engine, pki, run)
    finally:
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await server.stop(0)


async def first_task(events: AsyncIterator[object]) -> TrainTask:
    async for event in events:
        if isinstance(event, TrainTask):
            return event
    raise AssertionError("stream ended without a task")


def update_for(
    task: TrainTask, delta: dict[str, np.ndarray], n: int = 10
) -> tuple[UpdateHeader, bytes]:
    return testing.update_for(
        task, delta, n, privacy=PrivacyReport(enabled=True, epsilon=0.5, delta=1e-5)
    )


def full(value: float) -> dict[str, np.ndarray]:
    return {k: np.full(v.shape, value, dtype=np.float32) for k, v in BASE.items()}


def test_client_without_certificate_is_refused(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    async def scenario() -> None:
        async with federation(tmp_path, pki, min_sites=1) as fed:
            ca = pki["coordinator"].ca.read_bytes()
            creds = grpc.ssl_channel_credentials(root_certificates=ca)  # no client cert
            options = [("grpc.ssl_target_name_override", "localhost")]
            async with grpc.aio.secure_channel(fed.address, creds, options=options) as channel:
                from fedsov.proto.v1 import federation_pb2 as pb
                from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc

                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await pb_grpc.FederationStub(channel).Join(pb.JoinRequest(), timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert fed.engine.connected_sites == []

    asyncio.run(scenario())


def test_certificate_from_another_ca_is_refused(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    async def scenario() -> None:
        async with federation(tmp_path, pki, min_sites=1) as fed:
            p = pki["foreign-site-1"]
            tls = load_tls_material(cert=p.cert, key=p.key, ca=p.ca)
            # Trust the real coordinator, but present a certificate of another CA.
            from dataclasses import replace

            tls = replace(tls, ca_pem=pki["coordinator"].ca.read_bytes())
            async with FederationClient(fed.address, tls=tls, server_name="localhost") as client:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await client.join(device="cpu", timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            assert fed.engine.connected_sites == []

    asyncio.run(scenario())


def test_wrong_role_is_permission_denied(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    async def scenario() -> None:
        async with (
            federation(tmp_path, pki, min_sites=1) as fed,
            fed.client("rogue-aggregator") as client,
        ):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await client.join(device="cpu")
        assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "role aggregator" in str(info.value.details())

    asyncio.run(scenario())


def test_bad_uploads_are_refused_by_name_and_round_goes_on(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    async def scenario() -> None:
        async with federation(tmp_path, pki, min_sites=4) as fed:
            clients = {name: fed.client(name) for name in SITES}
            streams = {name: c.tasks() for name, c in clients.items()}
            firsts = await asyncio.gather(*(first_task(s) for s in streams.values()))
            tasks = dict(zip(streams, firsts, strict=True))

            # Model download by content hash, resumable from an offset.
            c1 = clients["site-1"]
            payload = await c1.download(
                tasks["site-1"].model_sha256, size=tasks["site-1"].model_size
            )
            assert payload == bytes(fed.engine.model.encoded.payload)
            # Resumed from bytes kept over an earlier connection: only the rest comes.
            kept = bytearray(payload[:100])
            again = await c1.download(
                tasks["site-1"].model_sha256, size=tasks["site-1"].model_size, buffer=kept
            )
            assert again == payload and kept == payload

            wrong = {"w": np.zeros((8, 16), dtype=np.float32), "b": np.zeros(8, dtype=np.float32)}
            h, p = update_for(tasks["site-1"], wrong)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await clients["site-1"].upload(h, p)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "tensor 'w' has shape [8, 16], expected [16, 8]" in str(info.value.details())

            nan = full(0.5)
            nan["b"][3] = np.nan
            h, p = update_for(tasks["site-2"], nan)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await clients["site-2"].upload(h, p)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "tensor 'b' holds nan at element 3" in str(info.value.details())

            h, p = update_for(tasks["site-3"], full(7.0))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await clients["site-3"].upload(h, p[: len(p) // 2])
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "truncated payload" in str(info.value.details())
            # Cut short is not refused (a dying peer looks like this): it may send again.
            h, p = update_for(tasks["site-3"], full(7.0), n=20)
            await clients["site-3"].upload(h, p)

            h, p = update_for(tasks["site-4"], full(1.0), n=40)
            receipt = await clients["site-4"].upload(h, p, chunk_size=100)
            assert receipt.payload_sha256 == h.payload_sha256

            reports = await asyncio.wait_for(fed.run, 30)
            for c in clients.values():
                await c.close()
        (report,) = reports  # type: ignore[misc]
        assert report.completed
        status = {s.site: (s.status, s.reason) for s in report.sites}
        assert status["site-4"] == ("accepted", "")
        assert status["site-1"][0] == "rejected" and "shape" in status["site-1"][1]
        assert status["site-2"][0] == "rejected" and "nan" in status["site-2"][1]
        assert status["site-3"] == ("accepted", "")
        mean = (7.0 * 20 + 1.0 * 40) / 60  # BASE is zero: the model is the weighted mean
        np.testing.assert_allclose(fed.engine.model.arrays()["w"], full(mean)["w"], rtol=1e-6)

    asyncio.run(scenario())


def test_health_and_reflection_are_served(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def scenario() -> None:
        async with federation(tmp_path, pki, min_sites=1) as fed, fed.client("site-1") as client:
            channel = client._channel
            health = health_pb2_grpc.HealthStub(channel)
            response = await health.Check(
                health_pb2.HealthCheckRequest(service="fedsov.proto.v1.Federation"), timeout=5
            )
            assert response.status == health_pb2.HealthCheckResponse.SERVING

            async def one_request() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            async for reply in stub.ServerReflectionInfo(one_request(), timeout=5):
                names = {s.name for s in reply.list_services_response.service}
                assert {"fedsov.proto.v1.Federation", "grpc.health.v1.Health"} <= names
                break

    asyncio.run(scenario())


def test_insecure_mode_needs_a_node_name(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    async def scenario() -> None:
        eng = make_engine(tmp_path, BASE, federation="test-fed", timeout_s=5)
        server = await start_server(
            FederationService(eng, insecure=True), address="127.0.0.1:0", tls=None
        )
        address = f"127.0.0.1:{server.port}"
        try:
            async with FederationClient(address, tls=None) as anonymous:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await anonymous.join(device="cpu")
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            async with FederationClient(address, tls=None, insecure_name="dev-site") as named:
                joined = await named.join(device="cpu")
            assert (joined.node_name, joined.jurisdiction) == ("dev-site", "DEV")
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def test_peer_with_another_plan_is_refused(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    async def scenario() -> None:
        eng = make_engine(tmp_path, BASE, federation="test-fed", timeout_s=5)
        c = pki["coordinator"]
        server_tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        server = await start_server(
            FederationService(eng, plan_sha256="a" * 64, tls=server_tls),
            address="127.0.0.1:0",
            tls=server_tls,
        )
        p = pki["site-1"]
        tls = load_tls_material(cert=p.cert, key=p.key, ca=p.ca)
        address = f"127.0.0.1:{server.port}"
        try:
            for plan in ("b" * 64, None):
                async with FederationClient(
                    address, tls=tls, server_name="localhost", plan_sha256=plan
                ) as client:
                    with pytest.raises(grpc.aio.AioRpcError) as info:
                        await client.join(device="cpu")
                assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
                assert "plan mismatch" in str(info.value.details())
            async with FederationClient(
                address, tls=tls, server_name="localhost", plan_sha256="a" * 64
            ) as client:
                assert (await client.join(device="cpu")).node_name == "site-1"
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def test_upload_cut_off_by_its_peer_leaves_the_task_to_try_again(
    tmp_path: Path, pki: dict[str, NodePaths]
) -> None:
    # A site that dies (or loses its connection) mid-upload is not refused: its task
    # stays pending, and it may upload again before the deadline.
    from fedsov.node.rounds import TaskStatus
    from fedsov.proto.v1 import federation_pb2 as pb
    from fedsov.transport import serde

    async def scenario() -> None:
        async with federation(tmp_path, pki, min_sites=1) as fed, fed.client("site-1") as client:
            task = await first_task(client.tasks())
            header, payload = update_for(task, full(1.0))

            async def header_then_nothing() -> AsyncIterator[pb.UpdateChunk]:
                yield pb.UpdateChunk(header=serde.update_header_to_proto(header))
                await asyncio.Event().wait()  # no data: the peer goes away first

            assert fed.engine.current is not None
            record = fed.engine.current.tasks[task.task_id]
            call = client._stub.UploadUpdate(header_then_nothing(), metadata=client._metadata)
            async with asyncio.timeout(10):
                while record.status is not TaskStatus.RECEIVING:
                    await asyncio.sleep(0.005)
                call.cancel()
                while record.status is TaskStatus.RECEIVING:
                    await asyncio.sleep(0.005)
            # Cancelled, or ended short just before the cancel arrives: either way open.
            assert record.status is TaskStatus.PENDING
            assert record.reason in ("upload aborted by the peer",) or record.reason.startswith(
                "upload cut short: truncated payload"
            )
            receipt = await client.upload(header, payload)
            assert receipt.payload_sha256 == header.payload_sha256
            (report,) = await asyncio.wait_for(fed.run, 30)  # type: ignore[misc]
        assert [(s.site, s.status) for s in report.sites] == [("site-1", "accepted")]

    asyncio.run(scenario())
