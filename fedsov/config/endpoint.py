"""``[server]`` and ``[upstream]``: where a node listens or dials, and its TLS material."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import AfterValidator, Field

from fedsov.config.base import Bool, ConfigPath, Int, KeyProblem, Number, Section, Str, section

__all__ = [
    "Address",
    "ClientEndpoint",
    "ServerEndpoint",
    "ServerTable",
    "StreamLimits",
    "TlsPaths",
    "UpstreamTable",
]


def _address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must look like host:port, got {address!r}")
    return address


Address = Annotated[Str, AfterValidator(_address)]


@section
class TlsPaths(Section):
    cert: ConfigPath
    key: ConfigPath
    ca: ConfigPath


@dataclasses.dataclass(frozen=True)
class StreamLimits:
    """What one peer's streams may hold of a server (the ``[server]`` keys of that name).

    An upload gets ``first_message_timeout_s`` for its header, then must send a message
    at least every ``idle_timeout_s`` and, after ``transfer_grace_s``, average at least
    ``min_transfer_bytes_per_s`` (a 1 MiB chunk at that rate must fit in the grace).
    A download's peer must take each chunk within ``send_timeout_s``.
    """

    max_streams_per_peer: int = 2  # uploads (and, apart, downloads) of one peer at once
    first_message_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    min_transfer_bytes_per_s: int = 1024 * 1024  # 0: no floor
    transfer_grace_s: float = 1.0
    send_timeout_s: float = 30.0

    def as_json(self) -> dict[str, float]:
        return {k: float(v) for k, v in dataclasses.asdict(self).items()}


_LIMITS = StreamLimits()


@section
class ServerEndpoint(Section):
    address: Address  # host:port; port 0 binds a free port
    tls: TlsPaths | None  # None only with insecure = true
    port_file: ConfigPath | None  # where the bound port is written once listening
    max_transfers: Int = 4  # uploads (and downloads) served at once; the rest wait
    limits: StreamLimits = dataclasses.field(default_factory=StreamLimits)


@section
class ClientEndpoint(Section):
    address: Address
    tls: TlsPaths | None
    server_name: Str | None  # TLS name to expect, when it differs from the address host
    upstream_name: Str | None = None  # node name the upstream's certificate must carry


@section
class _Tls(Section):
    """mTLS by default: cert, key and CA, unless ``insecure = true`` (local development)."""

    insecure: Bool = False
    cert: ConfigPath | None = None
    key: ConfigPath | None = None
    ca: ConfigPath | None = None

    def __post_init__(self) -> None:
        given = {"cert": self.cert, "key": self.key, "ca": self.ca}
        if self.insecure:
            for key, value in given.items():
                if value is not None:
                    raise KeyProblem(key, "makes no sense with insecure = true")
            return
        for key, value in given.items():
            if value is None:
                raise KeyProblem(
                    key,
                    "is required: mTLS is on by default "
                    "(set insecure = true only for local development)",
                )

    def tls(self) -> TlsPaths | None:
        if self.cert is None or self.key is None or self.ca is None:
            return None
        return TlsPaths(cert=self.cert, key=self.key, ca=self.ca)


@section
class ServerTable(_Tls):
    """A ``[server]`` table as a file spells it."""

    SECTION = "server"
    address: Address = Field(kw_only=True)
    port_file: ConfigPath | None = None
    max_concurrent_transfers: Annotated[Int, Field(ge=1, le=1024)] = 4
    max_streams_per_peer: Annotated[Int, Field(ge=1, le=64)] = _LIMITS.max_streams_per_peer
    first_message_timeout_s: Annotated[Number, Field(gt=0.0)] = _LIMITS.first_message_timeout_s
    idle_timeout_s: Annotated[Number, Field(gt=0.0)] = _LIMITS.idle_timeout_s
    min_transfer_bytes_per_s: Annotated[Int, Field(ge=0)] = _LIMITS.min_transfer_bytes_per_s
    transfer_grace_s: Annotated[Number, Field(gt=0.0)] = _LIMITS.transfer_grace_s
    send_timeout_s: Annotated[Number, Field(gt=0.0)] = _LIMITS.send_timeout_s

    def endpoint(self) -> ServerEndpoint:
        return ServerEndpoint(
            address=self.address,
            tls=self.tls(),
            port_file=self.port_file,
            max_transfers=self.max_concurrent_transfers,
            limits=StreamLimits(
                max_streams_per_peer=self.max_streams_per_peer,
                first_message_timeout_s=self.first_message_timeout_s,
                idle_timeout_s=self.idle_timeout_s,
                min_transfer_bytes_per_s=self.min_transfer_bytes_per_s,
                transfer_grace_s=self.transfer_grace_s,
                send_timeout_s=self.send_timeout_s,
            ),
        )


@section
class UpstreamTable(_Tls):
    """An ``[upstream]`` table as a file spells it."""

    SECTION = "upstream"
    address: Address = Field(kw_only=True)
    server_name: Str | None = None
    name: Str | None = None  # the upstream's node name, checked against its certificate

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.address.endswith(":0"):
            raise KeyProblem("address", f"upstream address {self.address!r} has port 0")

    def endpoint(self) -> ClientEndpoint:
        return ClientEndpoint(
            address=self.address,
            tls=self.tls(),
            server_name=self.server_name,
            upstream_name=self.name,
        )
