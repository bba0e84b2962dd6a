"""The Federation gRPC servicer: thin; all logic lives in its handler (a node's engine)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any, NoReturn

import grpc

from fedsov.codec import DEFAULT_CHUNK_SIZE, iter_chunks
from fedsov.config import StreamLimits
from fedsov.exceptions import (
    AccessDenied,
    FedsovError,
    LateUpdate,
    PKIError,
    PolicyViolation,
    ProtocolError,
    StreamStalled,
)
from fedsov.messages import UploadReceipt
from fedsov.metrics import NodeMetrics
from fedsov.pki.identity import NodeIdentity, Role, identity_from_pem
from fedsov.pki.proof import NONCE_BYTES, JoinProver
from fedsov.pki.revoke import RevocationList
from fedsov.pki.tls import TlsMaterial
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.transport import serde, serde_secagg
from fedsov.transport.errors import INTERNAL_REASON, reason_for, status_for
from fedsov.transport.handler import FederationHandler
from fedsov.transport.options import INSECURE_NAME_HEADER, PLAN_HEADER, REASON_KEY
from fedsov.transport.wire import encode_model_chunk

__all__ = ["FederationService"]

log = logging.getLogger("fedsov.transport")


Context = grpc.aio.ServicerContext[Any, Any]


class FederationService(pb_grpc.FederationServicer):
    """``max_transfers`` bounds the uploads (and, separately, downloads) served at once.

    An upload is admitted, limited per peer (``limits``), and its header read and checked
    by the handler before it waits for a slot; past its header, a waiting upload has not
    asked gRPC for a message, so flow control keeps its peer's bytes out of this process:
    memory stays O(model + max_transfers x chunk) however many sites upload together.
    ``refusals`` counts the refusals by reason (``fedsov-reason``).
    """

    def __init__(
        self,
        handler: FederationHandler,
        *,
        insecure: bool = False,
        max_transfers: int = 4,
        plan_sha256: str | None = None,
        node: NodeIdentity | None = None,
        revocation: RevocationList | None = None,
        limits: StreamLimits | None = None,
        tls: TlsMaterial | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        """``node``: this server's own identity (default: ``tls``'s), told to who joins;
        ``tls``: this server's certificate and key, which sign each join's proof;
        ``revocation``: the CA's CRL; a revoked client certificate is refused at every call.
        ``metrics``: where refusals are counted for Prometheus (besides ``refusals``)."""
        self.revocation = revocation
        self.handler = handler
        self.node = node or (tls.identity if tls is not None else None)
        self._prover = JoinProver(tls) if tls is not None else None
        self.insecure = insecure
        self.plan_sha256 = plan_sha256
        self._uploads = asyncio.Semaphore(max_transfers)
        self._downloads = asyncio.Semaphore(max_transfers)
        self.max_transfers = max_transfers
        self.limits = limits or StreamLimits()
        self.refusals: Counter[str] = Counter()
        self.metrics = metrics
        self._streams: Counter[tuple[str, str]] = Counter()  # (kind, peer) -> open

    def limits_report(self) -> dict[str, Any]:
        """The limits in force and the refusals so far by reason (for summary.json)."""
        return {
            "limits": {"max_transfers": self.max_transfers, **self.limits.as_json()},
            "refusals": dict(sorted(self.refusals.items())),
        }

    async def _abort(
        self, context: Context, exc: FedsovError, what: str, who: NodeIdentity | None = None
    ) -> NoReturn:
        code = status_for(exc)
        log.warning("%s refused (%s): %s", what, code.name, exc)
        if who is not None and isinstance(exc, AccessDenied | PolicyViolation):
            self.handler.refused(who, "admission", str(exc))
        await self._refuse(context, code, reason_for(exc), str(exc))

    async def _refuse(
        self, context: Context, code: grpc.StatusCode, reason: str, details: str
    ) -> NoReturn:
        """End the call with ``code``, ``details`` and ``reason`` (``fedsov-reason``)."""
        self.refusals[reason] += 1
        if self.metrics is not None:
            self.metrics.refused(reason)
        await context.abort(code, details, trailing_metadata=((REASON_KEY, reason),))
        raise AssertionError("unreachable")  # context.abort raises

    async def _internal(self, context: Context, exc: Exception, what: str) -> NoReturn:
        """Our bug, not the peer's input: one short log line, INTERNAL "internal"."""
        log.error("%s failed: %s: %s", what, type(exc).__name__, exc)
        await self._refuse(context, grpc.StatusCode.INTERNAL, INTERNAL_REASON, "internal error")

    @contextlib.contextmanager
    def _peer_stream(self, kind: str, identity: NodeIdentity) -> Iterator[bool]:
        """Count one open ``kind`` stream of ``identity``; yields False past the limit."""
        key = (kind, identity.name)
        if self._streams[key] >= self.limits.max_streams_per_peer:
            yield False
            return
        self._streams[key] += 1
        try:
            yield True
        finally:
            self._streams[key] -= 1
            if not self._streams[key]:
                del self._streams[key]

    async def _too_many(self, context: Context, kind: str, identity: NodeIdentity) -> NoReturn:
        details = (
            f"{identity.name} has {self.limits.max_streams_per_peer} {kind} streams open "
            "already (max_streams_per_peer); finish one first"
        )
        log.warning("%s refused (RESOURCE_EXHAUSTED): %s", kind, details)
        await self._refuse(context, grpc.StatusCode.RESOURCE_EXHAUSTED, "too-many-streams", details)

    async def _identity(self, context: Context) -> NodeIdentity:
        identity = await self.certified(context)
        if identity.role is Role.operator:
            why = (
                f"{identity.name!r} holds an operator certificate: it may read status and "
                "stop (fedsov status, fedsov stop), never take part in a federation"
            )
            self.handler.refused(identity, "operator-role", why)
            await self._refuse(context, grpc.StatusCode.PERMISSION_DENIED, "operator-role", why)
        metadata = dict(context.invocation_metadata() or ())
        if self.plan_sha256 is not None and metadata.get(PLAN_HEADER) != self.plan_sha256:
            theirs = metadata.get(PLAN_HEADER) or "none"
            why = (
                f"plan mismatch: this node runs plan {self.plan_sha256[:16]}, "
                f"the caller {str(theirs)[:16]}"
            )
            self.handler.refused(identity, "plan-mismatch", why)
            await self._refuse(context, grpc.StatusCode.FAILED_PRECONDITION, "plan-mismatch", why)
        return identity

    async def certified(self, context: Context) -> NodeIdentity:
        """The caller's identity from its certificate (revoked: refused), or in insecure
        mode from its name header; aborts the call when there is none."""
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
            identity = identity_from_pem(pems[0])
        except PKIError as exc:
            await self._abort(context, exc, "certificate")
        why = self._revoked(identity)
        if why is not None:
            log.warning("call refused (UNAUTHENTICATED): %s", why)
            self.handler.refused(identity, "revoked", why)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
        return identity

    def _revoked(self, identity: NodeIdentity) -> str | None:
        """Why ``identity``'s certificate is revoked; None if it is not (or no CRL is kept)."""
        if self.revocation is None or identity.certificate_der is None:
            return None
        try:
            self.revocation.check(identity.certificate_der)
        except PKIError as exc:
            return str(exc)
        return None

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
            why = self._revoked(identity)  # a revocation also ends a live subscription
            if why is not None:
                if isinstance(events, AsyncGenerator):
                    await events.aclose()  # the handler ends its session now
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, why)
            yield serde.task_event_to_proto(event)

    async def DownloadModel(  # noqa: N802
        self, request: pb.DownloadRequest, context: Context
    ) -> None:
        """Chunks written one by one, each taken by the peer within ``send_timeout_s``."""
        identity = await self._identity(context)
        what = f"download by {identity.name}"
        try:
            self.handler.admit(identity)
            payload = self.handler.model_payload(request.model_sha256)
        except FedsovError as exc:
            await self._abort(context, exc, what)
        total = len(payload)
        if request.offset > total:
            await self._refuse(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                "bad-offset",
                f"offset {request.offset} is past the model's {total} bytes",
            )
        with self._peer_stream("download", identity) as allowed:
            if not allowed:
                await self._too_many(context, "download", identity)
            async with self._downloads:
                await self._send_chunks(context, payload, request.offset, what)
        if total > request.offset:  # the last byte left (a zero-byte download: nothing)
            await self.handler.model_sent(identity, request.model_sha256)

    async def _send_chunks(
        self, context: Context, payload: bytes | bytearray, offset: int, what: str
    ) -> None:
        total, timeout = len(payload), self.limits.send_timeout_s
        for chunk in iter_chunks(payload, DEFAULT_CHUNK_SIZE, offset=offset):
            try:
                async with asyncio.timeout(timeout):
                    await context.write(encode_model_chunk(offset, total, chunk))
            except TimeoutError:
                stalled = StreamStalled(
                    f"the peer took no model chunk for {timeout:g} s (send_timeout_s)",
                    reason="too-slow",
                )
                await self._abort(context, stalled, what)
            offset += len(chunk)

    async def UploadUpdate(  # noqa: N802
        self, request_iterator: AsyncIterator[pb.UpdateChunk], context: Context
    ) -> pb.UploadReceipt:
        """Admission, the per-peer limit, the header (in time) and the handler's check of
        it, and only then a slot; then chunks, each in time and at the minimum rate."""
        identity = await self._identity(context)
        what = f"upload from {identity.name}"
        with self._peer_stream("upload", identity) as allowed:
            try:
                self.handler.admit(identity)
            except FedsovError as exc:
                await self._abort(context, exc, what, identity)
            if not allowed:
                await self._too_many(context, "upload", identity)
            try:
                receipt = await self._upload(identity, aiter(request_iterator))
            except FedsovError as exc:
                await self._abort(context, exc, what)
            except Exception as exc:  # our bug: INTERNAL, not UNKNOWN
                await self._internal(context, exc, what)
        return serde.receipt_to_proto(receipt)

    async def _upload(
        self, identity: NodeIdentity, messages: AsyncIterator[pb.UpdateChunk | memoryview]
    ) -> UploadReceipt:
        limits = self.limits
        try:
            async with asyncio.timeout(limits.first_message_timeout_s):
                first = await anext(messages, None)
        except TimeoutError:
            raise StreamStalled(
                f"no header within {limits.first_message_timeout_s:g} s (first_message_timeout_s)"
            ) from None
        if not isinstance(first, pb.UpdateChunk) or first.WhichOneof("part") != "header":
            raise ProtocolError("the first message of an upload must be its header")
        header = serde.update_header_from_proto(first.header)
        deadline = self.handler.check_upload(identity, header)
        try:
            async with asyncio.timeout(max(0.0, deadline - time.time())):
                await self._uploads.acquire()
        except TimeoutError:
            raise LateUpdate(
                f"round {header.round} closed before an upload slot came free"
            ) from None
        try:
            return await self.handler.receive_update(
                identity, header, _data_chunks(messages, limits)
            )
        finally:
            self._uploads.release()

    async def DeclineTask(  # noqa: N802
        self, request: pb.DeclineRequest, context: Context
    ) -> pb.DeclineReceipt:
        identity = await self._identity(context)
        what = f"decline by {identity.name}"
        try:
            task_id, round, code, reason = serde.decline_from_proto(request)
            self.handler.decline(identity, task_id=task_id, round=round, code=code, reason=reason)
        except FedsovError as exc:
            await self._abort(context, exc, what)
        except Exception as exc:  # our bug: INTERNAL, not UNKNOWN
            await self._internal(context, exc, what)
        return pb.DeclineReceipt(task_id=request.task_id, round=request.round)

    async def SecureAggregation(  # noqa: N802
        self, request: pb.SecAggRequest, context: Context
    ) -> pb.SecAggReply:
        identity = await self._identity(context)
        what = f"secure aggregation step of {identity.name}"
        with self._peer_stream("secagg", identity) as allowed:
            try:
                self.handler.admit(identity)
            except FedsovError as exc:
                await self._abort(context, exc, what, identity)
            if not allowed:
                await self._too_many(context, "secagg", identity)
            try:
                reply = await self.handler.secure_step(
                    identity, serde_secagg.request_from_proto(request)
                )
            except FedsovError as exc:
                await self._abort(context, exc, what)
            except Exception as exc:  # our bug: INTERNAL, not UNKNOWN
                await self._internal(context, exc, what)
        return serde_secagg.reply_to_proto(reply)


