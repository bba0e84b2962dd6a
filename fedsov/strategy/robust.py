"""Coordinate-wise robust rules: FedMedian (Yin et al. 2018) and FedTrimmedAvg.

Each coordinate of the next model is the base's plus the median, or the
``beta``-trimmed mean, of the sites' updates, unweighted, as in Flower; computed
window by window with Flower's own numpy helpers over the round's spool files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import numpy as np
from pydantic import Field

from fedsov.codec import Manifest
from fedsov.config.base import Int, Number
from fedsov.strategy.base import Strategy
from fedsov.strategy.settings import checked_settings
from fedsov.strategy.spooled import WINDOW, SpooledAggregate

__all__ = ["FedMedian", "FedTrimmedAvg"]


class _MedianAggregate(SpooledAggregate):
    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        from flwr.server.strategy.aggregate import aggregate_median  # heavy: only here

        self.require(1)

        def median(values: np.ndarray) -> np.ndarray:
            result: np.ndarray = aggregate_median([([row], 0) for row in values])[0]
            return result

        self.write_reduced(base, out, range(len(self.spools)), median)


class _TrimmedMeanAggregate(SpooledAggregate):
    def __init__(self, manifest: Manifest, *, beta: float, window: int) -> None:
        super().__init__(manifest, window=window)
        self.beta = beta

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        from flwr.server.strategy.aggregate import aggregate_trimmed_avg  # heavy: only here

        self.require(1)

        def trimmed(values: np.ndarray) -> np.ndarray:
            rows = [([row], 0) for row in values]
            result: np.ndarray = aggregate_trimmed_avg(rows, self.beta)[0]
            return result

        self.write_reduced(base, out, range(len(self.spools)), trimmed)


class FedMedian(Strategy):
    name = "fedmedian"

    @checked_settings
    def __init__(self, *, window: Annotated[Int, Field(ge=1)] = WINDOW) -> None:
        self.window = window

    def start_round(self, manifest: Manifest) -> SpooledAggregate:
        return _MedianAggregate(manifest, window=self.window)


class FedTrimmedAvg(Strategy):
    """``beta``: the fraction cut off each tail (Flower's default 0.2), in [0, 0.5)."""

    name = "fedtrimmedavg"

    @checked_settings
    def __init__(
        self,
        *,
        beta: Annotated[Number, Field(ge=0.0, lt=0.5)] = 0.2,
        window: Annotated[Int, Field(ge=1)] = WINDOW,
    ) -> None:
        self.beta = beta
        self.window = window

    def start_round(self, manifest: Manifest) -> SpooledAggregate:
        return _TrimmedMeanAggregate(manifest, beta=self.beta, window=self.window)
