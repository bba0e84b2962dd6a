"""``GET /metrics`` over HTTP, on a thread of its own (prometheus-client's WSGI server)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from fedsov.exceptions import ConfigError
from fedsov.fileio import write_atomic

__all__ = ["MetricsServer", "serve_metrics"]

log = logging.getLogger("fedsov.metrics")

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class MetricsServer:
    """A running metrics endpoint; ``close`` stops it (idempotent)."""

    server: WSGIServer
    thread: Thread
    host: str

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5.0)


def serve_metrics(
    registry: CollectorRegistry, address: str, *, port_file: Path | None = None
) -> MetricsServer:
    """Serve ``registry`` at ``http://ADDRESS/metrics``; ``port_file`` gets the bound port.
    Raises ConfigError when the address cannot be bound."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        server, thread = start_http_server(int(port), addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"metrics.address {address!r}: cannot listen there ({exc.strerror or exc}); "
            "choose a free port, or 0 for any"
        ) from exc
    served = MetricsServer(server, thread, host)
    if host not in LOOPBACK:
        log.warning(
            "metrics are served beyond loopback, at %s: anyone who reaches it reads them",
            served.url,
        )
    else:
        log.info("metrics at %s", served.url)
    if port_file is not None:
        write_atomic(port_file, f"{served.port}\n".encode())
    return served
