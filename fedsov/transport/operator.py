"""The Operator gRPC servicer: status and a graceful stop, for operator certificates only."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import grpc

from fedsov.exceptions import FedsovError
from fedsov.pki.identity import NodeIdentity, Role
from fedsov.proto.v1 import operator_pb2 as pb
from fedsov.proto.v1 import operator_pb2_grpc as pb_grpc
from fedsov.transport.errors import reason_for, status_for
from fedsov.transport.handler import OperatorHandler
from fedsov.transport.options import REASON_KEY
from fedsov.transport.serde_operator import status_to_proto
from fedsov.transport.service import FederationService

__all__ = ["OperatorService"]

log = logging.getLogger("fedsov.transport")

Context = grpc.aio.ServicerContext[Any, Any]

MAX_REASON = 500  # characters of a stop reason kept (it goes into the audit ledger)


class OperatorService(pb_grpc.OperatorServicer):
    """Checks the caller's certificate as ``federation`` does (CA, revocation), then its
    role: only ``operator`` passes; anything else is PERMISSION_DENIED."""

    def __init__(self, handler: OperatorHandler, federation: FederationService) -> None:
        self.handler = handler
        self.federation = federation

    async def _operator(self, context: Context, what: str) -> NodeIdentity:
        if self.federation.insecure:
            await self._refuse(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "operator-needs-tls",
                f"{what} needs mTLS and an operator certificate; this node runs --insecure",
            )
        identity = await self.federation.certified(context)
        if identity.federation != self.federation.handler.federation:
            await self._refuse(
                context,
                grpc.StatusCode.PERMISSION_DENIED,
                "wrong-federation",
                f"certificate of {identity.name!r} is for federation {identity.federation!r}",
            )
        if identity.role is not Role.operator:
            why = (
                f"{what} is for operator certificates; {identity.name!r} has role "
                f"{identity.role} (issue one with `fedsov pki csr --role operator`)"
            )
            self.federation.handler.refused(identity, "not-an-operator", why)
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED, "not-an-operator", why)
        return identity

    async def _refuse(
        self, context: Context, code: grpc.StatusCode, reason: str, details: str
    ) -> NoReturn:
        log.warning("operator call refused (%s): %s", code.name, details)
        self.federation.refusals[reason] += 1
        if self.federation.metrics is not None:
            self.federation.metrics.refused(reason)
        await context.abort(code, details, trailing_metadata=((REASON_KEY, reason),))
        raise AssertionError("unreachable")  # context.abort raises

    async def Status(  # noqa: N802
        self, request: pb.StatusRequest, context: Context
    ) -> pb.StatusReply:
        await self._operator(context, "status")
        return status_to_proto(self.handler.status())

    async def Stop(self, request: pb.StopRequest, context: Context) -> pb.StopReply:  # noqa: N802
        identity = await self._operator(context, "stop")
        reason = request.reason[:MAX_REASON] or "asked by an operator"
        try:
            detail = self.handler.request_stop(identity, reason)
        except FedsovError as exc:
            await self._refuse(context, status_for(exc), reason_for(exc), str(exc))
        log.warning("stop requested by operator %s: %s", identity.name, reason)
        return pb.StopReply(accepted=True, detail=detail)
