"""The Federation service registered with decoding of its own.

grpc's generated registration decodes requests before the servicer runs: bytes
that do not parse end the call with UNKNOWN and a traceback in the log. Here an
undecodable request is what it is, a peer's bad input: INVALID_ARGUMENT, and one
log line a minute at most, however often a peer sends it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from fedsov.exceptions import ProtocolError
from fedsov.logging import RateLimitedLog
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.proto.v1 import federation_pb2_grpc as pb_grpc
from fedsov.transport.wire import parse_update_part
from fedsov.transport.wire import serialize as serialize_message

__all__ = ["federation_handler"]

SERVICE = pb.DESCRIPTOR.services_by_name["Federation"]

_log = RateLimitedLog(logging.getLogger("fedsov.transport"))

Context = grpc.aio.ServicerContext[Any, Any]


def _parse(kind: type[Message], raw: bytes) -> Any:
    try:
        if kind is pb.UpdateChunk:  # an upload's data chunks, viewed in place
            return parse_update_part(raw)
        return kind.FromString(raw)
    except DecodeError as exc:
        name = kind.DESCRIPTOR.name
        _log.warning(f"undecodable-{name}", "refused an undecodable %s: %s", name, exc)
        raise ProtocolError(f"request is not a valid {name} message: {exc}") from None


async def _parse_unary(kind: type[Message], raw: bytes, context: Context) -> Any:
    try:
        return _parse(kind, raw)
    except ProtocolError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable") from None  # context.abort raises


async def _parse_stream(kind: type[Message], raws: AsyncIterator[bytes]) -> AsyncIterator[Any]:
    """Decoded messages; ProtocolError at the first that does not parse (the servicer
    maps it like any other bad upload)."""
    async for raw in raws:
        yield _parse(kind, raw)


def _method_handler(method: Any, impl: Callable[..., Any]) -> grpc.RpcMethodHandler[Any, Any]:
    request: type[Message] = message_factory.GetMessageClass(method.input_type)
    response: type[Message] = message_factory.GetMessageClass(method.output_type)
    serialize = serialize_message if response is pb.ModelChunk else response.SerializeToString
    if method.client_streaming:  # UploadUpdate

        async def stream_unary(raws: AsyncIterator[bytes], context: Context) -> Any:
            return await impl(_parse_stream(request, raws), context)

        return grpc.stream_unary_rpc_method_handler(stream_unary, response_serializer=serialize)
    if method.server_streaming and inspect.isasyncgenfunction(impl):  # yields its messages

        async def unary_stream(raw: bytes, context: Context) -> AsyncIterator[Any]:
            message = await _parse_unary(request, raw, context)
            async for item in impl(message, context):
                yield item

        return grpc.unary_stream_rpc_method_handler(unary_stream, response_serializer=serialize)
    if method.server_streaming:  # writes its messages with context.write

        async def unary_writer(raw: bytes, context: Context) -> None:
            await impl(await _parse_unary(request, raw, context), context)

        return grpc.unary_stream_rpc_method_handler(unary_writer, response_serializer=serialize)

    async def unary_unary(raw: bytes, context: Context) -> Any:
        return await impl(await _parse_unary(request, raw, context), context)

    return grpc.unary_unary_rpc_method_handler(unary_unary, response_serializer=serialize)


def federation_handler(servicer: pb_grpc.FederationServicer) -> grpc.GenericRpcHandler[Any, Any]:
    """``servicer``'s methods under the Federation service's name, decoding requests here."""
    handlers = {m.name: _method_handler(m, getattr(servicer, m.name)) for m in SERVICE.methods}
    return grpc.method_handlers_generic_handler(SERVICE.full_name, handlers)
