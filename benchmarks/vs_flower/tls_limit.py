"""The loopback limit: how fast one TLS 1.3 stream (Python ``ssl``, 1 MiB writes) and
one plain TCP stream move N MB over 127.0.0.1, with a throwaway certificate."""

from __future__ import annotations

import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

from results import TlsLimit

from fedsov.pki import NodeSpec, Role, build_pki

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


def measure(megabytes: int) -> TlsLimit:
    with tempfile.TemporaryDirectory(prefix="fedsov-tls-limit-") as tmp:
        server, client = _contexts(Path(tmp))
        tls_s = _stream(megabytes, server, client)
    tcp_s = _stream(megabytes, None, None)
    return TlsLimit(megabytes=megabytes, tls_s=tls_s, tcp_s=tcp_s)
