"""Masks: AES-256-CTR keystreams read as ring elements, seekable by element offset.

A mask is the keystream of a 32-byte seed (the AES key) from counter 0; its element i
is bytes [i·w, (i+1)·w) read little-endian, w = 4 or 8. Any chunk of it can be made
on its own (the counter block is the chunk's offset / 16), so a model of any size is
masked and unmasked chunk by chunk in O(chunk) extra memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CHUNK_ELEMENTS", "MaskStream", "add_mask"]

CHUNK_ELEMENTS = 1 << 18  # elements per keystream chunk (a multiple of 4)
_BLOCK = 16


class MaskStream:
    """Reusable buffers for making mask chunks of ``dtype`` (uint32 or uint64)."""

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = np.dtype(dtype)
        size = CHUNK_ELEMENTS * self.dtype.itemsize
        self._zeros = bytes(size)
        self._out = bytearray(size + _BLOCK)

    def chunk(self, seed: bytes, start: int, count: int) -> np.ndarray:
        """Elements [start, start + count) of ``seed``'s mask (a view, valid until the
        next call); ``start`` a multiple of ``CHUNK_ELEMENTS``' alignment (16 bytes)."""
        offset = start * self.dtype.itemsize
        if offset % _BLOCK or count > CHUNK_ELEMENTS:
            raise ValueError(f"mask chunks start on a 16-byte boundary, at most {CHUNK_ELEMENTS}")
        nbytes = count * self.dtype.itemsize
        counter = (offset // _BLOCK).to_bytes(_BLOCK, "big")
        encryptor = Cipher(algorithms.AES(seed), modes.CTR(counter)).encryptor()
        written = encryptor.update_into(memoryview(self._zeros)[:nbytes], self._out)
        return np.frombuffer(self._out, dtype=self.dtype, count=written // self.dtype.itemsize)


def add_mask(values: np.ndarray, stream: MaskStream, seed: bytes, *, start: int, sign: int) -> None:
    """``values`` (elements from ``start`` on) += sign · mask(seed), modulo the ring."""
    for at in range(0, len(values), CHUNK_ELEMENTS):
        part = values[at : at + CHUNK_ELEMENTS]
        mask = stream.chunk(seed, start + at, len(part))
        if sign > 0:
            np.add(part, mask, out=part)
        else:
            np.subtract(part, mask, out=part)
