"""Helpers shared by the audit tests (imported like a sibling module, as pytest runs them)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsov.audit import AuditRecord, Checkpoint, Signer, canonical_json

PLAN = hashlib.sha256(b"plan").hexdigest()

WriteLedger = Callable[..., list[Checkpoint]]


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def lines_of(path: Path) -> list[bytes]:
    """The ledger's lines, each with its newline."""
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def edit_byte(line: bytes, field: str) -> bytes:
    """``line`` with the last hex digit of ``field``'s value changed: one byte edited."""
    marker = f'"{field}":"'.encode()
    at = line.index(marker) + len(marker) + 63
    new = b"0" if line[at : at + 1] != b"0" else b"1"
    return line[:at] + new + line[at + 1 :]


def resign(
    path: Path,
    signer: Signer,
    *,
    start: int = 0,
    change: dict[str, Any] | None = None,
    fix_checkpoints: bool = True,
) -> None:
    """Re-sign (and re-chain) every record from ``start`` on with ``signer``; optionally
    change fields of the record at ``start`` first. The chain stays consistent."""
    lines = lines_of(path)
    prev = hashlib.sha256(lines[start - 1].rstrip(b"\n")).hexdigest() if start else "0" * 64
    for i in range(start, len(lines)):
        obj = json.loads(lines[i])
        if i == start and change:
            obj.update(change)
        if obj["event"] == "checkpoint" and fix_checkpoints:  # as a careful forger would
            obj["detail"] = {"head_seq": obj["seq"] - 1, "head_sha256": prev}
        obj.update(prev=prev, key=signer.key_field)
        del obj["sig"]
        obj["sig"] = signer.sign(canonical_json(obj))
        record = AuditRecord.from_dict(obj)
        lines[i] = record.line() + b"\n"
        prev = record.sha256
    write_lines(path, lines)
