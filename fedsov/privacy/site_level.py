"""Site-level privacy accounting of what a regional aggregator exports (DP-FedAvg).

A region releases, each round, the clipped sum of its sites' updates plus Gaussian
noise of standard deviation z·C (C the clip norm; with adaptive clipping the noisy
clipped count is inside z, Andrew et al. 2021, Theorem 1). Two views:

* ``SiteLevelLedger.epsilon``: each round is the Poisson-subsampled Gaussian mechanism
  with multiplier z and rate q = sites this round / sites in the region, under
  add/remove-one neighbours, via ``fedsov.privacy.accountant.compute_epsilon``.
  This is the convention of McMahan et al. 2018 and Andrew et al. 2021; it assumes
  the number of sites is not released, which dividing by the realised count
  (``DPFedAvg``) does not honour.
* ``fixed_size_epsilon`` / ``SiteLevelLedger.fixed_size_epsilon``: exactly m of n sites
  a round, sampled without replacement, under replace-one neighbours (n and m
  public, so dividing by the realised count costs nothing). Replacing one site moves
  the clipped sum by up to 2C, so the mechanism's multiplier is z/2. RDP of the
  subsampled Gaussian from Wang, Balle & Kasiviswanathan 2019 ("Subsampled Rényi
  Differential Privacy and Analytical Moments Accountant", AISTATS): Theorem 9, and
  for integer orders up to 256 its refinement with forward differences (Theorem 27
  of arXiv:1808.00087v2), as in Google's dp-accounting. Fractional orders
  interpolate the cumulant bound linearly (their Corollary 10). RDP is converted
  to (ε, δ) with Canonne, Kamath & Steinke 2020, Proposition 12 (as dp-accounting
  and Opacus do).

The forward differences Δ^k of g(α) = exp((α-1)·ε_G(α)), ε_G the Gaussian's RDP, are
E_Q[(L-1)^k] for the likelihood ratio L of N(1, σ²) to N(0, σ²). For even k that is
the integral of a positive function, which is computed by quadrature in log space:
no cancellation, unlike the alternating binomial sum. That is why this is not left to
dp-accounting (0.6), whose ``RdpAccountant`` computes the same bound with that sum: for
σ >= 10 (z >= 20) its differences lose all precision (at σ = 10, log Δ^64 is 8.7 for
an exact -16.1) and it over-reports ε up to 3x; for σ <= 5 the two agree to 1e-6
(``tests/privacy/test_site_level.py``).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedsov.exceptions import ConfigError, DataError
from fedsov.fileio import append_record, read_records
from fedsov.privacy.accountant import MechanismStep, compute_epsilon

__all__ = [
    "DEFAULT_ORDERS",
    "SiteLevelLedger",
    "SiteRound",
    "fixed_size_epsilon",
    "fixed_size_rdp",
    "rdp_to_epsilon",
]

DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1 + x / 10.0 for x in range(1, 100)] + list(range(11, 64)) + [128, 256, 512, 1024]
)
"""dp-accounting's default RDP orders."""

_REFINED_MAX_ORDER = 256  # forward-difference refinement up to this integer order
_QUAD_STEP = 0.01  # quadrature step (in units of the Gaussian's standard deviation)
_QUAD_MARGIN = 40.0


def _check_sampling(sample_size: int, population: int) -> None:
    if isinstance(population, bool) or not isinstance(population, int) or population < 1:
        raise ConfigError(f"population must be an integer >= 1, got {population!r}")
    if (
        isinstance(sample_size, bool)
        or not isinstance(sample_size, int)
        or not 1 <= sample_size <= population
    ):
        raise ConfigError(
            f"sample_size must be an integer in [1, population={population}], got {sample_size!r}"
        )


@functools.lru_cache(maxsize=64)
def _log_even_forward_differences(sigma: float, max_k: int) -> tuple[float, ...]:
    """log Δ^k g(0) for k = 0..max_k (odd k: nan, unused), g(a) = exp(a(a-1)/(2σ²)).

    Δ^k g(0) = E[(exp(sZ - s²/2) - 1)^k], Z ~ N(0, 1), s = 1/σ; trapezoidal rule in
    log space over a grid that covers the integrand's peak (near z = k·s).
    """
    s = 1.0 / sigma
    out = [math.nan] * (max_k + 1)
    out[0] = 0.0
    for k in range(2, max_k + 1, 2):
        hi = k * s + _QUAD_MARGIN
        z = np.arange(-_QUAD_MARGIN, hi + _QUAD_STEP, _QUAD_STEP)
        t = s * z - s * s / 2
        with np.errstate(divide="ignore"):  # log 0 at t = 0 is -inf: fine
            log_abs = np.maximum(t, 0.0) + np.log(-np.expm1(-np.abs(t)))  # log|e^t - 1|
        log_f = k * log_abs - z * z / 2 - 0.5 * math.log(2 * math.pi)
        out[k] = _logsumexp(log_f) + math.log(_QUAD_STEP)
    return tuple(out)


