"""Write a payload as a safetensors file without copying it.

The safetensors format is an 8-byte little-endian header length, a JSON header
naming each tensor's dtype, shape and byte range, then the raw little-endian
bytes. A fedsov payload already is those bytes, contiguous in manifest order, so
the file's data section *is* the payload and its SHA-256 is the model's content
hash. (``safetensors.numpy.save_file`` would hold two extra copies in memory.)
Files are read back with the safetensors library itself.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path

from fedsov.codec.manifest import Manifest
from fedsov.codec.payload import iter_chunks
from fedsov.fileio import atomic_writer

__all__ = ["write_safetensors"]

_DTYPES = {
    "float32": "F32",
    "float64": "F64",
    "float16": "F16",
    "int64": "I64",
    "int32": "I32",
    "uint8": "U8",
    "uint32": "U32",
    "uint64": "U64",
    "bool": "BOOL",
}


def _header(manifest: Manifest, metadata: Mapping[str, str]) -> bytes:
    entries: dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    for spec, start, end in zip(
        manifest.tensors, manifest.offsets, manifest.offsets[1:], strict=False
    ):
        entries[spec.name] = {
            "dtype": _DTYPES[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": [start, end],
        }
    raw = json.dumps(entries, separators=(",", ":")).encode()
    return raw + b" " * (-(8 + len(raw)) % 8)  # data starts 8-byte aligned


def write_safetensors(
    path: Path,
    manifest: Manifest,
    payload: bytes | bytearray | memoryview,
    *,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write ``path`` atomically (temporary file, fsync, rename); return the file's
    SHA-256, computed as it is written (never by reading it back)."""
    header = _header(manifest, metadata or {})
    digest = hashlib.sha256()
    with atomic_writer(path) as f:
        parts: list[bytes | memoryview] = [struct.pack("<Q", len(header)), header]
        for part in (*parts, *iter_chunks(payload)):
            digest.update(part)
            f.write(part)
    return digest.hexdigest()
