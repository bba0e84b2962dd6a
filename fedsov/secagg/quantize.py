"""Clip, then stochastically round an update into the ring Z_(2^b), without overflow.

A site clips its update x to L2 norm C, multiplies it by its weight w (its example
count under FedAvg, 1 under DP-FedAvg) and rounds each element of w·x/step, step =
C·2^-p, to one of its two nearest integers, up with probability equal to the
fraction (unbiased: E[q] = w·x/step). Each |element| of the clipped update is at most
C, so |q| <= W·2^p + 1 with W the largest weight; the modular sum of n such values
is the true integer sum as long as n·(W·2^p + 1) < 2^(b-1), and ``ring_bits`` picks
the smallest b in (32, 64) for which it holds.

Error: each rounded element is off by less than one step, with variance at most
step²/4, independent across elements and sites; the mean of n updates of d elements
is therefore off by about step·√d / (2·√n·w̄) in L2 (docs/secure-aggregation.md
states it for the defaults and what the tests measure).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fedsov.exceptions import ConfigError

__all__ = ["RING_DTYPES", "clip_factor", "decode_sum", "quantize_into", "ring_bits"]

RING_DTYPES: dict[int, np.dtype[Any]] = {32: np.dtype("<u4"), 64: np.dtype("<u8")}
_SIGNED: dict[int, np.dtype[Any]] = {32: np.dtype("<i4"), 64: np.dtype("<i8")}


def ring_bits(*, sites: int, max_weight: int, precision_bits: int) -> int:
    """The smallest ring (32 or 64 bits) in which ``sites`` updates never wrap."""
    largest = sites * (max_weight * 2**precision_bits + 1)
    for bits in (32, 64):
        if largest < 2 ** (bits - 1):
            return bits
    raise ConfigError(
        f"secure_aggregation: {sites} sites of weight up to {max_weight} at precision_bits = "
        f"{precision_bits} need more than 64 bits; lower precision_bits (or max_examples)"
    )


def clip_factor(norm: float, clip: float) -> float:
    """min(1, clip / norm): what an update of L2 norm ``norm`` is scaled by."""
    if not math.isfinite(norm):
        raise ValueError(f"an update's L2 norm must be finite, got {norm}")
    return 1.0 if norm <= clip else clip / norm


def quantize_into(
    values: np.ndarray, out: np.ndarray, *, scale: float, rng: np.random.Generator
) -> None:
    """``out`` (ring elements) = stochastic rounding of ``values``·``scale``."""
    scaled = values.astype(np.float64) * scale
    scaled += rng.random(len(scaled))
    np.floor(scaled, out=scaled)
    out[:] = scaled.astype(np.int64).astype(out.dtype)  # two's complement: mod 2^b


def decode_sum(sums: np.ndarray, *, bits: int, step: float) -> np.ndarray:
    """The ring sums as the real sum they stand for (float64): signed, times ``step``."""
    return sums.view(_SIGNED[bits]).astype(np.float64) * step
