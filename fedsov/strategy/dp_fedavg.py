"""DP-FedAvg with adaptive clipping: site-level DP at the regional tier.

McMahan et al. 2018 ("Learning Differentially Private Recurrent Language Models"):
each site's update is clipped to L2 norm C, every site counts once (weight 1, the
sensitivity is per site), and Gaussian noise of standard deviation z·C per
coordinate is added to the sum before it is averaged.

Andrew et al. 2021 ("Differentially Private Learning with Adaptive Clipping"):
C follows the target quantile γ of the update norms, C <- C·exp(-η(b̃ - γ)), where
b̃ = (#unclipped + N(0, σ_b²)) / n is the noisy fraction of unclipped updates. So
that the two releases together cost what noise multiplier z alone would, the sum
gets z_Δ = (z^-2 - (2σ_b)^-2)^(-1/2) (their Theorem 1). σ_b defaults to m/20 as in
the paper, m = ``expected_sites`` (else the realised count), and is raised to z
where that would leave z_Δ undefined or above 2z/√3.

The next model is base + (Σ clipped updates + noise) / n with n the realised number
of committed updates. Dividing by the realised count is what fixed-size sampling
accounting assumes (m of n sites, replace-one neighbours, the count public:
``fedsov.privacy.site_level.fixed_size_epsilon``); add/remove accounting (Poisson,
``SiteLevelLedger.epsilon``) assumes the count hidden, which this does not do.

Noise comes from a numpy Generator seeded with (seed, round, stream): reproducible,
so the seed must stay secret (anyone who knows it can subtract the noise);
``seed=None`` draws it from the OS (a regional aggregator passes
``fedsov.aggregator.app.dp_noise_seed``: the OS CSPRNG, or its config seed only in the
insecure reproducible mode). The adaptive clip's count noise comes from the same seed.
Memory stays O(model): sums are folded chunk by chunk and noise is drawn slice by slice.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedsov.codec import Manifest, Segment
from fedsov.config import SiteDPSettings, adaptive_noise
from fedsov.exceptions import ConfigError
from fedsov.strategy.base import SiteLevelDP, Strategy
from fedsov.strategy.fedavg import FedAvgAggregate

__all__ = ["DPFedAvg", "DPFedAvgAggregate", "RoundStats", "SiteDPSettings", "adaptive_noise"]

_SLICE = 1 << 20  # elements per step when drawing noise and writing the result
_MODEL_NOISE, _COUNT_NOISE = 0, 1  # Generator streams within a round


@dataclass(frozen=True)
class RoundStats:
    round: int  # 0-based index of the round among this strategy's rounds
    sites: int  # n: committed updates
    unclipped: int  # updates with norm <= C
    clip: float  # C used this round
    noise_multiplier: float  # z_Δ (z without adaptive clipping)
    noise_std: float  # z_Δ·C: std of the noise on the sum, per coordinate
    count_noise_std: float  # σ_b (0 without adaptive clipping)
    noisy_unclipped_fraction: float | None  # b̃ (None without adaptive clipping)
    next_clip: float

    @property
    def clipped(self) -> int:
        return self.sites - self.unclipped

    @property
    def n(self) -> int:
        return self.sites

    @property
    def mean_noise_std(self) -> float:
        """Std of the noise on the averaged update, per coordinate: z_Δ·C / n."""
        return self.noise_std / self.sites


class DPFedAvg(Strategy):
    """Keeps the clipping norm (adaptive across rounds) and a seeded noise source."""

    name = "dp-fedavg"

    def __init__(self, settings: SiteDPSettings, *, seed: int | None) -> None:
        if not isinstance(settings, SiteDPSettings):
            raise ConfigError(f"settings must be SiteDPSettings, got {type(settings).__name__}")
        if seed is None:
            seed = secrets.randbits(128)
        if not (isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0):
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        self.settings = settings
        self.seed = seed
        self.clip = float(settings.clip)  # the current C
        self.rounds = 0  # rounds finished
        self.last_round_stats: RoundStats | None = None

    @property
    def last_round(self) -> RoundStats | None:
        """Alias of ``last_round_stats``."""
        return self.last_round_stats

    def start_round(self, manifest: Manifest) -> DPFedAvgAggregate:
        return DPFedAvgAggregate(self, manifest)

    def state(self) -> dict[str, Any]:
        return {"clip": self.clip, "rounds": self.rounds}

    def restore(self, state: Mapping[str, Any]) -> None:
        """The adaptive clip and round count of before a restart; the noise seed stays new."""
        if state:
            self.clip, self.rounds = float(state["clip"]), int(state["rounds"])

    def secure_clip(self, configured: float) -> float:
        return self.clip  # the sites clip to this round's C

    def site_level_dp(self) -> SiteLevelDP:
        last = self.last_round_stats
        return SiteLevelDP(
            noise_multiplier=self.settings.noise_multiplier,
            delta=self.settings.delta,
            clip=last.clip if last else self.settings.clip,
            rounds=self.rounds,
        )

    def rng(self, round: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, round, stream])

    def finish_round(self, aggregate: DPFedAvgAggregate) -> RoundStats:
        """Count ``aggregate``'s round and move C (adaptive); called by its write_result."""
        if aggregate.strategy is not self or aggregate.round != self.rounds:
            raise RuntimeError(
                f"aggregate of round {aggregate.round} cannot finish round {self.rounds}"
            )
        s = self.settings
        n = aggregate.sites
        z_sum, sigma_b = s.noise(n)
        used = aggregate.clip
        noisy: float | None = None
        if s.adaptive:
            noise = self.rng(aggregate.round, _COUNT_NOISE).normal(0.0, sigma_b) if sigma_b else 0.0
            noisy = (aggregate.unclipped + noise) / n
            self.clip = used * math.exp(-s.clip_learning_rate * (noisy - s.target_quantile))
        stats = RoundStats(
            round=aggregate.round,
            sites=n,
            unclipped=aggregate.unclipped,
            clip=used,
            noise_multiplier=z_sum,
            noise_std=z_sum * used,
            count_noise_std=sigma_b,
            noisy_unclipped_fraction=noisy,
            next_clip=self.clip,
        )
        self.last_round_stats = stats
        self.rounds += 1
        return stats


