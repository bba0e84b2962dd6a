"""Krum and Multi-Krum (Blanchard et al. 2017) and Bulyan (El Mhamdi et al. 2018).

As Flower's: with n updates and f = ``num_malicious_nodes``, an update's score is the
sum of its squared L2 distances to its n - f - 2 nearest others (at least 1); the
``num_nodes_to_select`` lowest-scored (ties in numpy's argsort order) are averaged,
weighted by their examples (Krum: the single best). Bulyan selects n - 2f by
Multi-Krum, then each coordinate is the unweighted mean of the n - 4f selected
values nearest that coordinate's median; it needs n >= 4f + 3.

Distances are summed window by window from the round's spool files (float64).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated

import numpy as np
from pydantic import Field

from fedsov.codec import Manifest
from fedsov.config.base import Int
from fedsov.strategy.base import Strategy
from fedsov.strategy.settings import checked_settings
from fedsov.strategy.spooled import WINDOW, SpooledAggregate

__all__ = ["Bulyan", "Krum", "MultiKrum", "krum_selection"]


def krum_selection(distances: np.ndarray, num_malicious: int, select: int) -> list[int]:
    """The ``select`` updates of lowest Krum score, best first (Flower's select_multikrum)."""
    n = len(distances)
    num_closest = max(1, n - num_malicious - 2)
    scores = [float(np.sum(np.sort(row)[1 : num_closest + 1])) for row in distances]
    return [int(i) for i in np.argsort(scores)[:select]]


class _MultiKrumAggregate(SpooledAggregate):
    def __init__(self, manifest: Manifest, *, num_malicious: int, select: int, window: int) -> None:
        super().__init__(manifest, window=window)
        self.num_malicious = num_malicious
        self.select = select

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        self.require(1)
        chosen = krum_selection(self.squared_distances(), self.num_malicious, self.select)
        self.write_reduced(base, out, chosen, self.weighted_mean(chosen))


class _BulyanAggregate(SpooledAggregate):
    def __init__(self, manifest: Manifest, *, num_malicious: int, window: int) -> None:
        super().__init__(manifest, window=window)
        self.num_malicious = num_malicious

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        from flwr.serverapp.strategy.bulyan import aggregate_n_closest_weights  # heavy

        f = self.num_malicious
        self.require(4 * f + 3)
        theta = len(self.spools) - 2 * f
        beta = theta - 2 * f
        chosen = krum_selection(self.squared_distances(), f, theta)

        def nearest_median_mean(values: np.ndarray) -> np.ndarray:
            median = np.median(values, axis=0)
            result: np.ndarray = aggregate_n_closest_weights([median], [[r] for r in values], beta)[
                0
            ]
            return result

        self.write_reduced(base, out, chosen, nearest_median_mean)


class MultiKrum(Strategy):
    name = "multikrum"

    @checked_settings
    def __init__(
        self,
        *,
        num_malicious_nodes: Annotated[Int, Field(ge=0)] = 0,
        num_nodes_to_select: Annotated[Int, Field(ge=1)] = 1,
        window: Annotated[Int, Field(ge=1)] = WINDOW,
    ) -> None:
        self.num_malicious_nodes = num_malicious_nodes
        self.num_nodes_to_select = num_nodes_to_select
        self.window = window

    def start_round(self, manifest: Manifest) -> SpooledAggregate:
        return _MultiKrumAggregate(
            manifest,
            num_malicious=self.num_malicious_nodes,
            select=self.num_nodes_to_select,
            window=self.window,
        )


class Krum(MultiKrum):
    name = "krum"

    @checked_settings
    def __init__(
        self,
        *,
        num_malicious_nodes: Annotated[Int, Field(ge=0)] = 0,
        window: Annotated[Int, Field(ge=1)] = WINDOW,
    ) -> None:
        super().__init__(num_malicious_nodes=num_malicious_nodes, window=window)


class Bulyan(Strategy):
    name = "bulyan"

    @checked_settings
    def __init__(
        self,
        *,
        num_malicious_nodes: Annotated[Int, Field(ge=0)] = 0,
        window: Annotated[Int, Field(ge=1)] = WINDOW,
    ) -> None:
        self.num_malicious_nodes = num_malicious_nodes
        self.window = window

    def updates_needed(self) -> int:
        return 4 * self.num_malicious_nodes + 3

    def start_round(self, manifest: Manifest) -> SpooledAggregate:
        return _BulyanAggregate(
            manifest, num_malicious=self.num_malicious_nodes, window=self.window
        )
