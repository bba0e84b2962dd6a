"""A participant's connection to its upstream (coordinator or regional aggregator)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc

from fedsov import __version__
from fedsov.codec import DEFAULT_CHUNK_SIZE, iter_chunks
from fedsov.exceptions import PayloadHashError, PayloadSizeError, PKIError
from fedsov.faults import crash_point
from fedsov.messages import SecAggReply, SecAggRequest, TaskEvent, UpdateHeader, UploadReceipt
from fedsov.pki.identity import NodeIdentity
from fedsov.pki.proof import new_nonce, verify_join_proof
from fedsov.pki.tls import TlsMaterial
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.transport import serde, serde_secagg, wire
from fedsov.transport.options import CLIENT_OPTIONS, INSECURE_NAME_HEADER, PLAN_HEADER

__all__ = ["FederationClient", "mtls_channel"]

log = logging.getLogger("fedsov.transport")

SERVICE = pb.DESCRIPTOR.services_by_name["Federation"].full_name

# Errors after which a download is resumed from the bytes already received.
RESUMABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def mtls_channel(
    address: str, tls: TlsMaterial, *, server_name: str | None = None
) -> grpc.aio.Channel:
    """A channel that presents ``tls``'s certificate and trusts only its CA; the server's
    certificate must name ``server_name`` (default: the address's host)."""
    options = list(CLIENT_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    credentials = grpc.ssl_channel_credentials(
        root_certificates=tls.ca_pem,
        private_key=tls.key_pem,
        certificate_chain=tls.cert_pem,
    )
    return grpc.aio.secure_channel(address, credentials, options=options)


class FederationClient:
    """Dials out only. ``tls=None`` is plaintext for local development (``insecure_name``)."""

    def __init__(
        self,
        address: str,
        *,
        tls: TlsMaterial | None,
        server_name: str | None = None,
        insecure_name: str | None = None,
        plan_sha256: str | None = None,
    ) -> None:
        self.address, self.server_name, self.tls = address, server_name, tls
        options = list(CLIENT_OPTIONS)
        plan_metadata = ((PLAN_HEADER, plan_sha256),) if plan_sha256 else ()
        if tls is None:
            self._channel = grpc.aio.insecure_channel(address, options=options)
            self._metadata: tuple[tuple[str, str], ...] = plan_metadata + (
                ((INSECURE_NAME_HEADER, insecure_name),) if insecure_name else ()
            )
        else:
            self._channel = mtls_channel(address, tls, server_name=server_name)
            self._metadata = plan_metadata
        self._stub = pb_grpc.FederationStub(self._channel)  # type: ignore[no-untyped-call]
        # The bulk streams, read and written without protobuf's copies (fedsov.transport.wire).
        self._download = self._channel.unary_stream(
            f"/{SERVICE}/DownloadModel",
            request_serializer=pb.DownloadRequest.SerializeToString,
            response_deserializer=wire.parse_model_chunk,
        )
        self._upload = self._channel.stream_unary(
            f"/{SERVICE}/UploadUpdate",
            request_serializer=wire.serialize,
            response_deserializer=pb.UploadReceipt.FromString,
        )
        # Who answered the join: where updates go, for the audit. Under TLS the identity
        # its join proof verified; without, what it says. Until then: the name dialled.
        self.upstream: NodeIdentity | None = None
        self.upstream_name: str = server_name or address
        self.upstream_jurisdiction: str | None = None

    async def close(self) -> None:
        await self._channel.close(None)

    async def __aenter__(self) -> FederationClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def join(self, *, device: str, timeout: float = 30.0) -> pb.JoinResponse:
        """Join; under TLS, ``upstream`` is then the identity the answer's proof verified
        (PKIError, saying what failed, when it does not)."""
        nonce = new_nonce() if self.tls is not None else b""
        response: pb.JoinResponse = await self._stub.Join(
            pb.JoinRequest(software_version=__version__, device=device, nonce=nonce),
            timeout=timeout,
            metadata=self._metadata,
            wait_for_ready=False,
        )
        if self.tls is None:  # local development: nothing to prove anything with
            self.upstream_name = response.upstream_name or self.upstream_name
            self.upstream_jurisdiction = response.upstream_jurisdiction or None
            return response
        self.upstream = _verified_upstream(self.tls, response, nonce)
        self.upstream_name = self.upstream.name
        self.upstream_jurisdiction = self.upstream.jurisdiction
        return response

    async def tasks(self) -> AsyncIterator[TaskEvent]:
        """The task stream; ends when the upstream closes it."""
        call: Any = self._stub.SubscribeTasks(pb.SubscribeRequest(), metadata=self._metadata)
        async for message in call:
            yield serde.task_event_from_proto(message)

    async def download(
        self,
        model_sha256: str,
        *,
        size: int,
        max_resumes: int = 5,
        timeout: float = 300.0,
        buffer: bytearray | None = None,
    ) -> bytearray:
        """Fetch a model payload, resuming from the last byte received after a break;
        hashed as it arrives (once), and returned without a copy.

        ``buffer``: bytes of this model received before (over an earlier connection);
        the download goes on from its end, and it grows as chunks arrive.
        """
        buffer = bytearray() if buffer is None else buffer
        digest = hashlib.sha256(buffer)
        resumes = 0
        while True:
            try:
                call: Any = self._download(
                    pb.DownloadRequest(model_sha256=model_sha256, offset=len(buffer)),
                    metadata=self._metadata,
                    timeout=timeout,
                )
                async for chunk in call:
                    if chunk.offset != len(buffer) or chunk.total_size != size:
                        raise PayloadSizeError(
                            f"model download: chunk at offset {chunk.offset} of "
                            f"{chunk.total_size} bytes, expected offset {len(buffer)} of {size}"
                        )
                    if len(buffer) + len(chunk.data) > size:
                        raise PayloadSizeError(f"model download: more than the {size} bytes")
                    digest.update(chunk.data)
                    buffer += chunk.data
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RESUMABLE or resumes >= max_resumes:
                    raise
                resumes += 1
                log.warning(
                    "download interrupted at %d bytes (%s); resuming", len(buffer), exc.code().name
                )
        if len(buffer) != size:
            raise PayloadSizeError(f"model download: got {len(buffer)} of {size} bytes")
        if digest.hexdigest() != model_sha256:
            raise PayloadHashError(
                f"model download: SHA-256 {digest.hexdigest()}, expected {model_sha256}"
            )
        return buffer

    async def decline(self, *, task_id: str, round: int, code: str, reason: str) -> None:
        """Refuse a task; the upstream records ``code: reason`` and stops waiting for it."""
        await self._stub.DeclineTask(
            pb.DeclineRequest(task_id=task_id, round=round, code=code, reason=reason),
            metadata=self._metadata,
            timeout=30.0,
        )

    async def secure_step(self, request: SecAggRequest, *, timeout: float) -> SecAggReply:
        """One step of a secure round; answered when the stage it waits for closes."""
        reply = await self._stub.SecureAggregation(
            serde_secagg.request_to_proto(request), metadata=self._metadata, timeout=timeout
        )
        return serde_secagg.reply_from_proto(reply)

    async def upload(
        self,
        header: UpdateHeader,
        payload: bytes | bytearray,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        timeout: float = 600.0,
    ) -> UploadReceipt:
        receipt = await self._upload(
            _upload_messages(header, payload, chunk_size),
            metadata=self._metadata,
            timeout=timeout,
        )
        return serde.receipt_from_proto(receipt)


def _verified_upstream(tls: TlsMaterial, response: pb.JoinResponse, nonce: bytes) -> NodeIdentity:
    """The identity the join answer's proof shows, checked against this node's CA."""
    own = tls.identity
    if own.certificate_sha256 is None:
        raise PKIError("this node's TLS identity was not read from its certificate")
    return verify_join_proof(
        certificate_der=response.upstream_certificate,
        proof=response.proof,
        nonce=nonce,
        client_certificate_sha256=own.certificate_sha256,
        federation=own.federation,
        ca_pem=tls.ca_pem,
    )


def _upload_messages(
    header: UpdateHeader, payload: bytes | bytearray, chunk_size: int
) -> Iterator[pb.UpdateChunk | bytes]:
    yield pb.UpdateChunk(header=serde.update_header_to_proto(header))
    crash_point("site-uploading", header.round)  # the header left, the payload has not
    for chunk in iter_chunks(payload, chunk_size):
        yield wire.encode_update_data(chunk)
