"""Tensor codec: a manifest plus raw little-endian bytes, never pickle."""

from fedsov.codec.manifest import DTYPES, FLOAT_DTYPES, Manifest, TensorSpec
from fedsov.codec.payload import (
    DEFAULT_CHUNK_SIZE,
    EncodedTensors,
    allocate,
    decode,
    encode,
    iter_chunks,
    sha256_hex,
    views_of,
)
from fedsov.codec.stream import PayloadReader, Segment

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DTYPES",
    "FLOAT_DTYPES",
    "EncodedTensors",
    "Manifest",
    "PayloadReader",
    "Segment",
    "TensorSpec",
    "allocate",
    "decode",
    "encode",
    "iter_chunks",
    "sha256_hex",
    "views_of",
]
