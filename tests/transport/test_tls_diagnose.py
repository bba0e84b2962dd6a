"""TLS failures told apart from an upstream that is only down (issue 13, item 7): the
details are those grpc 1.85 reported on loopback (a hostname mismatch, another CA's
certificate, a closed port), and the probe reads the certificate a real server presents."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedsov.pki import NodeSpec, Role, TlsMaterial, build_pki, load_tls_material
from fedsov.testing import make_engine
from fedsov.transport.diagnose import (
    PeerCertificate,
    TlsFailure,
    classify,
    explain,
    probe_certificate,
    split_address,
    stop_reason,
)
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

PREFIX = "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:40677: "
SEEN = {
    "Custom verification check failed with error: UNAUTHENTICATED: Hostname Verification "
    "Check failed.": TlsFailure.hostname,
    "Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL "
    "routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: unable to get local issuer "
    "certificate: OK": TlsFailure.certificate,
    "Failed to connect to remote host: Connection refused": None,
    "Socket closed": None,  # also how a server refusing our certificate looks (TLS 1.3)
}


def _error(
    details: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(("details", "kind"), SEEN.items())
def test_classify_matches_what_grpc_says(details: str, kind: TlsFailure | None) -> None:
    assert classify(_error(PREFIX + details)) is kind


def test_only_unavailable_is_classified() -> None:
    details = PREFIX + "Hostname Verification Check failed."
    assert classify(_error(details, grpc.StatusCode.PERMISSION_DENIED)) is None


def test_split_address() -> None:
    assert split_address("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert split_address("[::1]:7") == ("::1", 7)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TlsMaterial]:
    nodes = [
        NodeSpec("coordinator", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
        NodeSpec("site-1", Role.site, "EU"),
    ]
    paths = build_pki(tmp_path_factory.mktemp("pki"), federation="diag", nodes=nodes)
    return {n: load_tls_material(cert=p.cert, key=p.key, ca=p.ca) for n, p in paths.items()}


def test_probe_reads_the_certificate_a_server_presents(
    tmp_path: Path, tls: dict[str, TlsMaterial]
) -> None:
    async def scenario() -> tuple[PeerCertificate, str | None]:
        engine = make_engine(tmp_path, {"w": np.zeros(2, np.float32)}, federation="diag")
        server_tls = tls["coordinator"]
        server = await start_server(
            FederationService(engine, tls=server_tls), address="127.0.0.1:0", tls=server_tls
        )
        address = f"127.0.0.1:{server.port}"
        try:
            peer = await asyncio.to_thread(probe_certificate, address, sni="coordinator")
            mismatch = _error(PREFIX + "Hostname Verification Check failed.")
            why = await stop_reason(
                mismatch, address=address, server_name="coordinator", tls=tls["site-1"]
            )
        finally:
            await server.stop(None)
        return peer, why

    peer, why = asyncio.run(scenario())
    assert (peer.dns_names, peer.ips) == (("localhost",), ("127.0.0.1",))
    assert peer.identity == tls["coordinator"].identity
    assert why is not None
    assert "dialled the name 'coordinator'" in why
    assert "names DNS localhost, IP 127.0.0.1" in why


def test_a_refused_connection_is_no_reason_to_stop(tls: dict[str, TlsMaterial]) -> None:
    refused = _error(PREFIX + "Failed to connect to remote host: Connection refused")
    why = asyncio.run(
        stop_reason(refused, address="127.0.0.1:1", server_name=None, tls=tls["site-1"])
    )
    assert why is None


def test_certificate_failure_names_the_issuer_and_our_ca(tls: dict[str, TlsMaterial]) -> None:
    peer = PeerCertificate(
        ("localhost",), (), None, "CN=fedsov CA rival,O=rival", dt.datetime(2030, 1, 1)
    )
    why = explain(
        TlsFailure.certificate,
        address="h:1",
        dialled="h",
        details="CERTIFICATE_VERIFY_FAILED",
        tls=tls["site-1"],
        peer=peer,
    )
    assert "issued by CN=fedsov CA rival,O=rival" in why
    assert "this node's CA (CN=fedsov CA diag,O=diag)" in why
    assert "Give this node the federation's ca.pem" in why


def test_an_unreadable_peer_is_said_so(tls: dict[str, TlsMaterial]) -> None:
    why = explain(
        TlsFailure.handshake,
        address="h:1",
        dialled="h",
        details="WRONG_VERSION_NUMBER",
        tls=tls["site-1"],
        peer="connection reset",
    )
    assert "its certificate could not be read: connection reset" in why
    assert "not insecure = true" in why
