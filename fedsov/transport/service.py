"""The Federation gRPC servicer: thin; all logic lives in its handler (a node's engine)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from fedsov.codec import DEFAULT_CHUNK_SIZE, iter_chunks
from fedsov.exceptions import AccessDenied, FedsovError, PKIError, PolicyViolation, ProtocolError
from fedsov.pki.identity import NodeIdentity, Role, identity_from_pem
from fedsov.pki.proof import NONCE_BYTES, JoinProver
from fedsov.pki.tls import TlsMaterial
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.transport import serde
from fedsov.transport.errors import status_for
from fedsov.transport.handler import FederationHandler
from fedsov.transport.options import INSECURE_NAME_HEADER, PLAN_HEADER

__all__ = ["FederationService"]

log = logging.getLogger("fedsov.transport")


Context = grpc.aio.ServicerContext[Any, Any]


class FederationService(pb_grpc.FederationServicer):
    """``max_transfers`` bounds the uploads (and, separately, downloads) served at once.

    A waiting upload has not asked gRPC for its first message, so flow control keeps
    its peer's bytes out of this process: memory stays O(model + max_transfers x chunk)
    however many sites upload together.
    """

    def __init__(
        self,
        handler: FederationHandler,
        *,
        insecure: bool = False,
        max_transfers: int = 4,
        plan_sha256: str | None = None,
        node: NodeIdentity | None = None,
        tls: TlsMaterial | None = None,
    ) -> None:
        """``node``: this server's own identity (default: ``tls``'s), told to who joins;
        ``tls``: this server's certificate and key, which sign each join's proof."""
        self.handler = handler
        self.node = node or (tls.identity if tls is not None else None)
        self._prover = JoinProver(tls) if tls is not None else None
        self.insecure = insecure
        self.plan_sha256 = plan_sha256
        self._uploads = asyncio.Semaphore(max_transfers)
        self._downloads = asyncio.Semaphore(max_transfers)

    async def _abort(
        self, context: Context, exc: FedsovError, what: str, who: NodeIdentity | None = None
    ) -> NoReturn:
        code = status_for(exc)
        log.warning("%s refused (%s): %s", what, code.name, exc)
        if who is not None and isinstance(exc, AccessDenied | PolicyViolation):
            self.handler.refused(who, "admission", str(exc))
        await context.abort(code, str(exc))
        raise AssertionError("unreachable")  # context.abort raises

    async def _identity(self, context: Context) -> NodeIdentity:
        identity = await self._certified(context)
        metadata = dict(context.invocation_metadata() or ())
        if self.plan_sha256 is not None and metadata.get(PLAN_HEADER) != self.plan_sha256:
            theirs = metadata.get(PLAN_HEADER) or "none"
            why = (
                f"plan mismatch: this node runs plan {self.plan_sha256[:16]}, "
                f"the caller {str(theirs)[:16]}"
            )
            self.handler.refused(identity, "plan-mismatch", why)
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, why)
        return identity

    async def _certified(self, context: Context) -> NodeIdentity:
        metadata = dict(context.invocation_metadata() or ())
        if self.insecure:
            name = metadata.get(INSECURE_NAME_HEADER)
            if not isinstance(name, str) or not name:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"insecure mode: send your node name in the {INSECURE_NAME_HEADER!r} header",
                )
            return NodeIdentity(str(name), Role.site, "DEV", self.handler.federation)
        pems = list(context.auth_context().get("x509_pem_cert") or ())
        if not pems:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        try:
            return identity_from_pem(pems[0])
        except PKIError as exc:
            await self._abort(context, exc, "certificate")

    async def Join(self, request: pb.JoinRequest, context: Context) -> pb.JoinResponse:  # noqa: N802
        identity = await self._identity(context)
        try:
            self.handler.admit(identity)
            certificate, proof = self._join_proof(identity, request.nonce)
        except FedsovError as exc:
            await self._abort(context, exc, f"join of {identity.name}", identity)
        return pb.JoinResponse(
            federation=self.handler.federation,
            node_name=identity.name,
            role=str(identity.role),
            jurisdiction=identity.jurisdiction,
            current_round=self.handler.current_round,
            upstream_name=self.node.name if self.node else "",
            upstream_jurisdiction=self.node.jurisdiction if self.node else "",
            upstream_certificate=certificate,
            proof=proof,
        )

    def _join_proof(self, identity: NodeIdentity, nonce: bytes) -> tuple[bytes, bytes]:
        """This server's certificate and its signature binding the caller's nonce and
        certificate; nothing without TLS, or for a caller that sent no nonce."""
        if self._prover is None or identity.certificate_sha256 is None or not nonce:
            return b"", b""
        if len(nonce) != NONCE_BYTES:
            raise ProtocolError(f"a join nonce has {NONCE_BYTES} bytes, got {len(nonce)}")
        proof = self._prover.prove(
            nonce=nonce,
            client_certificate_sha256=identity.certificate_sha256,
            federation=self.handler.federation,
        )
        return self._prover.certificate_der, proof

    async def SubscribeTasks(  # noqa: N802
        self, request: pb.SubscribeRequest, context: Context
    ) -> AsyncIterator[pb.TaskEvent]:
        identity = await self._identity(context)
        try:
            events = await self.handler.subscribe(identity)
        except FedsovError as exc:
            await self._abort(context, exc, f"subscription of {identity.name}")
        async for event in events:
            yield serde.task_event_to_proto(event)

    async def DownloadModel(  # noqa: N802
        self, request: pb.DownloadRequest, context: Context
    ) -> AsyncIterator[pb.ModelChunk]:
        identity = await self._identity(context)
        try:
            self.handler.admit(identity)
            payload = self.handler.model_payload(request.model_sha256)
        except FedsovError as exc:
            await self._abort(context, exc, f"download by {identity.name}")
        total = len(payload)
        if request.offset > total:
            await context.abort(
                grpc.StatusCode.OUT_OF_RANGE,
                f"offset {request.offset} is past the model's {total} bytes",
            )
        offset = request.offset
        async with self._downloads:
            for chunk in iter_chunks(payload, DEFAULT_CHUNK_SIZE, offset=offset):
                yield pb.ModelChunk(offset=offset, total_size=total, data=bytes(chunk))
                offset += len(chunk)
        self.handler.model_sent(identity, request.model_sha256)  # the last byte left

    async def UploadUpdate(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.UpdateChunk], context: Context
    ) -> pb.UploadReceipt:
        identity = await self._identity(context)
        what = f"upload from {identity.name}"
        try:
            async with self._uploads:
                first = await anext(aiter(request_iterator), None)
                if first is None or first.WhichOneof("part") != "header":
                    raise ProtocolError("the first message of an upload must be its header")
                header = serde.update_header_from_proto(first.header)
                receipt = await self.handler.receive_update(
                    identity, header, _data_chunks(request_iterator)
                )
        except FedsovError as exc:
            await self._abort(context, exc, what)
        return serde.receipt_to_proto(receipt)

    async def DeclineTask(  # noqa: N802
        self, request: pb.DeclineRequest, context: Context
    ) -> pb.DeclineReceipt:
        identity = await self._identity(context)
        try:
            self.handler.decline(
                identity,
                task_id=request.task_id,
                round=request.round,
                code=request.code,
                reason=request.reason,
            )
        except FedsovError as exc:
            await self._abort(context, exc, f"decline by {identity.name}")
        return pb.DeclineReceipt(task_id=request.task_id, round=request.round)


async def _data_chunks(messages: AsyncIterator[pb.UpdateChunk]) -> AsyncIterator[bytes]:
    async for message in messages:
        if message.WhichOneof("part") != "data":
            raise ProtocolError("an upload carries one header, then only data chunks")
        yield message.data
