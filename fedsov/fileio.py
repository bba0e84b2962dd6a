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

__all__ = ["PRIVATE_MODE", "PUBLIC_MODE", "atomic_writer", "write_atomic", "write_json_atomic"]

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = PUBLIC_MODE) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` only if the block completes.

    The temporary file gets ``mode`` before any byte is written, so a private key
    is never readable by others, not even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    with atomic_writer(path, mode=mode) as f:
        f.write(data)


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())


def _fsync_dir(directory: Path) -> None:
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
