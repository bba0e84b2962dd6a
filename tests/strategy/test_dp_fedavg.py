"""DP-FedAvg: per-site clipping, Gaussian noise on the sum, adaptive clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsov.codec import Manifest, PayloadReader, encode
from fedsov.exceptions import ConfigError
from fedsov.strategy import DPFedAvg, SiteDPSettings
from fedsov.strategy.dp_fedavg import DPFedAvgAggregate, adaptive_noise

BASE = {"w": np.zeros(4000, dtype=np.float32)}


def fold(agg: DPFedAvgAggregate, delta: np.ndarray) -> None:
    """What the round engine does: fold, measure the norm, replay the correction."""
    enc = encode({"w": delta.astype(np.float32)})
    weight = agg.fold_weight(num_examples=123)
    segments = list(PayloadReader(enc.manifest, size=enc.size).feed(enc.payload))
    for seg in segments:
        agg.fold(seg, weight=weight)
    extra = agg.correction(norm=float(np.linalg.norm(delta)), weight=weight)
    for seg in segments:
        agg.fold(seg, weight=extra)
    agg.commit(weight=weight)


def test_without_noise_and_clipping_it_is_the_unweighted_mean() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=1e6, noise_multiplier=0.0), seed=0)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    for value in (1.0, 2.0, 6.0):
        fold(agg, np.full(4000, value))
    np.testing.assert_allclose(agg.result(BASE)["w"], np.full(4000, 3.0), rtol=1e-6)


def test_clipping_scales_a_long_update_to_norm_c() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=0.5, noise_multiplier=0.0), seed=0)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    rng = np.random.default_rng(1)
    long = rng.standard_normal(4000) * 10
    fold(agg, long)
    out = agg.result(BASE)["w"]
    assert float(np.linalg.norm(out)) == pytest.approx(0.5, rel=1e-4)  # float32 sums
    np.testing.assert_allclose(out, long * 0.5 / np.linalg.norm(long), rtol=1e-4, atol=1e-7)
    assert strategy.last_round is not None and strategy.last_round.unclipped == 0


def test_noise_std_is_z_times_c_over_n() -> None:
    settings = SiteDPSettings(clip=2.0, noise_multiplier=0.7)
    agg = DPFedAvg(settings, seed=5).start_round(Manifest.from_arrays(BASE))
    for _ in range(4):
        fold(agg, np.zeros(4000))
    out = agg.result(BASE)["w"]
    assert float(out.std()) == pytest.approx(0.7 * 2.0 / 4, rel=0.05)


def test_adaptive_clipping_follows_the_norms() -> None:
    settings = SiteDPSettings(clip=1.0, noise_multiplier=0.0, adaptive=True, clip_learning_rate=0.5)
    small = DPFedAvg(settings, seed=0)
    large = DPFedAvg(settings, seed=0)
    for _ in range(5):
        for strategy, scale in ((small, 0.01), (large, 100.0)):
            agg = strategy.start_round(Manifest.from_arrays(BASE))
            for _ in range(3):
                fold(agg, np.full(4000, scale / math.sqrt(4000)))
            agg.result(BASE)
    assert small.clip < 1.0 * math.exp(-0.5 * 0.5 * 4)  # shrank each round
    assert large.clip > 1.0 * math.exp(0.5 * 0.5 * 4)  # grew each round


def test_adaptive_noise_keeps_the_total_cost_z() -> None:
    z_delta, sigma_b = adaptive_noise(1.0, 100)
    assert sigma_b == 5.0
    assert (z_delta**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(1.0)
    z_small, sigma_small = adaptive_noise(0.5, 3)  # few sites: sigma_b raised to z
    assert sigma_small == 0.5 and z_small > 0.5


def test_noise_is_deterministic_by_seed() -> None:
    def run(seed: int) -> np.ndarray:
        agg = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=seed).start_round(
            Manifest.from_arrays(BASE)
        )
        fold(agg, np.zeros(4000))
        return agg.result(BASE)["w"]

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"site_dp\.clip must be > 0"):
        SiteDPSettings(clip=0.0, noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="target_quantile"):
        SiteDPSettings(clip=1.0, noise_multiplier=1.0, target_quantile=2.0)
