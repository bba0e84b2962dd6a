"""Append-only line files: one fsynced write per line; a torn last line is not a line."""

from __future__ import annotations

import os
from pathlib import Path

from fedsov.exceptions import AuditError
from fedsov.fileio import PRIVATE_MODE, fsync_dir

__all__ = ["append_line", "read_lines"]


def read_lines(path: Path, *, what: str, repair: bool = False) -> tuple[list[bytes], bytes]:
    """The complete lines of ``path``, and a torn last line (bytes after the last newline).

    A process killed mid-append leaves at most a torn last line, never acknowledged:
    it is not returned, and with ``repair`` it is cut off the file.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"{what} {path}: file not found") from None
    except IsADirectoryError:
        raise AuditError(f"{what} {path}: is a directory, expected a file") from None
    except OSError as exc:
        raise AuditError(f"{what} {path}: cannot read ({exc.strerror})") from exc
    complete, newline, torn = raw.rpartition(b"\n")
    if torn and repair:
        try:
            with open(path, "r+b") as f:
                f.truncate(len(complete) + len(newline))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise AuditError(f"{what} {path}: cannot cut off a torn last line ({exc})") from exc
    return (complete.split(b"\n") if newline else []), torn


def append_line(path: Path, line: bytes, *, what: str) -> None:
    """Append ``line`` and a newline with a single write, fsynced: on disk when this returns.

    A failed or short write is cut off again, so the next append starts a fresh line.
    """
    created = not path.exists()
    data = line + b"\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_MODE)
        try:
            size = os.fstat(fd).st_size
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write ({written} of {len(data)} bytes)")
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)
        if created:
            fsync_dir(path.parent)
    except OSError as exc:
        raise AuditError(f"{what} {path}: cannot append ({exc})") from exc
