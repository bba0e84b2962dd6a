"""DP-FedAvg with adaptive clipping: site-level DP at the regional tier.

McMahan et al. 2018 ("Learning Differentially Private Recurrent Language Models"):
each site's update is clipped to L2 norm C, every site counts once, and Gaussian
noise of standard deviation z·C is added to the sum before it is averaged.

Andrew et al. 2021 ("Differentially Private Learning with Adaptive Clipping"):
C follows the target quantile γ of the update norms, C <- C·exp(-η(b̃ - γ)), where
b̃ is the fraction of unclipped updates released with Gaussian noise σ_b. So that
the two releases together cost what noise multiplier z alone would, the sum gets
z_Δ = (z^-2 - (2σ_b)^-2)^(-1/2) (their Theorem 1). σ_b defaults to n/20 as in the
paper, raised to z where fewer sites would make z_Δ undefined.

Memory stays O(model): sums are folded chunk by chunk (the round engine replays a
too-long update from its spool with the clipping correction) and noise is drawn
slice by slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fedsov.codec import Manifest
from fedsov.exceptions import ConfigError
from fedsov.strategy.base import Strategy
from fedsov.strategy.fedavg import FedAvgAggregate

__all__ = ["DPFedAvg", "DPFedAvgAggregate", "RoundStats", "SiteDPSettings", "adaptive_noise"]

_SLICE = 1 << 20


@dataclass(frozen=True)
class SiteDPSettings:
    clip: float
    noise_multiplier: float
    adaptive: bool = False
    target_quantile: float = 0.5
    clip_learning_rate: float = 0.2
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if not self.clip > 0:
            raise ConfigError(f"site_dp.clip must be > 0, got {self.clip}")
        if not self.noise_multiplier >= 0:
            raise ConfigError(f"site_dp.noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not 0 <= self.target_quantile <= 1:
            raise ConfigError(
                f"site_dp.target_quantile must be in [0, 1], got {self.target_quantile}"
            )
        if not 0 < self.delta < 1:
            raise ConfigError(f"site_dp.delta must be in (0, 1), got {self.delta}")


def adaptive_noise(noise_multiplier: float, sites: int) -> tuple[float, float]:
    """(z_Δ for the sum, σ_b for the clipped count) so that both together cost z."""
    z = noise_multiplier
    if z == 0:
        return 0.0, 0.0
    sigma_b = max(sites / 20.0, z)
    return (z**-2 - (2 * sigma_b) ** -2) ** -0.5, sigma_b


@dataclass(frozen=True)
class RoundStats:
    sites: int
    unclipped: int
    clip: float  # C used this round
    noise_std: float  # of the noise on the sum, per coordinate
    next_clip: float


class DPFedAvg(Strategy):
    """Keeps the clipping norm (adaptive across rounds) and a seeded noise source."""

    name = "dp-fedavg"

    def __init__(self, settings: SiteDPSettings, *, seed: int) -> None:
        self.settings = settings
        self.clip = settings.clip
        self.seed = seed
        self.rounds = 0
        self.last_round: RoundStats | None = None

    def start_round(self, manifest: Manifest) -> DPFedAvgAggregate:
        return DPFedAvgAggregate(self, manifest)

    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.rounds, stream])

    def finish_round(self, *, sites: int, unclipped: int, noise_std: float) -> None:
        s = self.settings
        used = self.clip
        if s.adaptive and sites:
            _, sigma_b = adaptive_noise(s.noise_multiplier, sites)
            noisy = (unclipped + self._rng(1).normal(0.0, sigma_b)) / sites
            self.clip = used * math.exp(-s.clip_learning_rate * (noisy - s.target_quantile))
        self.last_round = RoundStats(sites, unclipped, used, noise_std, self.clip)
        self.rounds += 1


class DPFedAvgAggregate(FedAvgAggregate):
    needs_norm = True

    def __init__(self, strategy: DPFedAvg, manifest: Manifest) -> None:
        super().__init__(manifest)
        self.strategy = strategy
        self.clip = strategy.clip
        self.unclipped = 0

    def fold_weight(self, num_examples: int) -> float:
        return 1.0  # every site counts once: the sensitivity is per site

    def correction(self, *, norm: float, weight: float) -> float:
        if norm <= self.clip:
            self.unclipped += 1
            return 0.0
        return weight * (self.clip / norm - 1.0)

    def write_result(self, base: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        sites = round(self.total_weight)
        if sites <= 0:
            raise ValueError("DP-FedAvg needs at least one committed update")
        s = self.strategy.settings
        z = adaptive_noise(s.noise_multiplier, sites)[0] if s.adaptive else s.noise_multiplier
        std = z * self.clip
        rng = self.strategy._rng(0)
        for spec, total in zip(self.manifest.tensors, self._sums, strict=True):
            src = base[spec.name].reshape(-1)
            dst = out[spec.name].reshape(-1)
            for start in range(0, spec.numel, _SLICE):
                end = min(start + _SLICE, spec.numel)
                mean = total[start:end].astype(np.float64)
                if std:
                    mean += rng.normal(0.0, std, size=end - start)
                mean /= sites
                mean += src[start:end]
                dst[start:end] = mean
        self.strategy.finish_round(sites=sites, unclipped=self.unclipped, noise_std=std)
