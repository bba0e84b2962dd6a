"""DP-FedAvg: per-site clipping, Gaussian noise on the sum, adaptive clipping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsov.codec import Manifest, PayloadReader, encode, iter_chunks, views_of
from fedsov.exceptions import ConfigError
from fedsov.strategy import DPFedAvg, FedAvg, SiteDPSettings, create_strategy
from fedsov.strategy.dp_fedavg import DPFedAvgAggregate, adaptive_noise

BASE = {"w": np.zeros(4000, dtype=np.float32)}


def fold(agg: DPFedAvgAggregate, delta: np.ndarray, *, chunk: int = 1000) -> None:
    """What the round engine does: fold, measure the norm, replay the correction."""
    enc = encode({"w": delta.astype(np.float32)})
    weight = agg.fold_weight(num_examples=123)
    assert weight == 1.0
    reader = PayloadReader(enc.manifest, size=enc.size)
    segments = [seg for c in iter_chunks(enc.payload, chunk) for seg in reader.feed(c)]
    reader.finish()
    squared = 0.0
    for seg in segments:
        agg.fold(seg, weight=weight)
        squared += float(np.dot(seg.values.astype(np.float64), seg.values.astype(np.float64)))
    extra = agg.correction(norm=math.sqrt(squared), weight=weight)
    for seg in segments:
        agg.fold(seg, weight=extra)
    agg.commit(weight=weight)


def test_without_noise_and_clipping_it_is_the_unweighted_mean() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=1e6, noise_multiplier=0.0), seed=0)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    rng = np.random.default_rng(0)
    updates = [rng.standard_normal(4000) for _ in range(3)]
    for update in updates:
        fold(agg, update, chunk=333)  # splits elements across chunks
    expected = np.mean([u.astype(np.float32) for u in updates], axis=0)
    np.testing.assert_allclose(agg.result(BASE)["w"], expected, rtol=1e-5, atol=1e-6)
    stats = strategy.last_round_stats
    assert stats is not None and (stats.sites, stats.clipped, stats.noise_std) == (3, 0, 0.0)


def test_clipping_scales_a_norm_10_update_to_norm_c() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=0.5, noise_multiplier=0.0), seed=0)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    rng = np.random.default_rng(1)
    long = rng.standard_normal(4000)
    long *= 10 / np.linalg.norm(long)
    fold(agg, long)
    out = agg.result(BASE)["w"]
    assert float(np.linalg.norm(out)) == pytest.approx(0.5, rel=1e-5)
    np.testing.assert_allclose(out, long * 0.05, rtol=1e-4, atol=1e-7)
    stats = strategy.last_round_stats
    assert stats is not None and stats.unclipped == 0 and stats.clipped == 1
    assert strategy.last_round is stats


def test_correction_is_the_extra_weight_and_zero_below_c() -> None:
    agg = DPFedAvg(SiteDPSettings(clip=2.0, noise_multiplier=1.0), seed=0).start_round(
        Manifest.from_arrays(BASE)
    )
    assert agg.correction(norm=8.0, weight=1.0) == pytest.approx(-0.75)
    assert agg.correction(norm=2.0, weight=1.0) == 0.0
    assert agg.correction(norm=math.inf, weight=1.0) == -1.0  # removed entirely
    with pytest.raises(ValueError, match="norm"):
        agg.correction(norm=math.nan, weight=1.0)


def test_an_update_whose_norm_was_not_checked_is_refused() -> None:
    agg = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=0).start_round(
        Manifest.from_arrays(BASE)
    )
    with pytest.raises(RuntimeError, match="correction"):
        agg.commit(weight=1.0)
    agg.correction(norm=0.5, weight=1.0)
    with pytest.raises(ValueError, match="weight 1"):
        agg.commit(weight=7.0)


def test_noise_std_is_z_delta_times_c_over_n() -> None:
    big = {"w": np.zeros(1_500_000, dtype=np.float32)}  # more than one noise slice
    for adaptive in (False, True):
        settings = SiteDPSettings(clip=2.0, noise_multiplier=0.7, adaptive=adaptive)
        strategy = DPFedAvg(settings, seed=5)
        agg = strategy.start_round(Manifest.from_arrays(big))
        for _ in range(4):
            agg.correction(norm=0.0, weight=1.0)
            agg.commit(weight=1.0)  # four zero updates
        out = agg.result(big)["w"]
        z_delta = adaptive_noise(0.7, 4)[0] if adaptive else 0.7
        assert float(out.std()) == pytest.approx(z_delta * 2.0 / 4, rel=0.005)
        assert abs(float(out.mean())) < 1e-3
        stats = strategy.last_round_stats
        assert stats is not None
        assert stats.noise_std == pytest.approx(z_delta * 2.0)
        assert stats.mean_noise_std == pytest.approx(z_delta * 2.0 / 4)
    assert adaptive_noise(0.7, 4)[0] > 0.7  # adaptive clipping costs some noise on the sum


def test_adaptive_clipping_follows_the_norms() -> None:
    settings = SiteDPSettings(clip=1.0, noise_multiplier=0.5, adaptive=True, clip_learning_rate=0.2)
    small = DPFedAvg(settings, seed=0)
    large = DPFedAvg(settings, seed=0)
    clips: dict[str, list[float]] = {"small": [], "large": []}
    for _ in range(10):
        for key, strategy, norm in (("small", small, 0.1), ("large", large, 10.0)):
            agg = strategy.start_round(Manifest.from_arrays(BASE))
            for _ in range(20):
                fold(agg, np.full(4000, norm / math.sqrt(4000)))
            agg.result(BASE)
            clips[key].append(strategy.clip)
    # noise on the count (σ_b = max(20/20, z) = 1) jitters b̃ by ±0.05 a round, so the
    # steps are about exp(∓0.2·0.5) each: ten rounds move C by about e^(∓1).
    assert small.clip < math.exp(-0.8) and large.clip > math.exp(0.8)
    assert small.rounds == large.rounds == 10
    stats = small.last_round_stats
    assert stats is not None and stats.unclipped == 20 and stats.count_noise_std == 1.0
    assert stats.noisy_unclipped_fraction is not None and stats.next_clip == small.clip


def test_adaptive_clipping_without_noise_is_exact() -> None:
    settings = SiteDPSettings(clip=1.0, noise_multiplier=0.0, adaptive=True, clip_learning_rate=0.5)
    strategy = DPFedAvg(settings, seed=0)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    for norm in (0.1, 0.2, 5.0):  # two of three unclipped: b = 2/3
        fold(agg, np.full(4000, norm / math.sqrt(4000)))
    agg.result(BASE)
    assert strategy.clip == pytest.approx(math.exp(-0.5 * (2 / 3 - 0.5)))


def test_adaptive_noise_keeps_the_total_cost_z() -> None:
    z_delta, sigma_b = adaptive_noise(1.0, 100)
    assert sigma_b == 5.0
    assert (z_delta**-2 + (2 * sigma_b) ** -2) ** -0.5 == pytest.approx(1.0)
    z_small, sigma_small = adaptive_noise(0.5, 3)  # few sites: sigma_b raised to z
    assert sigma_small == 0.5 and z_small > 0.5
    expected = SiteDPSettings(clip=1.0, noise_multiplier=1.0, adaptive=True, expected_sites=200)
    assert expected.noise(7) == adaptive_noise(1.0, 200)  # m, not the realised count
    given = SiteDPSettings(clip=1.0, noise_multiplier=1.0, adaptive=True, count_noise_multiplier=2)
    z_given, _ = given.noise(7)
    assert (z_given**-2 + 4.0**-2) ** -0.5 == pytest.approx(1.0)
    assert SiteDPSettings(clip=1.0, noise_multiplier=1.0).noise(7) == (1.0, 0.0)


def test_noise_is_deterministic_by_seed_and_differs_by_round() -> None:
    def run(seed: int, rounds: int = 1) -> np.ndarray:
        strategy = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=seed)
        for _ in range(rounds):
            agg = strategy.start_round(Manifest.from_arrays(BASE))
            fold(agg, np.zeros(4000))
            out = agg.result(BASE)["w"]
        return out

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))
    assert not np.array_equal(run(3, rounds=2), run(3))


def test_result_in_place_over_the_sums_and_only_once() -> None:
    base = {"w": np.arange(6, dtype=np.float32), "v": np.ones((2, 2), dtype=np.float64)}
    manifest = Manifest.from_arrays(base)
    strategy = DPFedAvg(SiteDPSettings(clip=100.0, noise_multiplier=0.0), seed=0)
    agg = strategy.start_round(manifest)
    for value in (1.0, 4.0):
        enc = encode({k: np.full(v.shape, value, dtype=v.dtype) for k, v in base.items()})
        reader = PayloadReader(enc.manifest, size=enc.size)
        segments = list(reader.feed(enc.payload))
        for seg in segments:
            agg.fold(seg, weight=1.0)
        assert agg.correction(norm=value * math.sqrt(10), weight=1.0) == 0.0
        agg.commit(weight=1.0)
    buffer = agg.result_buffer()
    assert buffer is not None
    out = views_of(manifest, buffer)
    agg.write_result(base, out)
    np.testing.assert_allclose(out["w"], base["w"] + 2.5)
    np.testing.assert_allclose(out["v"], base["v"] + 2.5)
    with pytest.raises(RuntimeError, match="already"):
        agg.write_result(base, out)
    assert strategy.rounds == 1


def test_a_stale_aggregate_cannot_finish_a_later_round() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=0)
    first = strategy.start_round(Manifest.from_arrays(BASE))
    second = strategy.start_round(Manifest.from_arrays(BASE))
    for agg in (first, second):
        fold(agg, np.zeros(4000))
    first.result(BASE)
    with pytest.raises(RuntimeError, match="round 0 cannot finish round 1"):
        second.result(BASE)


def test_empty_round_and_integer_tensors_are_refused() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=0)
    with pytest.raises(ValueError, match="at least one"):
        strategy.start_round(Manifest.from_arrays(BASE)).result(BASE)
    with pytest.raises(ConfigError, match="int64"):
        strategy.start_round(Manifest.from_arrays({"n": np.zeros(1, dtype=np.int64)}))


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"site_dp\.clip: must be > 0"):
        SiteDPSettings(clip=0.0, noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="noise_multiplier"):
        SiteDPSettings(clip=1.0, noise_multiplier=-1.0)
    with pytest.raises(ConfigError, match="target_quantile"):
        SiteDPSettings(clip=1.0, noise_multiplier=1.0, target_quantile=2.0)
    with pytest.raises(ConfigError, match="clip_learning_rate"):
        SiteDPSettings(clip=1.0, noise_multiplier=1.0, clip_learning_rate=-0.1)
    with pytest.raises(ConfigError, match="expected_sites"):
        SiteDPSettings(clip=1.0, noise_multiplier=1.0, expected_sites=0)
    with pytest.raises(ConfigError, match="exceed noise_multiplier / 2"):
        SiteDPSettings(clip=1.0, noise_multiplier=2.0, adaptive=True, count_noise_multiplier=1.0)
    with pytest.raises(ConfigError, match="delta"):
        SiteDPSettings(clip=1.0, noise_multiplier=1.0, delta=1.0)
    with pytest.raises(ConfigError, match="seed"):
        DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=-1)
    assert DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=None).seed >= 0
    assert DPFedAvg.name == "dp-fedavg"


def _round_through_begin(strategy: DPFedAvg, deltas: list[np.ndarray]) -> None:
    """One round the way the round engine runs it: begin, add each segment, finish."""
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    for delta in deltas:
        enc = encode({"w": delta.astype(np.float32)})
        reader = PayloadReader(enc.manifest, size=enc.size)
        segments = [seg for c in iter_chunks(enc.payload, 700) for seg in reader.feed(c)]
        update = agg.begin(num_examples=50)
        for seg in segments:
            update.add(seg)
        update.finish(lambda segments=segments: segments)
    agg.result(BASE)


def test_site_level_dp_says_what_each_release_adds() -> None:
    settings = SiteDPSettings(clip=1.0, noise_multiplier=0.8, adaptive=True, delta=1e-6)
    strategy = DPFedAvg(settings, seed=0)
    before = strategy.site_level_dp()
    assert (before.noise_multiplier, before.delta, before.clip, before.rounds) == (
        0.8,
        1e-6,
        1.0,
        0,
    )
    small = [np.full(4000, 1e-4), np.full(4000, -1e-4)]  # unclipped: C shrinks
    _round_through_begin(strategy, small)
    _round_through_begin(strategy, small)
    after = strategy.site_level_dp()
    stats = strategy.last_round_stats
    assert stats is not None and after.rounds == 2
    assert after.clip == stats.clip < 1.0  # the clip the last release used, adapted
    assert after.noise_multiplier == 0.8 and after.delta == 1e-6


def test_plain_fedavg_releases_without_site_level_dp() -> None:
    assert FedAvg().site_level_dp() is None
    assert isinstance(create_strategy("fedavg"), FedAvg)
    with pytest.raises(
        ConfigError, match=r"unknown strategy 'qfedavg' \(known: bulyan, dp-fedavg, fedadagrad"
    ):
        create_strategy("qfedavg")
