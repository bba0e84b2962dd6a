"""Checked reads of PKI material; atomic writes come from fedsov.fileio."""

from __future__ import annotations

from pathlib import Path

from fedsov.exceptions import PKIError
from fedsov.fileio import PRIVATE_MODE, PUBLIC_MODE, write_atomic

__all__ = ["PRIVATE_MODE", "PUBLIC_MODE", "read_bytes", "write_atomic"]


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
