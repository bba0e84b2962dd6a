"""SecureAggregate: masked uploads folded in the ring, unmasked into FedAvg / DP-FedAvg."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import numpy as np
import pytest
from secagg_harness import Updates, model_of, params, relative_l2, setup, updates

from fedsov.codec import EncodedTensors, PayloadReader, Segment, iter_chunks
from fedsov.exceptions import ConfigError
from fedsov.messages import SecAggParams
from fedsov.secagg import Unmasking
from fedsov.strategy import DPFedAvg, FedAvg, FedMedian, FedTrimmedAvg, SiteDPSettings
from fedsov.strategy.base import RoundAggregate
from fedsov.strategy.secure import SecureAggregate

N = 10


def fold_upload(aggregate: SecureAggregate, encoded: EncodedTensors, num_examples: int) -> None:
    """As a round folds an accepted upload: measured as it arrives, then replayed."""
    fold = aggregate.begin(num_examples)
    reader = PayloadReader(aggregate.manifest, size=encoded.size, sha256=encoded.sha256)
    segments: list[Segment] = []
    for chunk in iter_chunks(encoded.payload, 1 << 12):
        for segment in reader.feed(chunk):
            fold.add(segment)
            segments.append(segment)
    reader.finish()
    fold.finish(lambda: iter(segments))


def secure_round(
    inner: RoundAggregate,
    ups: Updates,
    p: SecAggParams,
    weights: Mapping[str, int],
    *,
    drop_before_upload: Collection[str] = (),
) -> SecureAggregate:
    played = setup(ups, p)
    aggregate = SecureAggregate(inner, played.model, p)
    uploaded = []
    for s, site in played.sites.items():
        if s in drop_before_upload:
            continue
        weight = weights[s] if p.weighted else 1
        fold_upload(aggregate, site.mask(ups[s], played.model, weight=weight), weights[s])
        uploaded.append(s)
    region = played.region
    region.name_survivors(uploaded)
    assert region.survivors is not None
    for s in region.survivors:
        region.submit_reveals(s, played.sites[s].reveal(region.survivors, region.dropped))
    aggregate.unmask(region.unmasking())
    return aggregate


def base_of(ups: Updates) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(99)
    first = next(iter(ups.values()))
    return {k: rng.normal(0.0, 0.05, v.shape).astype(np.float32) for k, v in first.items()}


def flat(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([arrays[k].astype(np.float64).ravel() for k in ("w", "b")])


def test_over_fedavg_gives_base_plus_the_weighted_mean() -> None:
    ups = updates(N, d=3000, seed=21)
    model = model_of(ups)
    p = params(N, max_weight=10_000_000)
    assert p.ring_bits == 64
    weights = {s: 50 + 300 * i for i, s in enumerate(ups)}
    gone = {"s02", "s06"}
    aggregate = secure_round(FedAvg().start_round(model), ups, p, weights, drop_before_upload=gone)
    survivors = [s for s in ups if s not in gone]
    assert aggregate.updates == len(survivors)
    assert aggregate.total_weight == sum(weights[s] for s in survivors)
    base = base_of(ups)
    out = aggregate.result(base)
    total = sum(weights[s] for s in survivors)
    want = flat(base) + sum(weights[s] * flat(ups[s]) for s in survivors) / total
    assert relative_l2(flat(out), want) <= 1e-5
    assert all(out[k].dtype == np.float32 and out[k].shape == base[k].shape for k in base)
    assert aggregate.result_buffer() is not None


def test_over_dp_fedavg_gives_the_unweighted_mean_of_clipped_updates() -> None:
    ups = updates(N, d=2000, seed=22)
    clip = 1.0
    big = {"s01", "s04", "s07"}
    for s in big:  # norms ~0.45 otherwise; these three are clipped by their sites
        ups[s] = {k: v * np.float32(8.0) for k, v in ups[s].items()}
    model = model_of(ups)
    settings = SiteDPSettings(clip=clip, noise_multiplier=0.0, adaptive=True)
    strategy = DPFedAvg(settings, seed=1)
    assert strategy.secure_clip(10.0) == clip
    p = params(N, weighted=False, clip=strategy.secure_clip(10.0))
    assert p.ring_bits == 32
    weights = {s: 100 * (i + 1) for i, s in enumerate(ups)}  # ignored: DP-FedAvg counts sites
    gone = {"s09"}
    aggregate = secure_round(strategy.start_round(model), ups, p, weights, drop_before_upload=gone)
    survivors = [s for s in ups if s not in gone]
    assert aggregate.total_weight == len(survivors)
    base = base_of(ups)
    out = aggregate.result(base)

    def clipped(s: str) -> np.ndarray:
        v = flat(ups[s])
        return v * min(1.0, clip / float(np.linalg.norm(v)))

    assert {s for s in survivors if np.linalg.norm(flat(ups[s])) > clip} == big
    want = flat(base) + sum(clipped(s) for s in survivors) / len(survivors)
    assert relative_l2(flat(out), want) <= 1e-5

    stats = strategy.last_round_stats
    assert stats is not None
    assert stats.sites == len(survivors) == 9
    assert stats.unclipped == len(survivors) - len(big) == 6  # the sites' within-clip count
    rate, target = settings.clip_learning_rate, settings.target_quantile
    want_clip = clip * math.exp(-rate * (6 / 9 - target))  # C·exp(-η(b - γ)), no count noise
    assert stats.next_clip == pytest.approx(want_clip, rel=1e-12)
    assert strategy.clip == pytest.approx(want_clip, rel=1e-12)


@pytest.mark.parametrize("strategy", [FedMedian(), FedTrimmedAvg()])
def test_rules_that_keep_updates_cannot_run_securely(strategy: object) -> None:
    ups = updates(3, d=10)
    model = model_of(ups)
    inner = strategy.start_round(model)  # type: ignore[attr-defined]
    assert inner.keeps_updates
    with pytest.raises(ConfigError):
        SecureAggregate(inner, model, params(3))


def test_the_result_comes_once_after_one_unmasking() -> None:
    ups = updates(5, d=20, seed=23)
    model = model_of(ups)
    p = params(5)
    played = setup(ups, p)
    aggregate = SecureAggregate(FedAvg().start_round(model), model, p)
    for s, site in played.sites.items():
        fold_upload(aggregate, site.mask(ups[s], model, weight=100), 100)
    zeros = {k: np.zeros_like(v) for k, v in ups["s00"].items()}
    with pytest.raises(RuntimeError):  # still masked
        aggregate.result(zeros)
    assert aggregate.result_buffer() is None
    region = played.region
    region.name_survivors(list(ups))
    assert region.survivors is not None
    for s in region.survivors:
        region.submit_reveals(s, played.sites[s].reveal(region.survivors, region.dropped))
    unmasking = region.unmasking()
    short = Unmasking(unmasking.corrections, unmasking.survivors[:-1], unmasking.dropped)
    with pytest.raises(RuntimeError):  # survivors that are not the uploads folded
        aggregate.unmask(short)
    assert not aggregate.unmasked and aggregate.sum is not None
    aggregate.unmask(unmasking)
    assert aggregate.unmasked and aggregate.sum is None  # the ring buffer is freed
    with pytest.raises(RuntimeError):
        aggregate.unmask(unmasking)
    mean = sum(flat(u) for u in ups.values()) / 5
    assert relative_l2(flat(aggregate.result(zeros)), mean) <= 1e-5
