"""An operator's client: ``Status`` and ``Stop`` of a coordinator or aggregator, over mTLS."""

from __future__ import annotations

from fedsov.messages import NodeStatus
from fedsov.pki.tls import TlsMaterial
from fedsov.proto.v1 import operator_pb2 as pb
from fedsov.proto.v1 import operator_pb2_grpc as pb_grpc
from fedsov.transport.client import mtls_channel
from fedsov.transport.serde_operator import status_from_proto

__all__ = ["OperatorClient"]


class OperatorClient:
    """Dials ``address`` with an operator certificate (``tls``); RPC errors propagate as
    grpc.aio.AioRpcError (PERMISSION_DENIED for a certificate of another role)."""

    def __init__(self, address: str, tls: TlsMaterial, *, server_name: str | None = None):
        self._channel = mtls_channel(address, tls, server_name=server_name)
        self._stub = pb_grpc.OperatorStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> OperatorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def status(self, *, timeout: float = 10.0) -> NodeStatus:
        reply = await self._stub.Status(pb.StatusRequest(), timeout=timeout)
        return status_from_proto(reply)

    async def stop(self, reason: str, *, timeout: float = 10.0) -> str:
        """Ask for a graceful stop; returns what the node will do."""
        reply: pb.StopReply = await self._stub.Stop(pb.StopRequest(reason=reason), timeout=timeout)
        return reply.detail
