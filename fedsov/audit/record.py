"""One audit record: its fields, its canonical bytes and its hash.

A record is one JSON object on one line of the ledger. The line is the record's
canonical JSON (sorted keys, no spaces, UTF-8, no NaN), signature included; the
signature covers the canonical bytes of the record without ``sig``; ``prev`` is the
SHA-256 of the previous line (64 zeros for the first record).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "GENESIS_PREV",
    "AuditEvent",
    "AuditRecord",
    "canonical_json",
    "utc_now",
]

FORMAT_VERSION = 1
GENESIS_PREV = "0" * 64
_MAX_DETAIL_DEPTH = 32  # how deep ``detail`` may nest objects and arrays (fedsov writes 2)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_EVENT = re.compile(r"[a-z][a-z0-9-]{0,63}")


class AuditEvent(StrEnum):
    """The events fedsov records; other lowercase-hyphenated names are allowed too."""

    update_sent = "update-sent"
    update_received = "update-received"
    model_sent = "model-sent"
    model_received = "model-received"
    model_published = "model-published"
    task_declined = "task-declined"
    policy_refused = "policy-refused"
    export = "export"
    secure_aggregate = "secure-aggregate"  # a round securely aggregated (no mask or share)
    guardrail_stop = "guardrail-stop"  # a [guardrails] rule stopped the federation
    operator_stop = "operator-stop"  # an operator (`fedsov stop`) stopped the federation
    checkpoint = "checkpoint"
    insecure_reproducible_mode = "insecure-reproducible-mode"


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8, NaN and Infinity refused (ValueError)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def utc_now() -> str:
    """The current time as RFC 3339 UTC with microseconds, e.g. 2025-01-02T03:04:05.000006Z."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditRecord:
    """One signed, chained ledger entry. Hashes are SHA-256 hex; contents are never stored."""

    seq: int
    time: str
    node: str
    jurisdiction: str
    event: str
    round: int | None
    peer: str | None
    peer_jurisdiction: str | None
    plan_sha256: str | None
    content_sha256: str | None
    epsilon: float | None
    delta: float | None
    decision: str | None
    detail: Mapping[str, Any] = field(hash=False)
    prev: str
    key: str
    """The signer's public key: base64 of its DER SubjectPublicKeyInfo."""
    sig: str
    """Base64 signature over ``signed_bytes()``."""
    v: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object stored on its line."""
        return {
            "v": self.v,
            "seq": self.seq,
            "time": self.time,
            "node": self.node,
            "jurisdiction": self.jurisdiction,
            "event": self.event,
            "round": self.round,
            "peer": self.peer,
            "peer_jurisdiction": self.peer_jurisdiction,
            "plan_sha256": self.plan_sha256,
            "content_sha256": self.content_sha256,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "decision": self.decision,
            "detail": dict(self.detail),
            "prev": self.prev,
            "key": self.key,
            "sig": self.sig,
        }

    def signed_bytes(self) -> bytes:
        """Canonical bytes of the record without ``sig``: what the signature covers."""
        unsigned = self.to_dict()
        del unsigned["sig"]
        return canonical_json(unsigned)

    def line(self) -> bytes:
        """Canonical bytes of the whole record: its ledger line, without the newline."""
        return canonical_json(self.to_dict())

    @property
    def sha256(self) -> str:
        """SHA-256 hex of ``line()``: what the next record's ``prev`` names."""
        return hashlib.sha256(self.line()).hexdigest()

    @classmethod
    def from_dict(cls, obj: object) -> AuditRecord:
        """Validate a parsed JSON line; ValueError names the first bad field."""
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        expected = set(_FIELDS)
        missing = sorted(expected - obj.keys())
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        extra = sorted(obj.keys() - expected)
        if extra:
            raise ValueError(f"unexpected field(s) {', '.join(extra)}")
        for name, check in _FIELDS.items():
            problem = check(obj[name])
            if problem:
                raise ValueError(f"field {name!r}: {problem}")
        if obj["v"] != FORMAT_VERSION:
            raise ValueError(f"format version {obj['v']} is not supported (expected 1)")
        if _deeper_than(obj["detail"], _MAX_DETAIL_DEPTH):
            raise ValueError(f"field 'detail' nests deeper than {_MAX_DETAIL_DEPTH} levels")
        try:
            canonical_json(obj)
        except UnicodeEncodeError:
            raise ValueError("a string holds an unpaired surrogate (not Unicode)") from None
        except ValueError:
            raise ValueError("field 'detail' holds NaN or Infinity") from None
        return cls(**obj)


def _deeper_than(value: object, limit: int) -> bool:
    """Whether JSON ``value`` nests objects or arrays more than ``limit`` deep (no recursion:
    a hostile line must not exhaust the stack of whoever checks it)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list | tuple):
            children = list(item)
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _int(value: object, *, nullable: bool = False) -> str:
    if value is None and nullable:
        return ""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return f"expected a non-negative integer, got {value!r}"
    return ""


def _str(value: object, *, nullable: bool = False, pattern: re.Pattern[str] | None = None) -> str:
    if value is None and nullable:
        return ""
    if not isinstance(value, str) or not value:
        return f"expected a non-empty string, got {value!r}"
    if pattern is not None and not pattern.fullmatch(value):
        return f"{value!r} does not match {pattern.pattern}"
    return ""


def _number(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"expected a finite number or null, got {value!r}"
    if value < 0:
        return f"expected a non-negative number, got {value!r}"
    return ""


def _detail(value: object) -> str:
    return "" if isinstance(value, dict) else f"expected a JSON object, got {value!r}"


def _optional_str(value: object) -> str:
    return _str(value, nullable=True)


def _optional_hash(value: object) -> str:
    return _str(value, nullable=True, pattern=_HEX64)


def _optional_int(value: object) -> str:
    return _int(value, nullable=True)


# Each field's check: a problem, or "" when the value is fine.
_FIELDS: dict[str, Callable[[object], str]] = {
    "v": _int,
    "seq": _int,
    "time": _str,
    "node": _str,
    "jurisdiction": _str,
    "event": lambda v: _str(v, pattern=_EVENT),
    "round": _optional_int,
    "peer": _optional_str,
    "peer_jurisdiction": _optional_str,
    "plan_sha256": _optional_hash,
    "content_sha256": _optional_hash,
    "epsilon": _number,
    "delta": _number,
    "decision": _optional_str,
    "detail": _detail,
    "prev": lambda v: _str(v, pattern=_HEX64),
    "key": _str,
    "sig": _str,
}
