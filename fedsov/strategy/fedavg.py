"""FedAvg (McMahan et al. 2017): the example-weighted mean of the sites' updates.

Updates are deltas (local - global); the next model is global + Σ n_i·Δ_i / Σ n_i,
which equals the weighted mean of the local models.

Everything runs in each tensor's own precision (float16 widened to float32), as
Flower's FedAvg does: the coordinator's memory stays about one model in size whatever
the number of sites, and no float64 copy of it is ever made. With u the unit roundoff
of that precision (2^-24 for float32) and N updates, each element of the result is
within (N + 1)·u·Σ n_i·|Δ_i| / Σ n_i + 2u·|result| of the exact weighted mean
(recursive summation, then one division and one addition, each rounded once): below
1e-6 relative for N up to ~15 sites of similar updates, and, being a float32 model,
of the order of the result's own rounding. A float64 division, as before, removed
two of those N + 3 roundings. Removing an update is never needed: the round folds
only accepted ones (``UpdateFold``), and bounds each update's weight and norm, so
float32 sums stay finite; the next model may still overflow its own dtype (float16),
which ``GlobalModel`` refuses to make.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from fedsov.codec import Manifest, Segment, allocate
from fedsov.exceptions import ConfigError
from fedsov.strategy.base import RoundAggregate, Strategy

__all__ = ["FedAvg", "FedAvgAggregate"]

_SLICE = 1 << 20  # elements per step when writing the result


class FedAvgAggregate(RoundAggregate):
    def __init__(self, manifest: Manifest) -> None:
        for spec in manifest.tensors:
            if not spec.is_float:
                raise ConfigError(
                    f"FedAvg averages floating-point tensors; {spec.name!r} is {spec.dtype}"
                )
        self.manifest = manifest
        self._total_weight = 0.0
        self._scratch = np.empty(0, dtype=np.float32)
        self._buffer: bytearray | None = None
        if all(spec.dtype in ("float32", "float64") for spec in manifest.tensors):
            # Sums laid out exactly like a payload: the result is computed in place
            # and the buffer becomes the next model's payload (no second copy).
            self._buffer, views = allocate(manifest)
            self._sums = [views[spec.name].reshape(-1) for spec in manifest.tensors]
        else:  # float16 sums would overflow: widen to float32
            self._sums = [np.zeros(spec.numel, dtype=np.float32) for spec in manifest.tensors]

    def fold(self, segment: Segment, *, weight: float) -> None:
        sums = self._sums[segment.index]
        target = sums[segment.start : segment.start + len(segment.values)]
        if len(self._scratch) < len(target) or self._scratch.dtype != sums.dtype:
            self._scratch = np.empty(len(target), dtype=sums.dtype)
        scaled = self._scratch[: len(target)]  # reused: no allocation per segment
        np.multiply(segment.values, sums.dtype.type(weight), out=scaled, casting="same_kind")
        target += scaled

    def commit(self, *, weight: float) -> None:
        self._total_weight += weight

    def fold_sum(
        self, segments: Iterable[Segment], *, weight: float, updates: int, within_clip: int
    ) -> None:
        for segment in segments:  # already weighted by the sites
            self.fold(segment, weight=1.0)
        self._total_weight += weight

    def result_buffer(self) -> bytearray | None:
        return self._buffer

    @property
    def total_weight(self) -> float:
        return self._total_weight

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        if self._total_weight <= 0:
            raise ValueError("FedAvg needs at least one committed update")
        for spec, total in zip(self.manifest.tensors, self._sums, strict=True):
            src = base[spec.name].reshape(-1)
            dst = out[spec.name].reshape(-1)
            mean = np.empty(min(_SLICE, spec.numel), dtype=total.dtype)  # one slice, reused
            for start in range(0, spec.numel, _SLICE):
                part = mean[: min(_SLICE, spec.numel - start)]
                np.divide(
                    total[start : start + _SLICE], total.dtype.type(self._total_weight), out=part
                )
                part += src[start : start + _SLICE]
                with np.errstate(over="ignore"):  # inf, which GlobalModel refuses
                    dst[start : start + _SLICE] = part


class FedAvg(Strategy):
    name = "fedavg"

    def start_round(self, manifest: Manifest) -> FedAvgAggregate:
        return FedAvgAggregate(manifest)
