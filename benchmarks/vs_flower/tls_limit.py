"""The floors a round cannot beat here: how fast one TLS 1.3 stream (Python ``ssl``,
1 MiB writes) and one plain TCP stream move N MB over 127.0.0.1 (a throwaway
certificate); how fast gRPC itself (grpc.aio, mTLS, 1 MiB messages, no protobuf, two
processes) moves N/2 MB up and N/2 MB down; and how fast this disk takes a durable
write (write, then fsync), which every acknowledged update and every model needs."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
from results import TlsLimit

from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material

__all__ = ["measure"]

WRITE = 1 << 20  # 1 MiB


def _receive(server: socket.socket, total: int, wrap: ssl.SSLContext | None) -> None:
    conn, _ = server.accept()
    sock = wrap.wrap_socket(conn, server_side=True) if wrap else conn
    buf = memoryview(bytearray(WRITE))
    got = 0
    with sock:
        while got < total:
            n = sock.recv_into(buf)
            if not n:
                break
            got += n
        sock.sendall(b"k")  # all received


def _stream(
    megabytes: int, server_ctx: ssl.SSLContext | None, client_ctx: ssl.SSLContext | None
) -> float:
    """Seconds from the connection's first write until the receiver has every byte."""
    total = megabytes * 10**6
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        receiver = threading.Thread(target=_receive, args=(server, total, server_ctx))
        receiver.start()
        raw = socket.create_connection(("127.0.0.1", port))
        sock = client_ctx.wrap_socket(raw, server_hostname="localhost") if client_ctx else raw
        block = memoryview(bytes(WRITE))
        with sock:  # wrap_socket did the TLS handshake: the clock starts after it
            started = time.perf_counter()
            sent = 0
            while sent < total:
                n = min(WRITE, total - sent)
                sock.sendall(block[:n])
                sent += n
            sock.recv(1)
            seconds = time.perf_counter() - started
        receiver.join()
    return seconds


def _contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    spec = NodeSpec("server", Role.coordinator, "EU", ("localhost", "127.0.0.1"))
    paths = build_pki(directory, federation="tls-limit", nodes=[spec])["server"]
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(paths.cert, paths.key)
    client = ssl.create_default_context(cafile=str(paths.ca))
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    return server, client


_OPTIONS = [("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)]


async def _grpc_server(paths: NodePaths, megabytes: int, port_file: Path) -> None:
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    payload = memoryview(bytes(megabytes * 10**6))

    async def up(chunks: object, context: object) -> bytes:
        async for _ in chunks:  # type: ignore[attr-defined]
            pass
        return b"ok"

    async def down(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> None:
        for start in range(0, len(payload), WRITE):
            await context.write(bytes(payload[start : start + WRITE]))

    server = grpc.aio.server(options=_OPTIONS)
    handlers = {
        "Up": grpc.stream_unary_rpc_method_handler(up),
        "Down": grpc.unary_stream_rpc_method_handler(down),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("Floor", handlers),))
    credentials = grpc.ssl_server_credentials(
        [(tls.key_pem, tls.cert_pem)], root_certificates=tls.ca_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    port_file.write_text(str(port))
    await server.wait_for_termination()


async def _grpc_client(paths: NodePaths, megabytes: int, port: int) -> float:
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    credentials = grpc.ssl_channel_credentials(tls.ca_pem, tls.key_pem, tls.cert_pem)
    options = [*_OPTIONS, ("grpc.ssl_target_name_override", "localhost")]
    payload = memoryview(bytes(megabytes * 10**6))
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as ch:
        up, down = ch.stream_unary("/Floor/Up"), ch.unary_stream("/Floor/Down")
        await up(iter([b"warm"]))
        started = time.perf_counter()
        await up(bytes(payload[i : i + WRITE]) for i in range(0, len(payload), WRITE))
        async for _ in down(b""):
            pass
        return time.perf_counter() - started


def _grpc_floor(directory: Path, megabytes: int) -> float:
    """Seconds for gRPC to move megabytes/2 up, then megabytes/2 down (two processes)."""
    nodes = [
        NodeSpec("server", Role.coordinator, "EU", ("localhost", "127.0.0.1")),
        NodeSpec("client", Role.site, "EU"),
    ]
    pki = build_pki(directory / "grpc", federation="grpc-floor", nodes=nodes)
    port_file, half = directory / "grpc-port", megabytes // 2
    server = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--grpc-server",
            str(directory / "grpc"),
            str(half),
            str(port_file),
        ]
    )
    try:
        while not port_file.exists():
            if server.poll() is not None:
                raise RuntimeError("the gRPC floor's server did not start")
            time.sleep(0.05)
        return asyncio.run(_grpc_client(pki["client"], half, int(port_file.read_text())))
    finally:
        server.kill()
        server.wait()


def _disk_write_s(directory: Path, megabytes: int) -> float:
    """Seconds to write ``megabytes`` to a file in ``directory`` and fsync it."""
    block = memoryview(bytes(WRITE))
    path = directory / "disk-floor.bin"
    started = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(megabytes * 10**6 // WRITE):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return seconds


def measure(megabytes: int, work: Path | None = None) -> TlsLimit:
    """``work``: where the disk floor writes (the runs' temporary directories' disk)."""
    with tempfile.TemporaryDirectory(prefix="fedsov-tls-limit-", dir=work) as tmp:
        server, client = _contexts(Path(tmp))
        tls_s = _stream(megabytes, server, client)
        grpc_s = _grpc_floor(Path(tmp), megabytes)
        disk_s = _disk_write_s(Path(tmp), megabytes)
    tcp_s = _stream(megabytes, None, None)
    return TlsLimit(megabytes=megabytes, tls_s=tls_s, tcp_s=tcp_s, grpc_s=grpc_s, disk_s=disk_s)


if __name__ == "__main__" and sys.argv[1:2] == ["--grpc-server"]:
    pki_dir, half, port_path = Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    own = NodePaths(
        cert=pki_dir / "server" / "server.pem",
        key=pki_dir / "server" / "server.key",
        ca=pki_dir / "server" / "ca.pem",
    )
    asyncio.run(_grpc_server(own, half, port_path))
