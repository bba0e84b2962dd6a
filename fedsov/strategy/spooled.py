"""Rules that need every update at once read them back from the round's spool files.

The round keeps each accepted update's spool file until its model is made
(``RoundAggregate.keeps_updates``); ``write_result`` then reads the same window of
elements from every file: memory is O(sites x window) and O(sites^2) for pairwise
distances, never O(sites x model), and no update is copied a second time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from fedsov.codec import Manifest, Segment, TensorSpec
from fedsov.exceptions import ConfigError, StateError
from fedsov.strategy.base import RoundAggregate

__all__ = ["WINDOW", "SpooledAggregate", "Window"]

WINDOW = 1 << 16
"""Elements of each tensor read from every update at a time."""

Window = tuple[TensorSpec, int, np.ndarray]
"""A tensor, the first element of the window and the window's values, one row an update."""


class SpooledAggregate(RoundAggregate):
    """Keeps the accepted updates' spool files and their weights; reads them in windows."""

    keeps_updates = True

    def __init__(self, manifest: Manifest, *, window: int = WINDOW) -> None:
        for spec in manifest.tensors:
            if not spec.is_float:
                raise ConfigError(
                    f"robust rules read floating-point tensors; {spec.name!r} is {spec.dtype}"
                )
        self.manifest = manifest
        self.window = window
        self.spools: list[Path] = []
        self.weights: list[float] = []
        self._total_weight = 0.0

    def keep(self, spool: Path, *, weight: float) -> None:
        self.spools.append(spool)
        self.weights.append(weight)

    def fold(self, segment: Segment, *, weight: float) -> None:
        raise RuntimeError(f"{type(self).__name__} keeps its updates: nothing is folded")

    def commit(self, *, weight: float) -> None:
        self._total_weight += weight

    @property
    def total_weight(self) -> float:
        return self._total_weight

    def require(self, needed: int) -> None:
        """ValueError unless at least ``needed`` updates were kept."""
        if len(self.spools) < max(needed, 1):
            raise ValueError(
                f"{type(self).__name__} needs at least {max(needed, 1)} updates, "
                f"got {len(self.spools)}"
            )

    def windows(self, updates: Sequence[int]) -> Iterator[Window]:
        """Every window of every tensor, as the rows of ``updates`` (indices, in order)."""
        offsets = self.manifest.offsets
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(self.spools[i], "rb")) for i in updates]
            for spec, offset in zip(self.manifest.tensors, offsets, strict=False):
                if spec.numel == 0:
                    continue
                step = min(self.window, spec.numel)
                rows = np.empty((len(files), step), dtype=spec.numpy_dtype)  # reused
                for start in range(0, spec.numel, step):
                    values = rows[:, : min(step, spec.numel - start)]
                    for row, f in zip(values, files, strict=True):
                        f.seek(offset + start * spec.itemsize)
                        if f.readinto(row.view(np.uint8)) != row.nbytes:
                            raise StateError(f"{f.name}: spooled update is truncated")
                    yield spec, start, values

    def write_reduced(
        self,
        base: Mapping[str, np.ndarray],
        out: Mapping[str, np.ndarray],
        updates: Sequence[int],
        reduce: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        """``out = base + reduce(rows)``, window by window, over the rows of ``updates``."""
        for spec, start, values in self.windows(updates):
            end = start + values.shape[1]
            with np.errstate(over="ignore"):  # inf, which GlobalModel refuses
                out[spec.name].reshape(-1)[start:end] = base[spec.name].reshape(-1)[
                    start:end
                ] + reduce(values)

    def squared_distances(self) -> np.ndarray:
        """Pairwise squared L2 distances of all kept updates (float64, sites x sites)."""
        n = len(self.spools)
        distances = np.zeros((n, n))
        for _, _, values in self.windows(range(n)):
            x = values.astype(np.float64)
            squares = np.einsum("ij,ij->i", x, x)
            distances += squares[:, None] + squares[None, :] - 2.0 * (x @ x.T)
        np.fill_diagonal(distances, 0.0)
        return np.maximum(distances, 0.0, out=distances)

    def weighted_mean(self, updates: Sequence[int]) -> Callable[[np.ndarray], np.ndarray]:
        """The rows' mean weighted by the kept weights, as Flower's aggregate_arrayrecords."""
        weights = [self.weights[i] for i in updates]
        total = sum(weights)
        factors = [w / total for w in weights]

        def mean(values: np.ndarray) -> np.ndarray:
            out: np.ndarray = values[0] * factors[0]
            for row, factor in zip(values[1:], factors[1:], strict=True):
                out += row * factor
            return out

        return mean
