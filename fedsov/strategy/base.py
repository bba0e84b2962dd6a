"""The Strategy interface: fold updates chunk by chunk, then produce the next model."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedsov.codec import Manifest, Segment
from fedsov.config import TrainingPlan
from fedsov.exceptions import ConfigError

__all__ = ["Replay", "RoundAggregate", "SiteLevelDP", "Strategy", "UpdateFold"]

Replay = Callable[[], Iterable[Segment]]
"""The segments of one update again, in order (the round keeps them in a spool)."""


class UpdateFold:
    """One update's way into a round's aggregate: the round hands each validated
    segment to ``add`` as it arrives, then calls ``finish`` once the update is complete,
    validated and stored (from then on it counts).

    Nothing is folded while the update arrives: ``add`` only measures it (the float64
    squared L2 norm, for the round's bound and the aggregate's ``correction``), and
    ``finish`` folds it once, from ``replay``, with ``weight + correction(norm)``. An
    update refused or aborted before ``finish`` never touched the sums, so there is
    nothing to undo: removal is exact whatever the values (no subtract-to-undo, which
    float32 sums cannot do exactly).
    """

    def __init__(self, aggregate: RoundAggregate, num_examples: int) -> None:
        self.aggregate = aggregate
        self.weight = aggregate.fold_weight(num_examples)
        self._squared_norm = 0.0
        self._scratch = np.empty(0, dtype=np.float64)  # reused: no allocation per chunk
        self.counted = False

    @property
    def norm(self) -> float:
        """L2 norm of the segments added so far."""
        return math.sqrt(self._squared_norm)

    def add(self, segment: Segment) -> None:
        values = segment.values
        if values.dtype != np.float64:  # squares summed in float64, exactly as before
            if len(self._scratch) < len(values):
                self._scratch = np.empty(len(values), dtype=np.float64)
            values = self._scratch[: len(values)]
            np.copyto(values, segment.values)
        self._squared_norm += float(np.dot(values, values))

    def finish(self, replay: Replay, spool: Path | None = None) -> None:
        """Fold the complete update once, corrected for its norm, and count it; an
        aggregate that ``keeps_updates`` is handed its ``spool`` file instead."""
        assert not self.counted, "an update is folded once"
        if self.aggregate.keeps_updates:
            if spool is None:
                raise RuntimeError("an aggregate that keeps updates needs each one's spool file")
            self.aggregate.keep(spool, weight=self.weight)
        else:
            weight = self.weight + self.aggregate.correction(norm=self.norm, weight=self.weight)
            for segment in replay():
                self.aggregate.fold(segment, weight=weight)
        self.aggregate.commit(weight=self.weight)
        self.counted = True


class RoundAggregate(ABC):
    """Running state of one round's aggregation; memory is O(model), not O(sites x model).

    The round hands each update to ``begin``'s ``UpdateFold``, which folds it once it
    is complete and accepted; the methods below are the pieces it is made of.

    A rule that needs every update at once (a median, Krum) sets ``keeps_updates``:
    it is handed each accepted update's spool file (``keep``) instead of its segments,
    and the round keeps those files until its model is made.
    """

    keeps_updates = False

    def keep(self, spool: Path, *, weight: float) -> None:
        """Take note of an accepted update, kept in ``spool`` until the model is made."""
        raise NotImplementedError(f"{type(self).__name__} folds updates; it keeps none")

    def begin(self, num_examples: int) -> UpdateFold:
        """The fold of one update of ``num_examples`` examples."""
        return UpdateFold(self, num_examples)

    def fold_weight(self, num_examples: int) -> float:
        """The weight an update of ``num_examples`` examples is folded with."""
        return float(num_examples)

    def correction(self, *, norm: float, weight: float) -> float:
        """Extra weight to fold the complete update with, knowing its L2 norm."""
        return 0.0

    @abstractmethod
    def fold(self, segment: Segment, *, weight: float) -> None:
        """Add one segment of an accepted update, scaled by ``weight`` (>= 0)."""

    @abstractmethod
    def commit(self, *, weight: float) -> None:
        """Count a fully received, validated update of this weight."""

    @property
    @abstractmethod
    def total_weight(self) -> float:
        """Sum of the weights of committed updates."""

    @abstractmethod
    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        """Write the next global model into ``out`` (arrays shaped like ``base``).

        ``base`` is the model the updates were computed against. ``out`` may be
        views of ``result_buffer()``: implementations must then work slice by slice.
        """

    def fold_sum(
        self, segments: Iterable[Segment], *, weight: float, updates: int, within_clip: int
    ) -> None:
        """Fold the unmasked sum of ``updates`` updates that the sites clipped and weighted
        themselves (secure aggregation), of total ``weight``; ``within_clip`` of them were
        within the clip before it. Rules that need each update cannot (ConfigError)."""
        raise ConfigError(
            f"{type(self).__name__} needs each update; secure aggregation gives only their sum"
        )

    def result_buffer(self) -> bytearray | None:
        """A payload-shaped buffer of this aggregate that ``write_result`` may write into.

        Where the running sums share the payload's layout, writing the result over
        them in place saves a model-sized allocation at the end of every round.
        None where the layout differs.
        """
        return None

    def result(self, base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The next global model as fresh arrays."""
        out = {name: np.empty_like(value) for name, value in base.items()}
        self.write_result(base, out)
        return out


@dataclass(frozen=True)
class SiteLevelDP:
    """What a site-level DP strategy adds to each aggregate it releases."""

    noise_multiplier: float  # z: noise std over the clip norm
    delta: float
    clip: float  # the clip norm of the last round released (adaptive), else the configured one
    rounds: int  # rounds released so far


class Strategy(ABC):
    name: str

    @abstractmethod
    def start_round(self, manifest: Manifest) -> RoundAggregate:
        """A fresh aggregate for a round whose updates follow ``manifest``."""

    def state(self) -> dict[str, Any]:
        """What the strategy carries from round to round, as JSON-ready data.

        Stored with each round's commit and given back to ``restore`` when an
        aggregator resumes after a crash.
        """
        return {}

    def restore(self, state: Mapping[str, Any]) -> None:  # noqa: B027 - stateless by default
        """Take back what ``state`` returned before a restart."""

    def arrays(self) -> dict[str, np.ndarray]:
        """Model-sized state carried from round to round (a server optimizer's moments).

        Stored beside each round's model, in the same commit as ``state()``, and
        given back to ``restore_arrays`` on resume; empty for most strategies.
        """
        return {}

    def restore_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:  # noqa: B027 - none by default
        """Take back what ``arrays`` returned before a restart."""

    def configure_training(self, plan: TrainingPlan) -> TrainingPlan:
        """The training plan of every task this strategy's rounds send (default: ``plan``)."""
        return plan

    def updates_needed(self) -> int:
        """Accepted updates a round needs before this strategy can aggregate it."""
        return 1

    def secure_clip(self, configured: float) -> float:
        """The L2 norm sites clip to under secure aggregation (a DP rule's own clip)."""
        return configured

    def site_level_dp(self) -> SiteLevelDP | None:
        """How the aggregates this strategy releases are noised; None when they are not."""
        return None
