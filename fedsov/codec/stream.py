"""Validate a payload chunk by chunk, yielding the tensor elements each chunk completes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fedsov.codec.manifest import Manifest, TensorSpec
from fedsov.exceptions import NonFiniteTensor, PayloadHashError, PayloadSizeError

__all__ = ["PayloadReader", "Segment"]


@dataclass(frozen=True)
class Segment:
    """Consecutive elements ``values`` of tensor ``spec``, starting at flat index ``start``."""

    index: int
    spec: TensorSpec
    start: int
    values: np.ndarray


class PayloadReader:
    """Checks size, finiteness and SHA-256 of a payload as its chunks arrive.

    ``size`` is the size the sender announced; it must equal the manifest's. Chunks may
    split elements anywhere: partial elements are carried to the next chunk. Without
    ``sha256`` the payload is hashed only with ``hashed=True`` (a payload read back
    from where it was checked need not be hashed again).
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        size: int,
        sha256: str | None = None,
        allow_nonfinite: bool = False,
        hashed: bool = True,
    ) -> None:
        if size != manifest.nbytes:
            kind = "truncated" if size < manifest.nbytes else "oversized"
            raise PayloadSizeError(
                f"{kind} payload: {size} bytes announced, the manifest needs {manifest.nbytes}"
            )
        self.manifest = manifest
        self.size = size
        self.received = 0
        self._sha256 = sha256
        self._hash = hashlib.sha256() if hashed or sha256 is not None else None
        self._allow_nonfinite = allow_nonfinite
        self._carry = b""
        self._tensor = 0  # index of the tensor the next byte belongs to

    def feed(self, chunk: bytes | bytearray | memoryview) -> Iterator[Segment]:
        """Account for ``chunk`` and yield the segments of whole elements it completes.

        The size check runs before anything is yielded, so an oversized chunk yields nothing.
        """
        if self.received + len(chunk) > self.size:
            raise PayloadSizeError(
                f"oversized payload: more than the {self.size} bytes announced "
                f"(got {self.received + len(chunk)} so far)"
            )
        if self._hash is not None:
            self._hash.update(chunk)
        consumed = self.received - len(self._carry)  # payload offset of data[0]
        self.received += len(chunk)
        data: bytes | bytearray | memoryview = self._carry + bytes(chunk) if self._carry else chunk
        return self._segments(data, consumed)

    def _segments(self, data: bytes | bytearray | memoryview, base: int) -> Iterator[Segment]:
        offsets = self.manifest.offsets
        pos = 0
        while self._tensor < len(self.manifest.tensors) and pos < len(data):
            spec = self.manifest.tensors[self._tensor]
            at = base + pos
            end = offsets[self._tensor + 1]
            if at == end:  # empty tensor, or this one is complete
                self._tensor += 1
                continue
            usable = min(len(data) - pos, end - at)
            whole = usable - usable % spec.itemsize
            if whole == 0:
                break
            values = np.frombuffer(
                data, dtype=spec.numpy_dtype, count=whole // spec.itemsize, offset=pos
            )
            start = (at - offsets[self._tensor]) // spec.itemsize
            if spec.is_float and not self._allow_nonfinite:
                self._check_finite(spec, start, values)
            yield Segment(self._tensor, spec, start, values)
            pos += whole
            if at + whole == end:
                self._tensor += 1
        self._carry = bytes(data[pos:])

    @staticmethod
    def _check_finite(spec: TensorSpec, start: int, values: np.ndarray) -> None:
        finite = np.isfinite(values)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise NonFiniteTensor(
                f"tensor {spec.name!r} holds {values[bad]} at element {start + bad}"
            )

    def finish(self) -> None:
        """Raise if the payload is incomplete or its hash differs from the announced one."""
        if self.received < self.size:
            raise PayloadSizeError(
                f"truncated payload: received {self.received} of {self.size} bytes"
            )
        if self._sha256 is not None and self.sha256 != self._sha256:
            raise PayloadHashError(f"payload SHA-256 is {self.sha256}, announced {self._sha256}")

    @property
    def sha256(self) -> str:
        if self._hash is None:
            raise RuntimeError("this reader was told not to hash its payload")
        return self._hash.hexdigest()
