"""Map fedsov errors to gRPC status codes at the transport boundary, and back."""

from __future__ import annotations

import grpc

from fedsov.exceptions import (
    AccessDenied,
    CodecError,
    DuplicateUpdate,
    FedsovError,
    LateUpdate,
    PayloadHashError,
    PolicyViolation,
    ProtocolError,
    SessionConflict,
    UnknownTask,
)

__all__ = ["status_for"]

_STATUS: tuple[tuple[type[FedsovError], grpc.StatusCode], ...] = (
    (SessionConflict, grpc.StatusCode.ALREADY_EXISTS),  # not fatal: the other may be dead
    (AccessDenied, grpc.StatusCode.PERMISSION_DENIED),
    (PolicyViolation, grpc.StatusCode.PERMISSION_DENIED),
    (UnknownTask, grpc.StatusCode.NOT_FOUND),
    (DuplicateUpdate, grpc.StatusCode.ALREADY_EXISTS),
    (LateUpdate, grpc.StatusCode.DEADLINE_EXCEEDED),  # not FAILED_PRECONDITION: that one is fatal
    (PayloadHashError, grpc.StatusCode.DATA_LOSS),
    (CodecError, grpc.StatusCode.INVALID_ARGUMENT),
    (ProtocolError, grpc.StatusCode.INVALID_ARGUMENT),
)


def status_for(exc: FedsovError) -> grpc.StatusCode:
    for kind, code in _STATUS:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL
