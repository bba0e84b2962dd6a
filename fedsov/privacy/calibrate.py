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

Noise is calibrated by the libraries, each with its own tolerance: dp-accounting's
``calibrate_dp_mechanism`` for ``pld`` and Opacus' ``get_noise_multiplier`` for the
others (see ``calibrate_noise``).
"""

from __future__ import annotations

from fedsov.exceptions import ConfigError
from fedsov.privacy.accountant import MechanismStep, compute_epsilon, create_accountant

__all__ = ["calibrate_noise", "epsilon"]

PRV_EPS_ERROR = 1e-3


def _check(*, sample_rate: float, steps: int, delta: float, accountant: str) -> None:
    create_accountant(accountant)  # a ConfigError naming them unless it is one
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
        eps_error=PRV_EPS_ERROR,  # only prv has one
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
    """The smallest noise multiplier (within ``tolerance``) whose ε is <= the target.

    The libraries measure ``tolerance`` differently (a bisection on σ here measured it
    relative to σ before):

    - ``pld``: dp-accounting's ``calibrate_dp_mechanism`` (Brent's method), absolute
      in σ: σ* <= σ <= σ* + tolerance, σ* the smallest σ that reaches the target;
    - ``prv``, ``rdp``, ``rdp-classic``: Opacus' ``get_noise_multiplier`` (bisection on
      σ until ε is close enough), relative in ε: target·(1 - tolerance) <= ε(σ) < target.

    Either way ε(σ) <= ``target_epsilon``. No steps need no noise (0).
    """
    _check(sample_rate=sample_rate, steps=steps, delta=delta, accountant=accountant)
    if not target_epsilon > 0:
        raise ConfigError(f"target epsilon must be > 0, got {target_epsilon}")
    if steps == 0:
        return 0.0
    return create_accountant(accountant).noise_multiplier(
        target_epsilon=target_epsilon,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        tolerance=tolerance,
        eps_error=PRV_EPS_ERROR,
    )
