"""Federated evaluation under DP: what a site releases of its metrics, and how the
releases of many sites add up on their way to the coordinator.

With ``[training] evaluate = true`` every site scores the global model it received on
its local data before it trains, and sends, in its update's header, each metric as a
noised sum over its examples (``eval/<name>``) beside its public example count
(``eval/<name>/n``). Upstream, sums and counts add (a region exports the sums of its
sites); the coordinator divides. A metric is released through the Gaussian mechanism:

- ``unit = "record"`` (fedsov's own trainer): each record's value is clipped to
  [low, high]; v = n·(mean - low)/(high - low) moves by at most 1 per metric when one
  record is replaced, so by √k for k metrics;
- ``unit = "dataset"`` (a Flower app, whose code fedsov cannot vouch for): the app's
  mean is clipped to [low, high]; v = (mean - low)/(high - low) moves by at most 1 per
  metric whatever happens to the whole dataset, so by √k.

Either way N(0, (z·√k/2)²) is added to each v: a Gaussian mechanism of sensitivity
2C with std z·C (C = √k/2), which the site's replace-one accountant counts as the
step (σ = z, q = 1, 1 step), as it counts an update-level release. The noise is
Opacus' floating-point-attack-resistant draw from a generator seeded from the OS
CSPRNG.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from fedsov.exceptions import ConfigError

__all__ = [
    "EVAL_PREFIX",
    "MAX_EVAL_METRICS",
    "EvalOutcome",
    "MetricValue",
    "federated_means",
    "is_eval_key",
    "release",
    "sum_releases",
]

EVAL_PREFIX = "eval/"
MAX_EVAL_METRICS = 8  # an upstream keeps no more of a header's eval/ metrics than this
_COUNT = "/n"


@dataclass(frozen=True)
class MetricValue:
    """One metric of one site: the mean over its ``examples`` of values in [low, high]."""

    name: str
    mean: float
    low: float
    high: float

    def normalized(self, examples: int, per_record: bool) -> float:
        """v of the module docstring: in [0, n] per record, in [0, 1] per dataset."""
        span = self.high - self.low
        clipped = min(max(self.mean, self.low), self.high)
        fraction = (clipped - self.low) / span
        return examples * fraction if per_record else fraction


@dataclass(frozen=True)
class EvalOutcome:
    """A site's metrics of the model it received, before any noise."""

    metrics: tuple[MetricValue, ...]
    examples: int  # public: the count the site publishes with its update
    unit: str  # "record" (values clipped per record) or "dataset" (the app's means)


def _check(outcome: EvalOutcome) -> None:
    if not outcome.metrics or len(outcome.metrics) > MAX_EVAL_METRICS:
        raise ConfigError(f"an evaluation releases 1 to {MAX_EVAL_METRICS} metrics")
    for m in outcome.metrics:
        if "/" in m.name or not m.name:
            raise ConfigError(f"evaluation metric {m.name!r}: a name without '/'")
        if not (math.isfinite(m.low) and math.isfinite(m.high) and m.low < m.high):
            raise ConfigError(f"evaluation metric {m.name!r}: needs low < high, both finite")
    if outcome.examples < 1:
        raise ConfigError("an evaluation needs at least one example")


def release(outcome: EvalOutcome, *, noise_multiplier: float | None, seed: int) -> dict[str, float]:
    """The header metrics ``outcome`` becomes: noised sums and counts. No noise when
    ``noise_multiplier`` is None (DP off: nothing is claimed)."""
    _check(outcome)
    per_record = outcome.unit == "record"
    n = outcome.examples
    values = [m.normalized(n, per_record) for m in outcome.metrics]
    if noise_multiplier is not None:
        values = _noised(values, std=noise_multiplier * math.sqrt(len(values)) / 2, seed=seed)
    out: dict[str, float] = {}
    for m, v in zip(outcome.metrics, values, strict=True):
        span = m.high - m.low
        mean = m.low + span * (v / n if per_record else v)
        out[f"{EVAL_PREFIX}{m.name}"] = n * mean
        out[f"{EVAL_PREFIX}{m.name}{_COUNT}"] = float(n)
    return out


def _noised(values: Sequence[float], *, std: float, seed: int) -> list[float]:
    import torch
    from opacus.optimizers.optimizer import _generate_noise

    generator = torch.Generator().manual_seed(seed)
    reference = torch.tensor(list(values), dtype=torch.float64)
    noise = _generate_noise(std, reference, generator=generator, secure_mode=True)
    return [float(v) for v in reference + noise]


def is_eval_key(key: str) -> bool:
    return key.startswith(EVAL_PREFIX)


def sum_releases(
    releases: Iterable[Mapping[str, float]], *, max_count: float = math.inf
) -> dict[str, float]:
    """Every ``eval/`` sum and count of ``releases`` added up (what a region exports).
    Only finite values count, at most MAX_EVAL_METRICS metrics per release, and none
    whose count exceeds ``max_count`` (a header's own example count)."""
    total: dict[str, float] = {}
    for metrics in releases:
        for name, (s, n) in _pairs(metrics).items():
            if n > max_count:
                continue
            total[f"{EVAL_PREFIX}{name}"] = total.get(f"{EVAL_PREFIX}{name}", 0.0) + s
            key = f"{EVAL_PREFIX}{name}{_COUNT}"
            total[key] = total.get(key, 0.0) + n
    return total


def federated_means(releases: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Each metric's mean over every example behind ``releases``, and its count
    (``<name>/examples``)."""
    out: dict[str, float] = {}
    for name, (s, n) in _pairs(sum_releases(releases)).items():
        out[name] = s / n
        out[f"{name}/examples"] = n
    return out


def _pairs(metrics: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """{name: (sum, count)} of the ``eval/`` metrics with a finite sum and count >= 1."""
    pairs: dict[str, tuple[float, float]] = {}
    for key, value in metrics.items():
        if not is_eval_key(key) or key.endswith(_COUNT):
            continue
        count = metrics.get(key + _COUNT)
        if count is None or not (math.isfinite(value) and math.isfinite(count)) or count < 1:
            continue
        pairs[key[len(EVAL_PREFIX) :]] = (float(value), float(count))
        if len(pairs) == MAX_EVAL_METRICS:
            break
    return pairs
