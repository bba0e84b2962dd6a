"""What verification found: the first bad record of a ledger, and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Finding", "Reason"]


class Reason(StrEnum):
    """Why a record is bad. Each tampering leaves a distinct trace."""

    edited = "edited"
    """The record's bytes changed after it was signed or chained to."""
    reordered = "reordered"
    """Records are out of sequence (swapped, moved or duplicated)."""
    removed = "removed"
    """A sequence number is missing: a record was deleted from the middle."""
    forged = "forged signature"
    """Validly signed, but by a key that is not the node's."""
    truncated = "truncated"
    """The ledger ends before a checkpoint held elsewhere."""
    malformed = "malformed"
    """Not a JSON object, or a field is missing or of the wrong type."""
    identity = "wrong identity"
    """The record's node or jurisdiction is not that of its signer."""


@dataclass(frozen=True)
class Finding:
    """The first bad record: its line (1-based), the seq that belongs there, and why."""

    reason: Reason
    line: int
    seq: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + ("" if self.seq is None else f" (seq {self.seq})")
        return f"{where}: {self.reason}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": str(self.reason),
            "line": self.line,
            "seq": self.seq,
            "message": self.message,
        }
