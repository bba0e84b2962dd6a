"""Encode tensors as one raw little-endian payload and decode it back, checked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fedsov.codec.manifest import Manifest
from fedsov.codec.stream import PayloadReader
from fedsov.exceptions import CodecError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "EncodedTensors",
    "allocate",
    "decode",
    "encode",
    "iter_chunks",
    "sha256_hex",
    "views_of",
]

DEFAULT_CHUNK_SIZE = 1 << 20


def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class EncodedTensors:
    manifest: Manifest
    payload: bytes | bytearray
    sha256: str

    @property
    def size(self) -> int:
        return len(self.payload)


def encode(arrays: Mapping[str, np.ndarray]) -> EncodedTensors:
    """Concatenate the tensors' little-endian bytes in mapping order."""
    manifest = Manifest.from_arrays(arrays)
    payload, views = allocate(manifest)
    for spec in manifest.tensors:
        views[spec.name][...] = arrays[spec.name]
    return EncodedTensors(manifest, payload, sha256_hex(payload))


def allocate(manifest: Manifest) -> tuple[bytearray, dict[str, np.ndarray]]:
    """A zeroed payload buffer and writable array views of each tensor inside it."""
    payload = bytearray(manifest.nbytes)
    return payload, views_of(manifest, payload)


def views_of(manifest: Manifest, payload: bytes | bytearray) -> dict[str, np.ndarray]:
    """Arrays viewing each tensor in ``payload`` (no copy; writable if payload is)."""
    offsets = manifest.offsets
    return {
        spec.name: np.frombuffer(
            payload, dtype=spec.numpy_dtype, count=spec.numel, offset=offsets[i]
        ).reshape(spec.shape)
        for i, spec in enumerate(manifest.tensors)
    }


def iter_chunks(
    payload: bytes | bytearray | memoryview,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    offset: int = 0,
) -> Iterator[memoryview]:
    """Yield zero-copy slices of ``payload`` starting at ``offset``."""
    if chunk_size <= 0:
        raise CodecError(f"chunk size must be positive, got {chunk_size}")
    view = memoryview(payload)
    for start in range(offset, len(view), chunk_size):
        yield view[start : start + chunk_size]


def decode(
    manifest: Manifest,
    payload: bytes | bytearray | memoryview,
    *,
    sha256: str | None = None,
    expected: Manifest | None = None,
    allow_nonfinite: bool = False,
) -> dict[str, np.ndarray]:
    """Decode a whole payload into writable arrays, validating it on the way.

    Raises ManifestMismatch, PayloadSizeError, PayloadHashError or NonFiniteTensor.
    """
    if expected is not None:
        manifest.require_equal(expected)
    reader = PayloadReader(
        manifest,
        size=len(payload),
        sha256=sha256,
        allow_nonfinite=allow_nonfinite,
        hashed=sha256 is not None,
    )
    out = {spec.name: np.empty(spec.shape, dtype=spec.numpy_dtype) for spec in manifest.tensors}
    flat = {name: a.reshape(-1) for name, a in out.items()}
    for segment in reader.feed(payload):
        flat[segment.spec.name][segment.start : segment.start + len(segment.values)] = (
            segment.values
        )
    reader.finish()
    return out
