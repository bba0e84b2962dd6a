"""Atomic file writes and checked reads for PKI material."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from fedsov.exceptions import PKIError

__all__ = ["PRIVATE_MODE", "PUBLIC_MODE", "read_bytes", "write_atomic"]

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC_MODE) -> None:
    """Write ``data`` to ``path`` via a synced temp file in the same directory and os.replace.

    The temp file is created 0600 and chmod-ed to ``mode`` before any byte is written,
    so a private key is never readable by others, not even briefly.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(dfd)


def read_bytes(path: Path, what: str) -> bytes:
    """Read a file, raising PKIError naming ``what`` and the path when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{what} {path}: file not found") from None
    except IsADirectoryError:
        raise PKIError(f"{what} {path}: is a directory, expected a file") from None
    except PermissionError:
        raise PKIError(f"{what} {path}: permission denied") from None
    except OSError as exc:
        raise PKIError(f"{what} {path}: cannot read ({exc.strerror})") from exc
