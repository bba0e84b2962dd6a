"""Crash-safe file writes: a temporary file in the same folder, fsync, rename, fsync folder.

A reader (or a process restarted after a crash) sees the old file or the new one,
never a half-written one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "PRIVATE_MODE",
    "PUBLIC_MODE",
    "append_record",
    "atomic_writer",
    "fsync_dir",
    "read_records",
    "write_atomic",
    "write_json_atomic",
]

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


@contextlib.contextmanager
def atomic_writer(
    path: Path, *, mode: int = PUBLIC_MODE, durable: bool = True
) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only if the block completes.

    The temporary file gets ``mode`` before any byte is written, so a private key
    is never readable by others, not even briefly. ``durable=False`` skips the fsyncs
    (still atomic): for files every run writes anew, such as a simulation's throwaway
    PKI and data, where 1,000 sites' fsyncs cost seconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_MODE, durable: bool = True) -> None:
    with atomic_writer(path, mode=mode, durable=durable) as f:
        f.write(data)


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single write, fsynced: on disk when this returns."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of an append-only log.

    A process killed mid-append leaves at most a torn last line, whose record was
    never acknowledged: it is cut off. A bad line anywhere else raises ValueError
    naming the line.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    complete, _, torn = raw.rpartition(b"\n")
    if torn:
        with open(path, "r+b") as f:
            f.truncate(len(complete) + 1 if complete else 0)
            f.flush()
            os.fsync(f.fileno())
    records = []
    for number, line in enumerate(complete.splitlines(), start=1):
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from exc
        except RecursionError:
            raise ValueError(f"line {number}: nested too deeply to parse") from None
        if not isinstance(record, dict):
            raise ValueError(f"line {number}: not a JSON object")
        records.append(record)
    return records
