"""Checkpoints: (node, seq, SHA-256) of a ledger record, held by someone other than the node.

A node's ledger commits to its whole history up to a record through that record's
hash. An upstream (or an auditor) that stores a checkpoint can later prove the
ledger was cut short (``truncated``) or rewritten, which the ledger alone cannot.
A checkpoints file is one checkpoint JSON object a line, appended like the ledger.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsov.audit._lines import append_line, read_lines
from fedsov.audit.record import AuditRecord, canonical_json
from fedsov.exceptions import AuditError

__all__ = ["Checkpoint", "append_checkpoint", "read_checkpoints"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Checkpoint:
    """The record ``seq`` of ``node``'s ledger hashes (SHA-256 of its line) to ``sha256``."""

    node: str
    seq: int
    sha256: str

    @classmethod
    def of(cls, record: AuditRecord) -> Checkpoint:
        """The checkpoint naming ``record``."""
        return cls(node=record.node, seq=record.seq, sha256=record.sha256)

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "seq": self.seq, "sha256": self.sha256}

    def to_json(self) -> str:
        """One line of canonical JSON."""
        return canonical_json(self.to_dict()).decode()

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> Checkpoint:
        """Validate a parsed checkpoint; ValueError says what is wrong."""
        if set(obj) != {"node", "seq", "sha256"}:
            raise ValueError(f"expected fields node, seq, sha256, got {', '.join(sorted(obj))}")
        node, seq, digest = obj["node"], obj["seq"], obj["sha256"]
        if not isinstance(node, str) or not node:
            raise ValueError(f"node must be a non-empty string, got {node!r}")
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            raise ValueError(f"seq must be a non-negative integer, got {seq!r}")
        if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
            raise ValueError(f"sha256 must be 64 lowercase hex digits, got {digest!r}")
        return cls(node=node, seq=seq, sha256=digest)

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse one checkpoint JSON object; ValueError says what is wrong."""
        try:
            obj = json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply to parse") from None
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return cls.from_dict(obj)


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Append ``checkpoint`` to a checkpoints file, fsynced (AuditError on failure)."""
    append_line(path, checkpoint.to_json().encode(), what="checkpoints file")


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """Every checkpoint in ``path``: JSON lines, or one JSON array; errors name the line."""
    lines, torn = read_lines(path, what="checkpoints file")
    text = b"\n".join([*lines, torn]).strip()
    if text.startswith(b"["):
        try:
            items = json.loads(text)
            return [Checkpoint.from_dict(item) for item in items]
        except (ValueError, TypeError, AttributeError, RecursionError) as exc:
            raise AuditError(f"checkpoints file {path}: {exc}") from None
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(Checkpoint.from_json(line))
        except ValueError as exc:
            raise AuditError(f"checkpoints file {path}, line {number}: {exc}") from None
    return out
