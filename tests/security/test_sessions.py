"""Issue 13, item 5 (sessions): a second certificate with a connected site's name does not
take over its live session; the same certificate reconnecting does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedsov.exceptions import SessionConflict
from fedsov.node.engine import Engine
from fedsov.participant import FATAL
from fedsov.pki import (
    NodeIdentity,
    NodeSpec,
    Role,
    build_pki,
    load_ca,
    load_tls_material,
    make_csr,
    sign_csr,
    write_certificate,
)
from fedsov.testing import make_engine
from fedsov.transport.client import FederationClient
from fedsov.transport.errors import status_for
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

BASE = {"w": np.zeros((4, 2), dtype=np.float32)}


def site(cert: bytes | None) -> NodeIdentity:
    return NodeIdentity("site-a", Role.site, "EU", "fed", certificate_der=cert)


def recorded(eng: Engine) -> list[tuple[str, str, str]]:
    calls: list[tuple[str, str, str]] = []
    eng.refused = lambda who, decision, why: calls.append((who.name, decision, why))  # type: ignore[method-assign]
    return calls


async def drain(events: AsyncIterator[object]) -> None:
    async for _ in events:
        pass


def test_another_certificate_is_refused_while_the_first_session_lives(tmp_path: Path) -> None:
    async def scenario() -> None:
        eng = make_engine(tmp_path, BASE, federation="fed")
        refusals = recorded(eng)
        first = asyncio.ensure_future(drain(await eng.subscribe(site(b"cert-1"))))
        await asyncio.sleep(0)  # the first stream waits for its next event
        with pytest.raises(SessionConflict, match="'site-a' already has a live session"):
            await eng.subscribe(site(b"cert-2"))
        assert [(n, d) for n, d, _ in refusals] == [("site-a", "session-conflict")]
        assert eng.connected_sites == ["site-a"] and not first.done()
        first.cancel()  # the first connection dies: the other certificate may now subscribe
        await asyncio.gather(first, return_exceptions=True)
        assert eng.connected_sites == []
        second = asyncio.ensure_future(drain(await eng.subscribe(site(b"cert-2"))))
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)

    asyncio.run(scenario())


def test_the_refusal_is_retried_not_fatal() -> None:
    code = status_for(SessionConflict("taken"))
    assert code is grpc.StatusCode.ALREADY_EXISTS and code not in FATAL


@pytest.mark.parametrize("cert", [b"cert-1", None], ids=["same-certificate", "insecure"])
def test_the_same_certificate_replaces_its_old_session(tmp_path: Path, cert: bytes | None) -> None:
    async def scenario() -> None:
        eng = make_engine(tmp_path, BASE, federation="fed")
        refusals = recorded(eng)
        old = asyncio.ensure_future(drain(await eng.subscribe(site(cert))))
        await asyncio.sleep(0)  # the old stream waits for its next event
        new = asyncio.ensure_future(drain(await eng.subscribe(site(cert))))
        await asyncio.wait_for(old, 10)  # ended by the reconnect
        assert eng.connected_sites == ["site-a"] and not new.done() and refusals == []
        new.cancel()
        await asyncio.gather(new, return_exceptions=True)

    asyncio.run(scenario())


def test_over_mtls_a_second_certificate_gets_already_exists(tmp_path: Path) -> None:
    root = tmp_path / "pki"
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost",)),
        NodeSpec("site-a", Role.site, "EU"),
    ]
    pki = build_pki(root, federation="fed", nodes=nodes)
    key, csr = make_csr(
        tmp_path / "twin", name="site-a", role=Role.site, jurisdiction="EU", federation="fed"
    )
    twin_cert = tmp_path / "twin" / "site-a.pem"
    write_certificate(twin_cert, sign_csr(load_ca(root), csr.read_bytes()))
    real = load_tls_material(cert=pki["site-a"].cert, key=pki["site-a"].key, ca=root / "ca.pem")
    twin = load_tls_material(cert=twin_cert, key=key, ca=root / "ca.pem")
    c = pki["coordinator"]

    async def scenario() -> None:
        eng = make_engine(tmp_path, BASE, federation="fed")
        server_tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
        server = await start_server(
            FederationService(eng, tls=server_tls),
            address="127.0.0.1:0",
            tls=server_tls,
        )
        address = f"127.0.0.1:{server.port}"
        clients = [
            FederationClient(address, tls=t, server_name="localhost") for t in (real, twin, real)
        ]
        try:
            first = asyncio.ensure_future(drain(clients[0].tasks()))
            while eng.connected_sites != ["site-a"]:
                await asyncio.sleep(0.02)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await drain(clients[1].tasks())
            assert info.value.code() is grpc.StatusCode.ALREADY_EXISTS
            assert "another certificate" in str(info.value.details())
            again = asyncio.ensure_future(drain(clients[2].tasks()))  # the site reconnects
            await asyncio.wait_for(first, 10)  # its old session ends
            assert eng.connected_sites == ["site-a"] and not again.done()
            again.cancel()
            await asyncio.gather(again, return_exceptions=True)
        finally:
            for client in clients:
                await client.close()
            await server.stop(0)

    asyncio.run(scenario())
