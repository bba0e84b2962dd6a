"""Start a grpc.aio server with mTLS, health checking and reflection."""

from __future__ import annotations

import logging
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # not in its stubs
from grpc_reflection.v1alpha import reflection

from fedsov.fileio import write_atomic
from fedsov.pki.tls import TlsMaterial
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.proto.v1 import operator_pb2
from fedsov.proto.v1 import operator_pb2_grpc as op_grpc
from fedsov.transport.decoding import SERVICE, federation_handler
from fedsov.transport.options import SERVER_OPTIONS

__all__ = ["RunningServer", "start_server"]

log = logging.getLogger("fedsov.transport")

SERVICE_NAME = SERVICE.full_name
OPERATOR_SERVICE = operator_pb2.DESCRIPTOR.services_by_name["Operator"].full_name


class RunningServer:
    def __init__(self, server: grpc.aio.Server, port: int, health: health_aio.HealthServicer):
        self.server = server
        self.port = port
        self.health = health

    async def stop(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_server(
    servicer: pb_grpc.FederationServicer,
    *,
    address: str,
    tls: TlsMaterial | None,
    port_file: Path | None = None,
    operator: op_grpc.OperatorServicer | None = None,
) -> RunningServer:
    """Bind ``address`` (port 0 picks a free one) and start serving, with ``operator``
    (status and stop, for operator certificates) beside the federation service.

    With ``tls`` the server requires and verifies client certificates (mTLS);
    ``tls=None`` is plaintext for local development only.
    """
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((federation_handler(servicer),))
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    services = [SERVICE_NAME]
    if operator is not None:
        op_grpc.add_OperatorServicer_to_server(operator, server)  # type: ignore[no-untyped-call]
        services.append(OPERATOR_SERVICE)
    reflection.enable_server_reflection(
        (
            *services,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ),
        server,
    )
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        credentials = grpc.ssl_server_credentials(
            [(tls.key_pem, tls.cert_pem)],
            root_certificates=tls.ca_pem,
            require_client_auth=True,
        )
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    await server.start()
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    if port_file is not None:
        try:
            write_atomic(port_file, f"{port}\n".encode())
        except OSError:
            await server.stop(0)
            raise
    log.info("listening on %s (port %d, %s)", address, port, "mTLS" if tls else "INSECURE")
    return RunningServer(server, port, health)
