"""UpdateFold: one update's way into a round's aggregate (begin, add, finish)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsov.codec import Manifest, PayloadReader, Segment, encode
from fedsov.strategy import DPFedAvg, FedAvg, SiteDPSettings

BASE = {"w": np.zeros(8, dtype=np.float32)}


def segments(values: np.ndarray) -> list[Segment]:
    enc = encode({"w": values.astype(np.float32)})
    reader = PayloadReader(enc.manifest, size=enc.size)
    return list(reader.feed(enc.payload))


@pytest.mark.parametrize(
    "strategy",
    [FedAvg(), DPFedAvg(SiteDPSettings(clip=100.0, noise_multiplier=0.0), seed=0)],
    ids=["fedavg", "dp-fedavg"],
)
def test_an_update_never_finished_leaves_the_sums_untouched(strategy: object) -> None:
    assert isinstance(strategy, FedAvg | DPFedAvg)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    kept, dropped = segments(np.full(8, 2.0)), segments(np.full(8, 1e30))
    first = agg.begin(num_examples=3)
    for seg in kept:
        first.add(seg)
    first.finish(lambda: kept)
    second = agg.begin(num_examples=3)
    for seg in dropped:
        second.add(seg)  # measured, not folded: dropping it needs no undo
    np.testing.assert_array_equal(agg.result(BASE)["w"], np.full(8, 2.0, dtype=np.float32))
    assert agg.total_weight == first.weight


def test_the_norm_is_measured_in_float64_as_segments_arrive() -> None:
    update = FedAvg().start_round(Manifest.from_arrays(BASE)).begin(num_examples=1)
    values = segments(np.full(8, 1e30))  # its float32 square would overflow
    for seg in values:
        update.add(seg)
    assert update.norm == pytest.approx(math.sqrt(8) * 1e30, rel=1e-6)


def test_an_update_is_folded_once() -> None:
    agg = FedAvg().start_round(Manifest.from_arrays(BASE))
    update = agg.begin(num_examples=1)
    values = segments(np.ones(8))
    for seg in values:
        update.add(seg)
    update.finish(lambda: values)
    assert update.counted
    with pytest.raises(AssertionError, match=r"^an update is folded once$"):
        update.finish(lambda: values)
    np.testing.assert_array_equal(agg.result(BASE)["w"], np.ones(8, dtype=np.float32))
