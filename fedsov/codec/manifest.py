"""Tensor manifests: names, dtypes and shapes of the tensors in a payload, in order."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fedsov.exceptions import CodecError, ManifestMismatch

__all__ = ["DTYPES", "FLOAT_DTYPES", "Manifest", "TensorSpec"]

# Wire dtypes; bytes are always little-endian.
DTYPES: dict[str, np.dtype[np.generic]] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "float16": np.dtype("<f2"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "uint8": np.dtype("u1"),
    "uint32": np.dtype("<u4"),  # secure aggregation's ring elements
    "uint64": np.dtype("<u8"),
    "bool": np.dtype("?"),
}
FLOAT_DTYPES = frozenset({"float32", "float64", "float16"})

# A manifest read off the wire must describe arrays numpy can make: no more dimensions
# than numpy 1.x allows (2.x allows 64), and no shape whose nonzero dimensions alone
# overflow numpy's size (numpy refuses those even when another dimension is 0).
_MAX_NDIM = 32
_MAX_NBYTES = int(np.iinfo(np.intp).max)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise CodecError("tensor name must not be empty")
        if self.dtype not in DTYPES:
            raise CodecError(
                f"tensor {self.name!r}: unsupported dtype {self.dtype!r} "
                f"(supported: {', '.join(sorted(DTYPES))})"
            )
        if any(d < 0 for d in self.shape):
            raise CodecError(f"tensor {self.name!r}: negative dimension in shape {self.shape}")
        if len(self.shape) > _MAX_NDIM:
            raise CodecError(
                f"tensor {self.name!r}: {len(self.shape)} dimensions, at most {_MAX_NDIM} allowed"
            )
        if math.prod(d for d in self.shape if d) * self.itemsize > _MAX_NBYTES:
            raise CodecError(f"tensor {self.name!r}: shape {list(self.shape)} is too large")

    @property
    def numpy_dtype(self) -> np.dtype[np.generic]:
        return DTYPES[self.dtype]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.numpy_dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


def _dtype_name(array: np.ndarray, name: str) -> str:
    for key, dtype in DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            return key
    raise CodecError(f"tensor {name!r}: unsupported dtype {array.dtype}")


@dataclass(frozen=True)
class Manifest:
    tensors: tuple[TensorSpec, ...]

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for spec in self.tensors:
            if spec.name in seen:
                raise CodecError(f"tensor {spec.name!r} appears twice in the manifest")
            seen.add(spec.name)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Manifest:
        return cls(
            tuple(
                TensorSpec(name, _dtype_name(a, name), tuple(int(d) for d in a.shape))
                for name, a in arrays.items()
            )
        )

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Byte offset of each tensor in the payload, plus the total size at the end."""
        out = [0]
        for spec in self.tensors:
            out.append(out[-1] + spec.nbytes)
        return tuple(out)

    @property
    def nbytes(self) -> int:
        return self.offsets[-1]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.tensors)

    def require_equal(self, expected: Manifest, *, what: str = "payload") -> None:
        """Raise ManifestMismatch naming the first difference from ``expected``."""
        if self == expected:
            return
        mine = {s.name: s for s in self.tensors}
        theirs = {s.name: s for s in expected.tensors}
        missing = [n for n in theirs if n not in mine]
        if missing:
            raise ManifestMismatch(f"{what}: missing tensor {missing[0]!r}")
        extra = [n for n in mine if n not in theirs]
        if extra:
            raise ManifestMismatch(f"{what}: unexpected tensor {extra[0]!r}")
        for name, spec in mine.items():
            want = theirs[name]
            if spec.dtype != want.dtype:
                raise ManifestMismatch(
                    f"{what}: tensor {name!r} has dtype {spec.dtype}, expected {want.dtype}"
                )
            if spec.shape != want.shape:
                raise ManifestMismatch(
                    f"{what}: tensor {name!r} has shape {list(spec.shape)}, "
                    f"expected {list(want.shape)}"
                )
        raise ManifestMismatch(f"{what}: tensors are in a different order than expected")
