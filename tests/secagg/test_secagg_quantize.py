"""Clip, stochastic rounding into Z_(2^b), ring size and decoding of signed sums."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsov.exceptions import ConfigError
from fedsov.secagg.quantize import (
    RING_DTYPES,
    clip_factor,
    decode_sum,
    quantize_into,
    ring_bits,
)


def test_ring_bits_picks_32_then_64_then_refuses() -> None:
    assert ring_bits(sites=10, max_weight=1, precision_bits=24) == 32
    assert ring_bits(sites=127, max_weight=1, precision_bits=24) == 32  # 127·(2^24 + 1) < 2^31
    assert ring_bits(sites=128, max_weight=1, precision_bits=24) == 64
    assert ring_bits(sites=10, max_weight=10_000_000, precision_bits=24) == 64
    assert ring_bits(sites=1000, max_weight=10_000_000, precision_bits=24) == 64
    with pytest.raises(ConfigError):
        ring_bits(sites=1000, max_weight=10_000_000, precision_bits=40)
    with pytest.raises(ConfigError):
        ring_bits(sites=2**20, max_weight=2**20, precision_bits=24)


def test_ring_bits_at_the_boundary() -> None:
    """The largest sum n·(W·2^p + 1) must stay below 2^(b-1)."""
    assert ring_bits(sites=1, max_weight=2**31 - 2, precision_bits=0) == 32  # 2^31 - 1
    assert ring_bits(sites=1, max_weight=2**31 - 1, precision_bits=0) == 64  # 2^31
    assert ring_bits(sites=1, max_weight=2**63 - 2, precision_bits=0) == 64
    with pytest.raises(ConfigError):
        ring_bits(sites=1, max_weight=2**63 - 1, precision_bits=0)


def test_clip_factor() -> None:
    assert clip_factor(0.0, 2.0) == 1.0
    assert clip_factor(2.0, 2.0) == 1.0
    assert clip_factor(8.0, 2.0) == 0.25
    for bad in (math.inf, math.nan):
        with pytest.raises(ValueError):
            clip_factor(bad, 2.0)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("value", [0.3, -2.7, 5.0, -0.5, 1e-3])
def test_stochastic_rounding_is_unbiased_and_within_one_step(bits: int, value: float) -> None:
    draws = 200_000
    values = np.full(draws, value)
    out = np.empty(draws, dtype=RING_DTYPES[bits])
    quantize_into(values, out, scale=1.0, rng=np.random.default_rng(11))
    q = decode_sum(out, bits=bits, step=1.0)
    assert set(np.unique(q)) <= {math.floor(value), math.ceil(value)}
    assert np.all(np.abs(q - value) < 1.0)
    # E[q] = value: the mean error is ~0 (std sqrt(f(1-f)/draws) <= 0.0012)
    assert abs(q.mean() - value) < 0.006


@pytest.mark.parametrize("bits", [32, 64])
def test_quantize_scales_and_rounds_each_element(bits: int) -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0.0, 1.0, 50_000).astype(np.float32)
    scale = 1000.0
    out = np.empty(len(values), dtype=RING_DTYPES[bits])
    quantize_into(values, out, scale=scale, rng=rng)
    q = decode_sum(out, bits=bits, step=1.0)
    error = q - values.astype(np.float64) * scale
    assert np.all((error > -1.0) & (error < 1.0))  # within one step
    assert abs(error.mean()) < 0.01  # unbiased over many elements
    assert abs(error.var() - 1 / 6) < 0.01  # uniform fractions: E[f(1-f)] = 1/6


@pytest.mark.parametrize("bits", [32, 64])
def test_decode_of_negative_sums(bits: int) -> None:
    dtype = RING_DTYPES[bits]
    rng = np.random.default_rng(4)
    parts = rng.integers(-(2**20), 2**20, size=(7, 100))
    ring = np.zeros(100, dtype=dtype)
    for row in parts:
        ring += row.astype(dtype)  # each part as a ring element: wraps modulo 2^b
    step = 2.0**-24
    decoded = decode_sum(ring, bits=bits, step=step)
    np.testing.assert_array_equal(decoded, parts.sum(axis=0) * step)
    assert (parts.sum(axis=0) < 0).any()
    single = decode_sum(np.array([2**bits - 1, 2 ** (bits - 1)], dtype=dtype), bits=bits, step=1.0)
    assert single.tolist() == [-1.0, -(2.0 ** (bits - 1))]


def test_a_wrapping_sum_is_what_ring_bits_prevents() -> None:
    """n updates at the largest |q| still decode exactly in the ring ring_bits picks."""
    sites, weight, precision = 10, 12, 24
    bits = ring_bits(sites=sites, max_weight=weight, precision_bits=precision)
    assert bits == 32
    largest = weight * 2**precision + 1
    ring = np.zeros(1, dtype=RING_DTYPES[bits])
    for _ in range(sites):
        ring += np.array([-largest]).astype(RING_DTYPES[bits])
    assert decode_sum(ring, bits=bits, step=1.0)[0] == -sites * largest
