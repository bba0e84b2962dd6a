"""ε of the Poisson-subsampled Gaussian mechanism, and the noise for a target ε.

Accountants (``fedsov.privacy.accountant.ACCOUNTANTS``):

- ``pld``: privacy-loss distributions (dp-accounting), *replace-one* neighbours: what
  a site reports, since it publishes its example count;

and, for *add/remove-one* neighbours (to compare with papers and Opacus):

- ``rdp``: Rényi DP (Mironov 2017) with Opacus' tight conversion to (ε, δ);
- ``prv``: privacy random variables (Gopi et al. 2021), Opacus' default, computed
  here with ε error 1e-3;
- ``rdp-classic``: RDP with the classic conversion ε = min_α RDP(α) + log(1/δ)/(α-1)
  over TF-Privacy's orders, to compare with older papers (TF-Privacy's
  ``compute_dp_sgd_privacy`` reports 2.92 for σ=1.12, 60 epochs of 256 of 60,000).
"""

from __future__ import annotations

from fedsov.exceptions import ConfigError
from fedsov.privacy.accountant import ACCOUNTANTS, MechanismStep, compute_epsilon

__all__ = ["calibrate_noise", "epsilon"]

PRV_EPS_ERROR = 1e-3


def _check(*, sample_rate: float, steps: int, delta: float, accountant: str) -> None:
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")
    if not 0 < sample_rate <= 1:
        raise ConfigError(f"sample rate must be in (0, 1], got {sample_rate}")
    if steps < 0:
        raise ConfigError(f"steps must be >= 0, got {steps}")
    if not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta}")


def epsilon(
    *,
    sample_rate: float,
    noise_multiplier: float,
    steps: int,
    delta: float,
    accountant: str = "pld",
) -> float:
    """ε after ``steps`` Poisson-sampled Gaussian steps (inf without noise)."""
    _check(sample_rate=sample_rate, steps=steps, delta=delta, accountant=accountant)
    return compute_epsilon(
        history=[MechanismStep(noise_multiplier, sample_rate, steps)],
        delta=delta,
        accountant=accountant,
        eps_error=PRV_EPS_ERROR if accountant == "prv" else None,
    )


def calibrate_noise(
    *,
    target_epsilon: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str = "pld",
    tolerance: float = 1e-3,
) -> float:
    """The smallest noise multiplier (within ``tolerance``) whose ε is <= the target."""
    _check(sample_rate=sample_rate, steps=steps, delta=delta, accountant=accountant)
    if not target_epsilon > 0:
        raise ConfigError(f"target epsilon must be > 0, got {target_epsilon}")

    def eps(sigma: float) -> float:
        return epsilon(
            sample_rate=sample_rate,
            noise_multiplier=sigma,
            steps=steps,
            delta=delta,
            accountant=accountant,
        )

    low, high = 0.0, 1.0
    while eps(high) > target_epsilon:
        low, high = high, high * 2
        if high > 1e4:
            raise ConfigError(f"no noise multiplier up to 1e4 reaches ε = {target_epsilon}")
    while high - low > tolerance * high:
        mid = (low + high) / 2
        if eps(mid) > target_epsilon:
            low = mid
        else:
            high = mid
    return high