async def _data_chunks(
    messages: AsyncIterator[pb.UpdateChunk | memoryview], limits: StreamLimits
) -> AsyncIterator[memoryview]:
    """The data chunks after the header: each within ``idle_timeout_s`` of the last, and,
    past ``transfer_grace_s``, on average at least ``min_transfer_bytes_per_s``."""
    loop = asyncio.get_running_loop()
    started, received = loop.time(), 0
    rate = limits.min_transfer_bytes_per_s
    while True:
        idle_by = loop.time() + limits.idle_timeout_s
        rate_by = started + limits.transfer_grace_s + received / rate if rate else idle_by
        try:
            async with asyncio.timeout_at(min(idle_by, rate_by)):
                message = await anext(messages, None)
        except TimeoutError:
            raise _stalled(idle_by <= rate_by, limits, received) from None
        if message is None:
            return
        if isinstance(message, memoryview):  # the usual form, viewed in place
            data = message
        elif message.WhichOneof("part") == "data":
            data = memoryview(message.data)
        else:
            raise ProtocolError("an upload carries one header, then only data chunks")
        received += len(data)
        yield data


def _stalled(idle: bool, limits: StreamLimits, received: int) -> StreamStalled:
    if idle:
        return StreamStalled(f"no data for {limits.idle_timeout_s:g} s (idle_timeout_s)")
    return StreamStalled(
        f"{received} bytes in; slower than min_transfer_bytes_per_s = "
        f"{limits.min_transfer_bytes_per_s} after transfer_grace_s = {limits.transfer_grace_s:g} s"
        " (a server whose sites have slower links raises its [server] transfer_grace_s)",
        reason="too-slow",
    )
