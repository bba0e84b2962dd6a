"""FedAvgAggregate: the base class defaults, sums' layout and memory, refusals."""

from __future__ import annotations

import re
import tracemalloc

import numpy as np
import pytest

from fedsov.codec import Manifest, PayloadReader, encode
from fedsov.exceptions import ConfigError
from fedsov.strategy import FedAvg
from fedsov.strategy.fedavg import FedAvgAggregate


def _fold(agg: FedAvgAggregate, update: dict[str, np.ndarray], weight: float) -> None:
    enc = encode(update)
    reader = PayloadReader(enc.manifest, size=enc.size)
    for segment in reader.feed(enc.payload):
        agg.fold(segment, weight=weight)
    reader.finish()
    agg.commit(weight=weight)


def test_the_default_correction_adds_no_weight() -> None:
    agg = FedAvg().start_round(Manifest.from_arrays({"w": np.zeros(3, dtype=np.float32)}))
    assert agg.correction(norm=10.0, weight=3.0) == 0.0
    assert agg.fold_weight(7) == 7.0
    assert agg.total_weight == 0.0


def test_result_returns_fresh_arrays_shaped_like_the_base() -> None:
    base = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "b": np.ones(2, dtype=np.float64),
    }
    agg = FedAvg().start_round(Manifest.from_arrays(base))
    _fold(agg, {k: np.full(v.shape, 2.0, dtype=v.dtype) for k, v in base.items()}, 1.0)
    _fold(agg, {k: np.full(v.shape, 5.0, dtype=v.dtype) for k, v in base.items()}, 2.0)
    out = agg.result(base)
    assert set(out) == {"w", "b"}
    assert out["w"].shape == (2, 3) and out["w"].dtype == np.float32
    assert out["b"].shape == (2,) and out["b"].dtype == np.float64
    np.testing.assert_allclose(out["w"], base["w"] + 4.0, rtol=1e-6)
    np.testing.assert_allclose(out["b"], base["b"] + 4.0, rtol=1e-12)
    assert out["w"] is not base["w"] and not np.shares_memory(out["w"], base["w"])
    assert agg.total_weight == 3.0


def test_float32_and_float64_sums_share_the_payload_layout() -> None:
    for dtype in (np.float32, np.float64):
        base = {"w": np.zeros((3, 4), dtype=dtype), "b": np.zeros(5, dtype=dtype)}
        manifest = Manifest.from_arrays(base)
        agg = FedAvgAggregate(manifest)
        buffer = agg.result_buffer()
        assert isinstance(buffer, bytearray)
        assert len(buffer) == encode(base).size
        assert agg.manifest is manifest


def test_float16_sums_are_widened_and_have_no_payload_buffer() -> None:
    for base in (
        {"w": np.zeros(4, dtype=np.float16)},
        {"w": np.zeros(4, dtype=np.float32), "h": np.zeros(4, dtype=np.float16)},
    ):
        agg = FedAvg().start_round(Manifest.from_arrays(base))
        assert agg.result_buffer() is None
    base = {"h": np.zeros((2, 2), dtype=np.float16)}
    agg = FedAvg().start_round(Manifest.from_arrays(base))
    big = {"h": np.full((2, 2), 40000.0, dtype=np.float16)}
    _fold(agg, big, 1.0)
    _fold(agg, big, 1.0)  # 80000 overflows float16, not the float32 sums
    out = agg.result(base)
    assert out["h"].dtype == np.float16
    np.testing.assert_allclose(out["h"].astype(np.float64), 40000.0, rtol=1e-3)


def test_float16_sums_take_float32_memory_not_float64() -> None:
    manifest = Manifest.from_arrays({"h": np.zeros(1 << 20, dtype=np.float16)})
    tracemalloc.start()
    try:
        agg = FedAvgAggregate(manifest)
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert agg.result_buffer() is None
    assert 4 << 20 <= size < 6 << 20  # one float32 per element (float64 would be 8 MiB)


def test_integer_tensors_are_refused_with_their_name_and_dtype() -> None:
    manifest = Manifest.from_arrays(
        {"w": np.zeros(2, dtype=np.float32), "steps": np.zeros(1, dtype=np.int64)}
    )
    message = "FedAvg averages floating-point tensors; 'steps' is int64"
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        FedAvg().start_round(manifest)
    assert FedAvg().start_round(Manifest.from_arrays({"w": np.zeros(2, dtype=np.float16)}))


def test_an_empty_round_has_no_result() -> None:
    agg = FedAvg().start_round(Manifest.from_arrays({"w": np.zeros(2, dtype=np.float32)}))
    with pytest.raises(ValueError, match=r"^FedAvg needs at least one committed update$"):
        agg.result({"w": np.zeros(2, dtype=np.float32)})
    agg.commit(weight=0.0)
    with pytest.raises(ValueError, match=r"^FedAvg needs at least one committed update$"):
        agg.result({"w": np.zeros(2, dtype=np.float32)})