class DPFedAvgAggregate(FedAvgAggregate):
    """One round: clipped, unweighted sums; noise added once, in ``write_result``.

    Every committed update must have had its norm checked by ``correction`` first
    (``UpdateFold.finish`` does so): an update committed unchecked would have
    unbounded sensitivity, so ``commit`` refuses it.
    """

    def __init__(self, strategy: DPFedAvg, manifest: Manifest) -> None:
        super().__init__(manifest)
        self.strategy = strategy
        self.round = strategy.rounds
        self.clip = strategy.clip  # C of this round, fixed when it starts
        self.sites = 0
        self.unclipped = 0
        self._checked: bool | None = None  # last correction's "norm <= C", until commit
        self._written = False

    def fold_weight(self, num_examples: int) -> float:
        return 1.0  # every site counts once: the sensitivity is per site

    def correction(self, *, norm: float, weight: float) -> float:
        """``weight·(min(1, C/norm) - 1)``: fold the update with this to clip it to C."""
        if math.isnan(norm) or norm < 0:
            raise ValueError(f"an update's norm must be >= 0, got {norm}")
        self._checked = norm <= self.clip
        if self._checked:
            return 0.0
        return weight * (self.clip / norm - 1.0)  # norm = inf: the update is removed

    def commit(self, *, weight: float) -> None:
        if self._checked is None:
            raise RuntimeError("DP-FedAvg commits only updates whose norm correction() checked")
        if weight != 1.0:
            raise ValueError(f"DP-FedAvg updates have weight 1 (fold_weight), got {weight}")
        self.unclipped += int(self._checked)
        self._checked = None
        self.sites += 1
        super().commit(weight=weight)

    def fold_sum(
        self, segments: Iterable[Segment], *, weight: float, updates: int, within_clip: int
    ) -> None:
        """The secure sum of ``updates`` updates the sites clipped to this round's C."""
        if self.sites:
            raise RuntimeError("a secure sum is the whole round's: nothing else is folded")
        for segment in segments:
            FedAvgAggregate.fold(self, segment, weight=1.0)
        self.sites, self.unclipped = updates, within_clip
        self._total_weight = float(updates)

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        """base + (Σ clipped updates + N(0, (z_Δ·C)²)) / n, then the strategy's next C."""
        if self.sites <= 0:
            raise ValueError("DP-FedAvg needs at least one committed update")
        if self._written:
            raise RuntimeError("this round's result was written already (the noise is spent)")
        self._written = True
        z_sum, _ = self.strategy.settings.noise(self.sites)
        std = z_sum * self.clip
        rng = self.strategy.rng(self.round, _MODEL_NOISE)
        for spec, total in zip(self.manifest.tensors, self._sums, strict=True):
            src = base[spec.name].reshape(-1)
            dst = out[spec.name].reshape(-1)
            for start in range(0, spec.numel, _SLICE):  # bounded float64 temporaries
                end = min(start + _SLICE, spec.numel)
                mean = total[start:end].astype(np.float64)
                if std:
                    noise = rng.standard_normal(end - start)
                    noise *= std
                    mean += noise
                    del noise
                mean /= self.sites
                mean += src[start:end]
                with np.errstate(over="ignore"):  # inf, which GlobalModel refuses
                    dst[start:end] = mean
        self.strategy.finish_round(self)
