"""Bytes that are no protobuf message get INVALID_ARGUMENT and one log line, on every RPC
(issue 13, item 7: not UNKNOWN with a traceback per request)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from fedsov.testing import make_engine
from fedsov.transport.decoding import SERVICE
from fedsov.transport.options import INSECURE_NAME_HEADER
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

GARBAGE = b"\xff\xff\xff\xff"  # a field with a varint that never ends
METADATA = ((INSECURE_NAME_HEADER, "site-1"),)


async def _call(
    channel: grpc.aio.Channel, method: str, client: bool, server: bool
) -> grpc.StatusCode:
    path = f"/{SERVICE.full_name}/{method}"
    try:
        if client:

            async def requests() -> AsyncIterator[bytes]:
                yield GARBAGE

            await channel.stream_unary(path)(requests(), metadata=METADATA, timeout=10)
        elif server:
            async for _ in channel.unary_stream(path)(GARBAGE, metadata=METADATA, timeout=10):
                pass
        else:
            await channel.unary_unary(path)(GARBAGE, metadata=METADATA, timeout=10)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_every_rpc_refuses_undecodable_bytes_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> dict[str, set[grpc.StatusCode]]:
        engine = make_engine(tmp_path, {"w": np.zeros(3, np.float32)}, federation="f")
        server = await start_server(
            FederationService(engine, insecure=True), address="127.0.0.1:0", tls=None
        )
        codes: dict[str, set[grpc.StatusCode]] = {}
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                for method in SERVICE.methods:
                    for _ in range(5):
                        code = await _call(
                            channel, method.name, method.client_streaming, method.server_streaming
                        )
                        codes.setdefault(method.name, set()).add(code)
        finally:
            await server.stop(0)
        return codes

    with caplog.at_level(logging.WARNING, logger="fedsov.transport"):
        codes = asyncio.run(scenario())
    assert codes == {m.name: {grpc.StatusCode.INVALID_ARGUMENT} for m in SERVICE.methods}
    undecodable = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(undecodable) == len(SERVICE.methods)  # one a minute per kind, not one per call
    assert not any(r.exc_info for r in caplog.records)
