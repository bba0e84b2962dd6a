"""``fedsov health``: does this node's own server answer SERVING? A probe for containers.

It reads the ``[server]`` table of a coordinator or aggregator config, dials that
address (loopback for a wildcard bind) over mTLS with the node's own certificate,
expecting the node's own name on the server's certificate, and calls the standard
``grpc.health.v1`` Health/Check. Exit 0 when SERVING, 1 otherwise, 2 when the config
or its TLS files are wrong; one line of output.

Only ``[server]`` is read and validated, not the whole config through the role's
loader: those import torch (1.5-2 s and 300 MB), and Docker and Kubernetes run this
probe every few seconds beside the node it probes. The node checked the rest at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from fedsov.cli.errors import fail
from fedsov.config import Section, ServerTable, read_toml, section, validate
from fedsov.exceptions import ConfigError, FedsovError
from fedsov.exitcodes import ExitCode
from fedsov.pki.tls import TlsMaterial, load_tls_material

__all__ = ["NodeRole", "NotListening", "Probe", "check", "health", "read_probe"]

# A wildcard bind is dialled on loopback: the probe runs beside the node.
WILDCARD = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}
NOT_A_SERVER = (
    "a site only dials out and serves nothing to probe; "
    "disable the health check for site containers"
)


class NotListening(FedsovError):
    """The node has not bound its port yet (port 0, no port file): not serving, exit 1."""


class NodeRole(StrEnum):
    """The roles that serve, so the ones ``fedsov health`` can probe."""

    coordinator = "coordinator"
    aggregator = "aggregator"


@section
class _ServerOnly(Section):
    """A config's ``[server]`` table alone; the other tables are the role's to check."""

    server: ServerTable


@dataclass(frozen=True)
class Probe:
    """What to dial: the node, its address, its TLS material (None: plaintext)."""

    role: NodeRole
    name: str
    address: str
    tls: TlsMaterial | None
    server_name: str | None


def _role_of(doc: dict[str, Any], path: Path, role: NodeRole | None) -> NodeRole:
    """The role named by ``--role``, else the one the file's tables say."""
    if role is None:
        if "site" in doc:
            raise ConfigError(f"{path}: [site]: {NOT_A_SERVER}")
        role = NodeRole.aggregator if "aggregator" in doc else NodeRole.coordinator
    if "server" not in doc:
        raise ConfigError(
            f"{path}: server: is required: a {role} config names where it listens in [server]"
        )
    return role


def _dial(address: str, port_file: Path | None, path: Path) -> str:
    """``address`` as this machine dials it: loopback for a wildcard, the bound port for 0."""
    host, _, port = address.rpartition(":")
    if port == "0":
        if port_file is None:
            raise ConfigError(
                f"{path}: server.address: port 0 binds a free port, and without "
                "server.port_file there is no telling which: set a fixed port"
            )
        try:
            port = port_file.read_text().strip()
        except FileNotFoundError:
            raise NotListening(f"no {port_file} yet: the node has not bound its port") from None
        except OSError as exc:
            raise ConfigError(
                f"{path}: server.port_file: cannot read {port_file}: {exc.strerror or exc}"
            ) from None
        if not port.isdigit():
            raise ConfigError(f"{path}: server.port_file: {port_file} holds no port: {port!r}")
    return f"{WILDCARD.get(host, host)}:{port}"


def read_probe(
    path: Path, *, role: NodeRole | None = None, server_name: str | None = None
) -> Probe:
    """What ``fedsov health`` dials for the config at ``path`` (ConfigError, PKIError)."""
    doc = read_toml(path)[1]
    role = _role_of(doc, path, role)
    server = validate(_ServerOnly, {"server": doc["server"]}, file=path).server
    endpoint = server.endpoint()
    address = _dial(endpoint.address, endpoint.port_file, path)
    if endpoint.tls is None:  # insecure = true: local development, plaintext
        return Probe(role, _name(doc, role), address, None, None)
    tls = load_tls_material(cert=endpoint.tls.cert, key=endpoint.tls.key, ca=endpoint.tls.ca)
    name = tls.identity.name  # the node's own name, which its server certificate carries
    return Probe(role, name, address, tls, server_name or name)


def _name(doc: dict[str, Any], role: NodeRole) -> str:
    """Without a certificate to read it from: the aggregator's [aggregator] name."""
    table = doc.get("aggregator") if role is NodeRole.aggregator else None
    name = table.get("name") if isinstance(table, dict) else None
    return name if isinstance(name, str) else str(role)


def check(probe: Probe, *, timeout: float) -> tuple[bool, str]:
    """Call Health/Check on ``probe``; (SERVING?, the one line to print)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    where = f"{probe.role} {probe.name} at {probe.address}"
    if probe.tls is None:
        channel = grpc.insecure_channel(probe.address)
    else:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=probe.tls.ca_pem,
            private_key=probe.tls.key_pem,
            certificate_chain=probe.tls.cert_pem,
        )
        options = [("grpc.ssl_target_name_override", probe.server_name or probe.name)]
        channel = grpc.secure_channel(probe.address, credentials, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                return False, f"{where}: DEADLINE_EXCEEDED: no answer within {timeout:g} s"
            details = " ".join(str(exc.details() or "").split())
            return False, f"{where}: {code.name}: {details}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{where}: {status}"


def health(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="The coordinator's or aggregator's TOML.")
    ],
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for the answer.")
    ] = 5.0,
    role: Annotated[
        NodeRole | None,
        typer.Option("--role", help="coordinator or aggregator (default: from the tables)."),
    ] = None,
    server_name: Annotated[
        str | None,
        typer.Option(
            "--server-name",
            help="TLS name to expect (default: the node's name, from its certificate).",
        ),
    ] = None,
) -> None:
    """Probe this node's own server (grpc.health.v1): exit 0 when SERVING, else 1."""
    try:
        probe = read_probe(config, role=role, server_name=server_name)
    except NotListening as exc:
        print(f"{config}: NOT_LISTENING: {exc}")
        raise typer.Exit(ExitCode.FAILED) from exc
    except FedsovError as exc:
        raise fail(exc) from exc
    serving, line = check(probe, timeout=timeout)
    print(line)
    if not serving:
        raise typer.Exit(ExitCode.FAILED)
