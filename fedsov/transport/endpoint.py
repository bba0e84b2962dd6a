"""Where a server listens or a client dials, and with which TLS material."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsov.config import Table
from fedsov.exceptions import ConfigError

__all__ = ["ClientEndpoint", "ServerEndpoint", "read_client_endpoint", "read_server_endpoint"]


@dataclass(frozen=True)
class TlsPaths:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class ServerEndpoint:
    address: str  # host:port; port 0 binds a free port
    tls: TlsPaths | None  # None only with insecure = true
    port_file: Path | None  # where the bound port is written once listening
    max_transfers: int = 4  # uploads (and downloads) served at once; the rest wait


@dataclass(frozen=True)
class ClientEndpoint:
    address: str
    tls: TlsPaths | None
    server_name: str | None  # TLS name to expect, when it differs from the address host


def _read_tls(table: Table) -> TlsPaths | None:
    insecure = table.boolean("insecure", False)
    keys = ("cert", "key", "ca")
    if insecure:
        for key in keys:
            if table.has(key):
                raise table.error(key, "makes no sense with insecure = true")
        return None
    missing = [k for k in keys if not table.has(k)]
    if missing:
        raise table.error(
            missing[0],
            "is required: mTLS is on by default (set insecure = true only for local development)",
        )
    return TlsPaths(cert=table.path("cert"), key=table.path("key"), ca=table.path("ca"))


def _check_address(table: Table, key: str) -> str:
    address: str = table.string(key)
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise table.error(key, f"must look like host:port, got {address!r}")
    return address


def read_server_endpoint(table: Table) -> ServerEndpoint:
    endpoint = ServerEndpoint(
        address=_check_address(table, "address"),
        tls=_read_tls(table),
        port_file=table.path("port_file", None),
        max_transfers=table.integer("max_concurrent_transfers", 4, min=1, max=1024),
    )
    table.done()
    return endpoint


def read_client_endpoint(table: Table) -> ClientEndpoint:
    endpoint = ClientEndpoint(
        address=_check_address(table, "address"),
        tls=_read_tls(table),
        server_name=table.string("server_name", None),
    )
    if endpoint.address.endswith(":0"):
        raise ConfigError(f"{table.file}: upstream address {endpoint.address!r} has port 0")
    table.done()
    return endpoint
