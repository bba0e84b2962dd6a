from __future__ import annotations

import numpy as np
import pytest
from flwr.server.strategy.aggregate import aggregate as flower_aggregate

from fedsov.codec import Manifest, PayloadReader, encode, iter_chunks
from fedsov.exceptions import ConfigError
from fedsov.strategy import FedAvg


def test_chunked_fedavg_equals_flower_weighted_average() -> None:
    rng = np.random.default_rng(1)
    base = {
        "w": rng.standard_normal((8, 5)).astype(np.float32),
        "b": rng.standard_normal(5).astype(np.float32),
    }
    locals_ = [
        ({k: v + rng.standard_normal(v.shape).astype(np.float32) for k, v in base.items()}, n)
        for n in (10, 250, 33)
    ]
    agg = FedAvg().start_round(Manifest.from_arrays(base))
    for weights, n in locals_:
        enc = encode({k: weights[k] - base[k] for k in base})
        reader = PayloadReader(enc.manifest, size=enc.size, sha256=enc.sha256)
        for chunk in iter_chunks(enc.payload, 13):  # splits elements across chunks
            for segment in reader.feed(chunk):
                agg.fold(segment, weight=n)
        reader.finish()
        agg.commit(weight=n)
    ours = agg.result(base)
    flower = flower_aggregate([([w[k] for k in base], n) for w, n in locals_])
    for (name, _), expected in zip(base.items(), flower, strict=True):
        assert ours[name].dtype == np.float32
        np.testing.assert_allclose(ours[name], expected, atol=1e-6)


def test_fedavg_refuses_integer_tensors_and_empty_rounds() -> None:
    with pytest.raises(ConfigError, match="'steps' is int64"):
        FedAvg().start_round(Manifest.from_arrays({"steps": np.zeros(1, dtype=np.int64)}))
    agg = FedAvg().start_round(Manifest.from_arrays({"w": np.zeros(1, dtype=np.float32)}))
    with pytest.raises(ValueError, match="at least one"):
        agg.result({"w": np.zeros(1, dtype=np.float32)})


def test_result_written_in_place_over_the_sums_is_right() -> None:
    from fedsov.codec import views_of

    base = {"w": np.arange(5, dtype=np.float32), "v": np.ones((2, 2), dtype=np.float64)}
    agg = FedAvg().start_round(Manifest.from_arrays(base))
    for value, n in ((1.0, 1), (4.0, 3)):
        enc = encode({k: np.full(v.shape, value, dtype=v.dtype) for k, v in base.items()})
        reader = PayloadReader(enc.manifest, size=enc.size)
        for seg in reader.feed(enc.payload):
            agg.fold(seg, weight=n)
        agg.commit(weight=n)
    buffer = agg.result_buffer()
    assert buffer is not None and len(buffer) == Manifest.from_arrays(base).nbytes
    out = views_of(Manifest.from_arrays(base), buffer)
    agg.write_result(base, out)
    np.testing.assert_allclose(out["w"], base["w"] + 3.25)
    np.testing.assert_allclose(out["v"], base["v"] + 3.25)


def test_float16_tensors_are_summed_in_float32() -> None:
    base = {"h": np.zeros(4, dtype=np.float16)}
    agg = FedAvg().start_round(Manifest.from_arrays(base))
    assert agg.result_buffer() is None
    enc = encode({"h": np.full(4, 60000.0, dtype=np.float16)})
    for n in (1, 1):
        reader = PayloadReader(enc.manifest, size=enc.size)
        for seg in reader.feed(enc.payload):
            agg.fold(seg, weight=n)  # 120000 overflows float16, not float32
        agg.commit(weight=n)
    np.testing.assert_array_equal(agg.result(base)["h"], np.full(4, 60000.0, dtype=np.float16))


def test_a_model_mixing_float16_and_float32_sums_its_float16_tensors_in_float32() -> None:
    base = {"h": np.zeros(4, dtype=np.float16), "w": np.zeros(3, dtype=np.float32)}
    agg = FedAvg().start_round(Manifest.from_arrays(base))
    update = {"h": np.full(4, 60000.0, dtype=np.float16), "w": np.full(3, 2.0, dtype=np.float32)}
    enc = encode(update)
    for n in (1, 3):
        reader = PayloadReader(enc.manifest, size=enc.size)
        for seg in reader.feed(enc.payload):
            agg.fold(seg, weight=n)  # 4 x 60000 overflows float16, not float32
        agg.commit(weight=n)
    result = agg.result(base)
    np.testing.assert_array_equal(result["h"], np.full(4, 60000.0, dtype=np.float16))
    np.testing.assert_allclose(result["w"], np.full(3, 2.0, dtype=np.float32))
    assert (result["h"].dtype, result["w"].dtype) == (np.float16, np.float32)
