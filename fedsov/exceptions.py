"""The fedsov exception tree.

    FedsovError
    ├── ConfigError            a config or plan file is invalid (names file and key)
    ├── PKIError               a certificate, key or CSR is missing or invalid
    ├── CodecError             a tensor payload does not match what was expected
    │   ├── ManifestMismatch   names, dtypes or shapes differ from the expected manifest
    │   ├── NonFiniteTensor    a tensor holds NaN or Inf
    │   ├── PayloadSizeError   truncated or oversized payload
    │   └── PayloadHashError   SHA-256 of the payload differs from the announced one
    ├── DataError              a site's local data cannot be loaded or is malformed
    ├── ProtocolError          a peer broke the protocol (unexpected message, bad header)
    │   ├── UnknownTask        no open task with that id for that participant
    │   ├── DuplicateUpdate    the task already has an accepted update
    │   ├── LateUpdate         the round closed or its deadline passed
    │   ├── StreamStalled      a stream went silent, or slower than the minimum rate
    │   └── UpdateOutOfBounds  an update's weight or L2 norm is past the round's bound
    ├── AccessDenied           the peer's certificate is not allowed here
    │   └── SessionConflict    another certificate of that name holds a live session
    ├── PolicyViolation        the federation plan forbids this (residency, export)
    ├── SecureAggregation      a secure-aggregation round cannot complete (too few survivors)
    ├── StateError             an aggregator's persisted state is inconsistent or unwritable
    ├── TrainingError          local training failed
    └── AuditError             an audit ledger or checkpoint file cannot be read or written
        └── LedgerTampered     a ledger opened for appending fails its integrity check

gRPC errors are mapped to these at the transport boundary (``raise ... from exc``).
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AuditError",
    "CodecError",
    "ConfigError",
    "DataError",
    "DuplicateUpdate",
    "FedsovError",
    "LateUpdate",
    "LedgerTampered",
    "ManifestMismatch",
    "NonFiniteTensor",
    "PKIError",
    "PayloadHashError",
    "PayloadSizeError",
    "PolicyViolation",
    "ProtocolError",
    "SecureAggregation",
    "SessionConflict",
    "StateError",
    "StreamStalled",
    "TrainingError",
    "UnknownTask",
    "UpdateOutOfBounds",
]


class FedsovError(Exception):
    """Base class of every error fedsov raises on purpose."""


class ConfigError(FedsovError):
    """A configuration file or value is invalid; the message names the file and key."""


class PKIError(FedsovError):
    """A certificate, private key or CSR is missing, malformed or not trusted."""


class CodecError(FedsovError):
    """A tensor payload does not match what the receiver expected."""


class ManifestMismatch(CodecError):
    """Tensor names, dtypes or shapes differ from the expected manifest."""


class NonFiniteTensor(CodecError):
    """A tensor holds NaN or infinite values."""


class PayloadSizeError(CodecError):
    """A payload is shorter (truncated) or longer (oversized) than its manifest says."""


class PayloadHashError(CodecError):
    """The SHA-256 of a payload differs from the one announced for it."""


class DataError(FedsovError):
    """A site's local data cannot be loaded or is malformed."""


class ProtocolError(FedsovError):
    """A peer sent something the protocol does not allow at that point."""


class TrainingError(FedsovError):
    """Local training failed."""


class UnknownTask(ProtocolError):
    """No open task with that id exists for that participant."""


class DuplicateUpdate(ProtocolError):
    """The task already has an accepted update."""


class LateUpdate(ProtocolError):
    """The round closed, or its deadline passed, before the update arrived."""


class StreamStalled(ProtocolError):
    """A stream sent nothing for too long, or fell below the minimum transfer rate.

    ``reason`` names which, for the refusal's ``fedsov-reason`` ("idle-timeout", "too-slow").
    """

    def __init__(self, message: str, *, reason: str = "idle-timeout") -> None:
        super().__init__(message)
        self.reason = reason


class UpdateOutOfBounds(ProtocolError):
    """An update claims more examples, or has a larger L2 norm, than the round allows."""


class AccessDenied(FedsovError):
    """The peer's certificate identifies a node that is not allowed here."""


class SessionConflict(AccessDenied):
    """Another certificate with the peer's name holds a live session; retry once it ends."""


class PolicyViolation(FedsovError):
    """The federation plan forbids what was about to happen (residency, export)."""


class SecureAggregation(FedsovError):
    """A secure-aggregation round cannot complete; ``code`` names why (stable, kebab-case)."""

    def __init__(self, message: str, *, code: str = "secagg-failed") -> None:
        super().__init__(message)
        self.code = code


class StateError(FedsovError):
    """An aggregator's persisted state is inconsistent, damaged or cannot be written."""


class AuditError(FedsovError):
    """An audit ledger or checkpoint file is missing, unreadable or cannot be written.

    A ledger that reads but fails verification is a result (``VerifyResult``), not an error.
    """


class LedgerTampered(AuditError):
    """A ledger opened for appending fails its integrity check; the message names the line."""
