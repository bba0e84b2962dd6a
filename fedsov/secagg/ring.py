"""The aggregator's running modular sum of masked updates, and its unmasking."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedsov.codec import Manifest, Segment
from fedsov.secagg.prg import MaskStream, add_mask
from fedsov.secagg.quantize import RING_DTYPES

__all__ = ["RingSum"]


class RingSum:
    """Σ masked updates mod 2^b in one flat buffer (O(model) however many sites)."""

    def __init__(self, manifest: Manifest, bits: int) -> None:
        self.manifest = manifest
        self.bits = bits
        size = sum(t.numel for t in manifest.tensors)
        self.values: np.ndarray = np.zeros(size, dtype=RING_DTYPES[bits])
        self._starts = np.cumsum([0, *(t.numel for t in manifest.tensors)])

    def fold(self, segment: Segment) -> None:
        at = int(self._starts[segment.index]) + segment.start
        target = self.values[at : at + len(segment.values)]
        np.add(target, segment.values, out=target)

    def unmask(self, corrections: Sequence[tuple[bytes, int]]) -> None:
        """Apply each (seed, sign): the aggregator's share of removing the masks."""
        stream = MaskStream(self.values.dtype)
        for seed, sign in corrections:
            add_mask(self.values, stream, seed, start=0, sign=sign)

    def tensor(self, index: int) -> np.ndarray:
        view: np.ndarray = self.values[int(self._starts[index]) : int(self._starts[index + 1])]
        return view