def _logsumexp(values: np.ndarray) -> float:
    top = float(np.max(values))
    if top == -math.inf:
        return top
    return top + math.log(float(np.sum(np.exp(values - top))))


_lgamma = np.vectorize(math.lgamma, otypes=[float])


def _log_comb(n: int, k: np.ndarray) -> np.ndarray:
    """log C(n, k), elementwise."""
    return np.asarray(math.lgamma(n + 1) - _lgamma(k + 1) - _lgamma(n - k + 1))


def _log_a_wor(q: float, sigma: float, alpha: int) -> float:
    """log of the bound on E[(p/q)^α] of the subsampled Gaussian, integer α >= 2."""
    if alpha == 1:
        return 0.0
    eps2 = 1.0 / sigma**2  # the Gaussian's RDP at order 2
    i = np.arange(3, alpha + 1)
    cgf = i * (i - 1) / (2 * sigma**2)  # (i-1)·ε_G(i)
    higher = math.log(2) + cgf  # Theorem 9: 2·exp((i-1)ε(i)) (ε(∞) = ∞ for a Gaussian)
    if alpha <= _REFINED_MAX_ORDER:
        d = np.array(_log_even_forward_differences(sigma, _REFINED_MAX_ORDER))
        lo, hi = d[2 * (i // 2)], d[2 * ((i + 1) // 2)]
        higher = np.minimum(higher, math.log(4) + 0.5 * (lo + hi))
    terms = np.concatenate(
        [
            [
                0.0,
                2 * math.log(q)
                + float(_log_comb(alpha, np.array(2)))
                + min(math.log(4) + math.log(math.expm1(eps2)), eps2 + math.log(2)),
            ],
            i * math.log(q) + _log_comb(alpha, i) + higher,
        ]
    )
    return _logsumexp(terms)


def fixed_size_rdp(
    *,
    sigma: float,
    sample_size: int,
    population: int,
    orders: Sequence[float] = DEFAULT_ORDERS,
) -> np.ndarray:
    """RDP, at ``orders``, of a Gaussian release on ``sample_size`` of ``population``
    records drawn without replacement, for replace-one neighbours.

    ``sigma`` is the noise's standard deviation over the release's replace-one L2
    sensitivity (dp-accounting's ``SampledWithoutReplacementDpEvent(population,
    sample_size, GaussianDpEvent(sigma))`` with ``NeighborRel.REPLACE_ONE``).
    """
    _check_sampling(sample_size, population)
    if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"sigma must be a finite number > 0, got {sigma!r}")
    q = sample_size / population
    result = []
    for order in orders:
        alpha = float(order)
        if not alpha > 1:
            raise ConfigError(f"RDP orders must be > 1, got {order!r}")
        if q == 1.0:
            result.append(alpha / (2 * sigma**2))
        elif alpha.is_integer():
            result.append(_log_a_wor(q, sigma, int(alpha)) / (alpha - 1))
        else:  # the cumulant (α-1)·RDP is convex in α: interpolate between integers
            lo, hi = math.floor(alpha), math.ceil(alpha)
            t = alpha - lo
            cgf = (1 - t) * _log_a_wor(q, sigma, lo) + t * _log_a_wor(q, sigma, hi)
            result.append(cgf / (alpha - 1))
    return np.array(result)


def rdp_to_epsilon(orders: Sequence[float], rdp: Sequence[float], delta: float) -> float:
    """Smallest ε over ``orders`` with Canonne, Kamath & Steinke 2020, Proposition 12."""
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    best = math.inf
    for alpha, r in zip(orders, rdp, strict=True):
        if math.isnan(r):
            continue
        if r <= 0 or delta**2 + math.expm1(-r) > 0:
            return 0.0  # KL bound: δ >= sqrt(1 - exp(-r))
        if alpha > 1.01:  # the bound is unstable as α -> 1
            eps = r + math.log1p(-1 / alpha) - math.log(delta * alpha) / (alpha - 1)
            best = min(best, eps)
    return max(best, 0.0)


def fixed_size_epsilon(
    *,
    noise_multiplier: float,
    sample_size: int,
    population: int,
    steps: int,
    delta: float,
) -> float:
    """Site-level ε of ``steps`` DP-FedAvg rounds, each on exactly ``sample_size`` of
    ``population`` sites drawn without replacement (replace-one neighbours).

    ``noise_multiplier`` is DP-FedAvg's z: noise std over the clip norm C. Replacing
    a site moves the clipped sum by up to 2C, so each round is a Gaussian with
    replace-one multiplier z/2. With ``sample_size == population`` that is the
    plain Gaussian mechanism composed over ``steps``.
    """
    if not (
        isinstance(noise_multiplier, int | float)
        and not isinstance(noise_multiplier, bool)
        and math.isfinite(noise_multiplier)
        and noise_multiplier >= 0
    ):
        raise ConfigError(
            f"noise_multiplier must be a finite number >= 0, got {noise_multiplier!r}"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be an integer >= 0, got {steps!r}")
    _check_sampling(sample_size, population)
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return math.inf
    rdp = steps * fixed_size_rdp(
        sigma=noise_multiplier / 2, sample_size=sample_size, population=population
    )
    return rdp_to_epsilon(DEFAULT_ORDERS, rdp.tolist(), delta)


@dataclass(frozen=True)
class SiteRound:
    """One exported round: ``sites`` of the region's ``population`` took part."""

    noise_multiplier: float
    sites: int
    population: int

    def __post_init__(self) -> None:
        MechanismStep(self.noise_multiplier, 1.0, 1)  # validates the multiplier
        _check_sampling(self.sites, self.population)

    @property
    def sample_rate(self) -> float:
        return self.sites / self.population

    def step(self) -> MechanismStep:
        return MechanismStep(self.noise_multiplier, self.sample_rate, 1)


class SiteLevelLedger:
    """A region's exported rounds and their site-level ε.

    With ``path``, every round is appended and fsynced before the export leaves
    (``fedsov.fileio.append_record``) and reloaded on restart, so ε composes across
    runs; a torn last line from a crash is dropped. Each line names the region, its
    jurisdiction and federation, so ``fedsov privacy report`` can read it.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        region: str = "",
        jurisdiction: str = "",
        federation: str = "",
    ) -> None:
        self.path = path
        self.region, self.jurisdiction, self.federation = region, jurisdiction, federation
        self._rounds: list[SiteRound] = []
        self.records: list[dict[str, Any]] = []
        if path is not None:
            try:
                self.records = read_records(path)
                self._rounds = [
                    SiteRound(r["noise_multiplier"], r["sites"], r["population"])
                    for r in self.records
                ]
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}: corrupt site-level ledger: {exc}") from exc

    def record(
        self,
        *,
        noise_multiplier: float,
        sites: int,
        population: int,
        round: int = 0,
        base_sha256: str | None = None,
        delta: float | None = None,
    ) -> SiteRound:
        """Record one exported round (``sites`` of ``population``, multiplier z) of
        upstream round ``round`` over the upstream's model ``base_sha256``."""
        entry = SiteRound(noise_multiplier, sites, population)
        record: dict[str, Any] = {
            "region": self.region,
            "jurisdiction": self.jurisdiction,
            "federation": self.federation,
            "round": round,
            "base_sha256": base_sha256,
            "noise_multiplier": noise_multiplier,
            "sites": sites,
            "population": population,
            "delta": delta,
            "recorded_unix": time.time(),
        }
        if self.path is not None:
            append_record(self.path, record)
        self._rounds.append(entry)
        self.records.append(record)
        return entry

    def has_round(self, round: int, base_sha256: str) -> bool:
        """Whether the export of upstream round ``round`` over model ``base_sha256`` is
        already recorded (the same aggregate, sent again: no new release). Another
        attempt at the round, over another model, is a new release. A record written
        before bases were recorded matches on the round alone."""
        return any(
            r.get("round") == round and r.get("base_sha256") in (None, base_sha256)
            for r in self.records
        )

    @property
    def rounds(self) -> tuple[SiteRound, ...]:
        return tuple(self._rounds)

    @property
    def history(self) -> list[MechanismStep]:
        """``(z, q, 1)`` per round, q = sites / population."""
        return [r.step() for r in self._rounds]

    def epsilon(self, delta: float, accountant: str = "rdp") -> float:
        """ε of the history as Poisson-subsampled Gaussian steps (add/remove-one)."""
        return compute_epsilon(history=self.history, delta=delta, accountant=accountant)

    def fixed_size_epsilon(self, delta: float, extra: Sequence[SiteRound] = ()) -> float:
        """ε for fixed-size sampling without replacement (replace-one, multiplier z/2).

        ``extra``: rounds not yet recorded, to ask what ε would be after them.
        """
        if not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
        rounds = [*self._rounds, *extra]
        if not rounds:
            return 0.0
        if any(r.noise_multiplier == 0 for r in rounds):
            return math.inf
        total = np.zeros(len(DEFAULT_ORDERS))
        counts: dict[SiteRound, int] = {}
        for r in rounds:
            counts[r] = counts.get(r, 0) + 1
        for r, count in counts.items():
            total += count * fixed_size_rdp(
                sigma=r.noise_multiplier / 2, sample_size=r.sites, population=r.population
            )
        return rdp_to_epsilon(DEFAULT_ORDERS, total.tolist(), delta)
