"""DPFedAvg: seed, state across restarts, round stats, clipping at C, noise on the sum."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fedsov.codec import Manifest, PayloadReader, encode
from fedsov.exceptions import ConfigError
from fedsov.strategy import DPFedAvg, SiteDPSettings
from fedsov.strategy.dp_fedavg import _COUNT_NOISE, _MODEL_NOISE, DPFedAvgAggregate

BASE = {"w": np.linspace(-1.0, 1.0, 50, dtype=np.float32)}


def commit(agg: DPFedAvgAggregate, update: np.ndarray) -> None:
    """Fold, clip and commit one update the way the round engine does."""
    enc = encode({"w": update.astype(np.float32)})
    reader = PayloadReader(enc.manifest, size=enc.size)
    segments = list(reader.feed(enc.payload))
    reader.finish()
    for seg in segments:
        agg.fold(seg, weight=1.0)
    norm = float(np.linalg.norm(update.astype(np.float32).astype(np.float64)))
    extra = agg.correction(norm=norm, weight=1.0)
    for seg in segments:
        agg.fold(seg, weight=extra)
    agg.commit(weight=1.0)


def test_settings_of_the_wrong_type_are_named() -> None:
    with pytest.raises(ConfigError, match=r"^settings must be SiteDPSettings, got dict$"):
        DPFedAvg({"clip": 1.0}, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^seed must be an integer >= 0, got True$"):
        DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=True)
    with pytest.raises(ConfigError, match=r"^seed must be an integer >= 0, got 1\.5$"):
        DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=1.5)  # type: ignore[arg-type]


def test_a_seed_drawn_from_the_os_has_128_bits() -> None:
    settings = SiteDPSettings(clip=1.0, noise_multiplier=1.0)
    seeds = [DPFedAvg(settings, seed=None).seed for _ in range(64)]
    assert all(0 <= s < 1 << 128 for s in seeds)
    assert max(seeds) >= 1 << 120  # P(all 64 below 2^120) = 2^-512
    assert len(set(seeds)) == 64


def test_a_fresh_strategy_has_no_round_yet() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=2.5, noise_multiplier=1.0), seed=7)
    assert strategy.seed == 7
    assert strategy.last_round_stats is None and strategy.last_round is None
    assert strategy.clip == 2.5 and isinstance(strategy.clip, float)
    assert strategy.rounds == 0
    assert strategy.state() == {"clip": 2.5, "rounds": 0}


def test_state_survives_a_restart_but_not_the_seed() -> None:
    settings = SiteDPSettings(clip=1.0, noise_multiplier=0.0, adaptive=True)
    before = DPFedAvg(settings, seed=1)
    agg = before.start_round(Manifest.from_arrays(BASE))
    commit(agg, np.full(50, 0.01))
    agg.result(BASE)
    state = before.state()
    assert state == {"clip": before.clip, "rounds": 1}
    assert state["clip"] != 1.0

    after = DPFedAvg(settings, seed=2)
    after.restore({"clip": "0.75", "rounds": 3.0})  # JSON numbers of any kind
    assert (after.clip, after.rounds) == (0.75, 3)
    assert isinstance(after.clip, float) and isinstance(after.rounds, int)
    after.restore(state)
    assert after.state() == state and after.seed == 2
    assert after.start_round(Manifest.from_arrays(BASE)).round == 1
    after.restore({})  # nothing stored (the first round): unchanged
    assert after.state() == state


def test_round_stats_without_adaptive_clipping() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=0.5, noise_multiplier=0.3), seed=11)
    for round_ in range(2):
        agg = strategy.start_round(Manifest.from_arrays(BASE))
        commit(agg, np.full(50, 1.0))  # norm ~7.07: clipped
        commit(agg, np.full(50, 0.01))  # norm ~0.07: not clipped
        agg.result(BASE)
        stats = strategy.last_round_stats
        assert stats is not None
        assert stats.round == round_
        assert (stats.sites, stats.unclipped, stats.clipped, stats.n) == (2, 1, 1, 2)
        assert stats.clip == 0.5 and stats.next_clip == 0.5
        assert stats.noise_multiplier == 0.3
        assert stats.noise_std == pytest.approx(0.15)
        assert stats.count_noise_std == 0.0
        assert stats.noisy_unclipped_fraction is None
    assert strategy.rounds == 2


def test_adaptive_round_stats_use_the_seeded_count_noise() -> None:
    settings = SiteDPSettings(
        clip=0.5, noise_multiplier=0.8, adaptive=True, count_noise_multiplier=3.0
    )
    strategy = DPFedAvg(settings, seed=123)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    for value in (1.0, 0.01, 0.02):  # one clipped, two unclipped
        commit(agg, np.full(50, value))
    agg.result(BASE)
    stats = strategy.last_round_stats
    assert stats is not None
    noise = np.random.default_rng([123, 0, _COUNT_NOISE]).normal(0.0, 3.0)
    assert abs(noise) > 0.01
    expected = (2 + noise) / 3
    assert stats.noisy_unclipped_fraction == pytest.approx(expected, rel=1e-12)
    assert stats.next_clip == pytest.approx(0.5 * math.exp(-0.2 * (expected - 0.5)), rel=1e-12)
    assert strategy.clip == stats.next_clip
    z_sum = (0.8**-2 - 6.0**-2) ** -0.5
    assert (stats.round, stats.clip, stats.unclipped) == (0, 0.5, 2)
    assert stats.noise_multiplier == pytest.approx(z_sum, rel=1e-12)
    assert stats.noise_std == pytest.approx(z_sum * 0.5, rel=1e-12)
    assert stats.count_noise_std == 3.0


def test_the_count_noise_is_centred_with_std_sigma_b() -> None:
    settings = SiteDPSettings(
        clip=1.0, noise_multiplier=0.5, adaptive=True, count_noise_multiplier=3.0
    )
    draws = []
    for seed in range(300):
        strategy = DPFedAvg(settings, seed=seed)
        agg = strategy.start_round(Manifest.from_arrays(BASE))
        commit(agg, np.full(50, 0.001))  # one unclipped update
        agg.result(BASE)
        stats = strategy.last_round_stats
        assert stats is not None and stats.noisy_unclipped_fraction is not None
        draws.append(stats.noisy_unclipped_fraction - 1.0)
    # 300 draws of N(0, 9): the mean's std is 0.17, the std's about 0.12
    assert abs(float(np.mean(draws))) < 0.7
    assert float(np.std(draws)) == pytest.approx(3.0, rel=0.15)


def test_an_update_of_norm_exactly_c_counts_as_unclipped() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=2.0, noise_multiplier=0.0), seed=0)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    assert agg.correction(norm=2.0, weight=1.0) == 0.0
    agg.commit(weight=1.0)
    assert agg.correction(norm=2.0000001, weight=1.0) < 0.0
    agg.commit(weight=1.0)
    assert (agg.sites, agg.unclipped) == (2, 1)


def test_each_commit_needs_its_own_norm_check() -> None:
    agg = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=0).start_round(
        Manifest.from_arrays(BASE)
    )
    message = "^DP-FedAvg commits only updates whose norm correction\\(\\) checked$"
    with pytest.raises(RuntimeError, match=message):
        agg.commit(weight=1.0)
    agg.correction(norm=0.5, weight=1.0)
    agg.commit(weight=1.0)
    with pytest.raises(RuntimeError, match=message):
        agg.commit(weight=1.0)  # the check was used up by the first commit
    assert agg.sites == 1 and agg.total_weight == 1.0


def test_an_empty_round_and_a_second_result_are_refused_with_reasons() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=1.0), seed=0)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    with pytest.raises(ValueError, match=r"^DP-FedAvg needs at least one committed update$"):
        agg.result(BASE)
    commit(agg, np.zeros(50))
    agg.result(BASE)
    message = "this round's result was written already (the noise is spent)"
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        agg.result(BASE)
    assert strategy.rounds == 1


def test_the_result_is_base_plus_the_noisy_clipped_sum_over_n() -> None:
    strategy = DPFedAvg(SiteDPSettings(clip=1.0, noise_multiplier=0.6), seed=42)
    agg = strategy.start_round(Manifest.from_arrays(BASE))
    rng = np.random.default_rng(5)
    updates = [rng.standard_normal(50) * 0.05, rng.standard_normal(50) * 0.05]
    assert all(np.linalg.norm(u) < 1.0 for u in updates)
    clipped = np.full(50, 1.0)  # norm ~7.07, clipped to 1
    for update in (*updates, clipped):
        commit(agg, update)
    out = agg.result(BASE)["w"]
    total = sum(u.astype(np.float32).astype(np.float64) for u in updates)
    total = total + clipped / np.linalg.norm(clipped)
    noise = np.random.default_rng([42, 0, _MODEL_NOISE]).standard_normal(50) * 0.6
    expected = BASE["w"].astype(np.float64) + (total + noise) / 3
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
