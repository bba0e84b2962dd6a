"""A round's aggregate under secure aggregation: masked updates summed in the ring,
then, once the masks are removed, decoded into the strategy's own aggregate.

The round folds each accepted masked upload chunk by chunk (modular addition, O(model)
memory). The updates were clipped, weighted and quantized by the sites
(fedsov.secagg.site), so nothing here can measure or bound one of them: the norm
check of plain rounds does not apply, and rules that need each update (a median,
Krum) cannot run (``fold_sum`` refuses).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from fedsov.codec import Manifest, Segment
from fedsov.messages import SecAggParams
from fedsov.secagg import RingSum, Unmasking, decode_sum, masked_manifest
from fedsov.strategy.base import RoundAggregate, UpdateFold

__all__ = ["SecureAggregate"]

_SLICE = 1 << 20


class _MaskedFold(UpdateFold):
    """A masked update: nothing to measure (its norm means nothing in the ring)."""

    def add(self, segment: Segment) -> None:
        return None


class SecureAggregate(RoundAggregate):
    def __init__(self, inner: RoundAggregate, model: Manifest, params: SecAggParams) -> None:
        if inner.keeps_updates:
            inner.fold_sum((), weight=0.0, updates=0, within_clip=0)  # raises: needs updates
        self.inner = inner
        self.model = model
        self.params = params
        self.manifest = masked_manifest(model, params.ring_bits)
        self.sum: RingSum | None = RingSum(self.manifest, params.ring_bits)
        self.updates = 0
        self._weight = 0.0
        self.unmasked = False

    def begin(self, num_examples: int) -> UpdateFold:
        return _MaskedFold(self, num_examples)

    def fold_weight(self, num_examples: int) -> float:
        return float(num_examples) if self.params.weighted else 1.0

    def fold(self, segment: Segment, *, weight: float) -> None:
        assert self.sum is not None
        self.sum.fold(segment)  # weighted by the site itself

    def commit(self, *, weight: float) -> None:
        self._weight += weight
        self.updates += 1

    @property
    def total_weight(self) -> float:
        return self._weight

    def unmask(self, unmasking: Unmasking) -> None:
        """Remove the masks, then hand the decoded sum to the strategy's aggregate (the
        ring buffer is freed: memory stays one sum in size)."""
        ring = self.sum
        if ring is None or self.unmasked:
            raise RuntimeError("a secure round is unmasked once")
        if len(unmasking.survivors) != self.updates:
            raise RuntimeError("the survivors are the sites whose masked updates were folded")
        ring.unmask(unmasking.corrections)
        tail = decode_sum(ring.tensor(len(self.model.tensors)), bits=ring.bits, step=1.0)
        within = round(float(tail[0]))
        self.inner.fold_sum(
            self._decoded(ring), weight=self._weight, updates=self.updates, within_clip=within
        )
        self.sum, self.unmasked = None, True

    def _decoded(self, ring: RingSum) -> Iterator[Segment]:
        p = self.params
        step = p.clip * 2.0**-p.precision_bits
        for index, spec in enumerate(self.model.tensors):
            values = ring.tensor(index)
            for start in range(0, spec.numel, _SLICE):
                part = decode_sum(values[start : start + _SLICE], bits=ring.bits, step=step)
                yield Segment(index, spec, start, part)

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        if not self.unmasked:
            raise RuntimeError("a secure round's result comes after its unmasking")
        self.inner.write_result(base, out)

    def result_buffer(self) -> bytearray | None:
        return self.inner.result_buffer() if self.unmasked else None
