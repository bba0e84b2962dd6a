"""Map fedsov errors to gRPC status codes and named reasons at the transport boundary.

Every refusal carries a named status and, in the trailing metadata ``fedsov-reason``
(``options.REASON_KEY``), a kebab-case reason. INTERNAL ("internal") is kept for our
own bugs: no input a peer sends should ever produce it.
"""

from __future__ import annotations

import grpc

from fedsov.exceptions import (
    AccessDenied,
    CodecError,
    ConfigError,
    DuplicateUpdate,
    FedsovError,
    LateUpdate,
    PayloadHashError,
    PKIError,
    PolicyViolation,
    ProtocolError,
    SecureAggregation,
    SessionConflict,
    StreamStalled,
    UnknownTask,
)

__all__ = ["INTERNAL_REASON", "reason_for", "status_for"]

INTERNAL_REASON = "internal"

# Most specific first: a subclass before its base.
_STATUS: tuple[tuple[type[FedsovError], grpc.StatusCode, str], ...] = (
    (PKIError, grpc.StatusCode.UNAUTHENTICATED, "bad-certificate"),
    # Not fatal: the other session may be a dead connection keepalive has not noticed.
    (SessionConflict, grpc.StatusCode.ALREADY_EXISTS, "session-conflict"),
    (AccessDenied, grpc.StatusCode.PERMISSION_DENIED, "not-admitted"),
    (PolicyViolation, grpc.StatusCode.PERMISSION_DENIED, "policy"),
    (UnknownTask, grpc.StatusCode.NOT_FOUND, "unknown-task"),
    (DuplicateUpdate, grpc.StatusCode.ALREADY_EXISTS, "duplicate"),
    # Not FAILED_PRECONDITION: a participant takes that one as fatal.
    (LateUpdate, grpc.StatusCode.DEADLINE_EXCEEDED, "late"),
    (StreamStalled, grpc.StatusCode.DEADLINE_EXCEEDED, "idle-timeout"),
    (SecureAggregation, grpc.StatusCode.ABORTED, "secure-aggregation"),
    (PayloadHashError, grpc.StatusCode.DATA_LOSS, "bad-payload"),
    (CodecError, grpc.StatusCode.INVALID_ARGUMENT, "bad-payload"),
    (ProtocolError, grpc.StatusCode.INVALID_ARGUMENT, "bad-request"),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT, "bad-request"),  # e.g. a training plan
)


def status_for(exc: FedsovError) -> grpc.StatusCode:
    """The gRPC status a refusal for ``exc`` is answered with."""
    return _entry(exc)[0]


def reason_for(exc: FedsovError) -> str:
    """The named reason (``fedsov-reason``) a refusal for ``exc`` carries."""
    return exc.reason if isinstance(exc, StreamStalled) else _entry(exc)[1]


def _entry(exc: FedsovError) -> tuple[grpc.StatusCode, str]:
    for kind, code, reason in _STATUS:
        if isinstance(exc, kind):
            return code, reason
    return grpc.StatusCode.INTERNAL, INTERNAL_REASON
