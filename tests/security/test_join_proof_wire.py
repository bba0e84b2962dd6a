"""The join proof over real mTLS gRPC (issue 13, item 1): the client learns the
upstream's identity from its proof, refuses an upstream that sends none, and a proof
relayed from the real upstream by another certificate holder does not verify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedsov.exceptions import PKIError
from fedsov.pki import NodePaths, NodeSpec, Role, TlsMaterial, build_pki, load_tls_material
from fedsov.pki.proof import new_nonce, verify_join_proof
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.testing import make_engine
from fedsov.transport.client import FederationClient
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

FED = "wire-fed"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsMaterial]:
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
        NodeSpec("site-1", Role.site, "EU"),
        NodeSpec("site-2", Role.site, "EU"),
    ]
    paths: dict[str, NodePaths] = build_pki(
        tmp_path_factory.mktemp("pki"), federation=FED, nodes=nodes
    )
    return {n: load_tls_material(cert=p.cert, key=p.key, ca=p.ca) for n, p in paths.items()}


@asynccontextmanager
async def coordinator(
    tmp_path: Path, tls: TlsMaterial, *, proves: bool = True
) -> AsyncIterator[str]:
    engine = make_engine(tmp_path, {"w": np.zeros(4, np.float32)}, federation=FED)
    service = FederationService(engine, tls=tls if proves else None)
    server = await start_server(service, address="127.0.0.1:0", tls=tls)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(None)


def test_join_shows_the_identity_the_proof_verified(
    tmp_path: Path, tls: dict[str, TlsMaterial]
) -> None:
    async def scenario() -> FederationClient:
        async with coordinator(tmp_path, tls["coordinator"]) as address:
            client = FederationClient(address, tls=tls["site-1"], server_name="localhost")
            async with client:
                await client.join(device="cpu")
            return client

    client = asyncio.run(scenario())
    assert client.upstream == tls["coordinator"].identity
    assert client.upstream is not None
    assert client.upstream.certificate_sha256 == tls["coordinator"].identity.certificate_sha256
    assert (client.upstream_name, client.upstream_jurisdiction) == ("coordinator", "EU")


def test_an_upstream_without_proof_is_refused(tmp_path: Path, tls: dict[str, TlsMaterial]) -> None:
    async def scenario() -> None:
        async with coordinator(tmp_path, tls["coordinator"], proves=False) as address:
            client = FederationClient(address, tls=tls["site-1"], server_name="localhost")
            async with client:
                await client.join(device="cpu")

    with pytest.raises(PKIError, match="sent no join proof"):
        asyncio.run(scenario())


async def _join_as(address: str, who: TlsMaterial, nonce: bytes) -> pb.JoinResponse:
    credentials = grpc.ssl_channel_credentials(who.ca_pem, who.key_pem, who.cert_pem)
    options = [("grpc.ssl_target_name_override", "localhost")]
    async with grpc.aio.secure_channel(address, credentials, options=options) as channel:
        stub = pb_grpc.FederationStub(channel)  # type: ignore[no-untyped-call]
        response: pb.JoinResponse = await stub.Join(pb.JoinRequest(nonce=nonce), timeout=30)
        return response


def test_a_relayed_proof_is_bound_to_the_relay(tmp_path: Path, tls: dict[str, TlsMaterial]) -> None:
    """site-2 forwards site-1's nonce to the real coordinator: the proof it gets back
    names site-2's certificate, so site-1 refuses it."""
    victim, relay = tls["site-1"], tls["site-2"]
    nonce = new_nonce()

    async def scenario() -> pb.JoinResponse:
        async with coordinator(tmp_path, tls["coordinator"]) as address:
            return await _join_as(address, relay, nonce)

    response = asyncio.run(scenario())
    facts = {
        "certificate_der": response.upstream_certificate,
        "proof": response.proof,
        "nonce": nonce,
        "federation": FED,
        "ca_pem": victim.ca_pem,
    }
    assert relay.identity.certificate_sha256 is not None
    assert victim.identity.certificate_sha256 is not None
    verify_join_proof(**facts, client_certificate_sha256=relay.identity.certificate_sha256)
    with pytest.raises(PKIError, match="a relay, or tampered"):
        verify_join_proof(**facts, client_certificate_sha256=victim.identity.certificate_sha256)


def test_a_nonce_of_the_wrong_size_is_invalid_argument(
    tmp_path: Path, tls: dict[str, TlsMaterial]
) -> None:
    async def scenario() -> None:
        async with coordinator(tmp_path, tls["coordinator"]) as address:
            await _join_as(address, tls["site-1"], b"short")

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        asyncio.run(scenario())
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "a join nonce has 32 bytes, got 5" in (caught.value.details() or "")
