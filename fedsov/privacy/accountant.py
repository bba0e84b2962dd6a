"""Privacy accounting for DP-SGD: epsilon of a history of Poisson-sampled Gaussian steps.

Neighbouring datasets: a site publishes its exact example count N (it weights the
average and fixes q and the number of steps), so the honest relation is *replace one
record* with N public. ``pld`` (Google's dp-accounting, privacy-loss distributions,
pessimistic discretisation: an upper bound) accounts exactly that and is the only
accountant a site may use. ``prv``, ``rdp`` and ``rdp-classic`` account *add or remove
one record* and are kept to compare with papers and Opacus (``fedsov privacy epsilon``).
``gdp`` was removed: it is not an upper bound.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from dp_accounting import dp_event
from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
from dp_accounting.privacy_accountant import NeighboringRelation
from opacus.accountants import create_accountant
from opacus.accountants.analysis.rdp import compute_rdp

from fedsov.exceptions import ConfigError

__all__ = [
    "ACCOUNTANTS",
    "NEIGHBOURS",
    "SITE_ACCOUNTANTS",
    "MechanismStep",
    "check_site_accountant",
    "compute_epsilon",
    "merge_history",
]

NEIGHBOURS = {
    "pld": "replace-one",
    "prv": "add-remove",
    "rdp": "add-remove",
    "rdp-classic": "add-remove",
}
"""Each accountant and the neighbouring relation its ε is for. ``pld``: dp-accounting's
PLD accountant, replace-one. ``prv``, ``rdp``: Opacus' accountants. ``rdp-classic``: RDP
with the classic conversion ε = min over orders a of RDP(a) + log(1/δ)/(a-1), over
TF-Privacy's orders, to compare with older papers."""

ACCOUNTANTS = tuple(NEIGHBOURS)
SITE_ACCOUNTANTS = ("pld",)
"""What a site may account with: its example count is public, so replace-one only."""

PLD_DISCRETIZATION = 1e-3
"""dp-accounting's value discretisation: pessimistic (ε only rounds up); within 0.02% of
1e-4 on the quickstart's and the tests' settings, and ~10x faster."""

TF_PRIVACY_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


@dataclass(frozen=True)
class MechanismStep:
    """``steps`` releases of the subsampled Gaussian mechanism with the same parameters."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not _is_real(self.noise_multiplier) or not (
            math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0
        ):
            raise ConfigError(
                f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier!r}"
            )
        if not _is_real(self.sample_rate) or not 0 < self.sample_rate <= 1:
            raise ConfigError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise ConfigError(f"steps must be an integer >= 0, got {self.steps!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_site_accountant(accountant: object) -> str:
    """``accountant`` if a site may report ε with it; a ConfigError that says why not."""
    if accountant == "gdp":
        raise ConfigError(
            "accountant: gdp was removed, it can under-report ε (it is not an upper bound); "
            "use 'pld'"
        )
    if accountant in NEIGHBOURS and accountant not in SITE_ACCOUNTANTS:
        raise ConfigError(
            f"accountant: {accountant!r} accounts add/remove-one neighbours, but a site "
            "publishes its example count, so only replace-one accounting is honest: use 'pld'"
        )
    if accountant not in SITE_ACCOUNTANTS:
        raise ConfigError(
            f"accountant must be one of {', '.join(SITE_ACCOUNTANTS)}, got {accountant!r}"
        )
    return str(accountant)


def merge_history(history: Sequence[MechanismStep]) -> list[MechanismStep]:
    """Drop zero-step entries and merge neighbours with equal ``(sigma, q)``."""
    merged: list[MechanismStep] = []
    for step in history:
        if step.steps == 0:
            continue
        last = merged[-1] if merged else None
        if (
            last is not None
            and last.noise_multiplier == step.noise_multiplier
            and last.sample_rate == step.sample_rate
        ):
            merged[-1] = MechanismStep(
                noise_multiplier=last.noise_multiplier,
                sample_rate=last.sample_rate,
                steps=last.steps + step.steps,
            )
        else:
            merged.append(step)
    return merged


def compute_epsilon(
    *,
    history: Sequence[MechanismStep],
    delta: float,
    accountant: str = "pld",
    eps_error: float | None = None,
) -> float:
    """Epsilon at ``delta`` after ``history`` (0 if empty, inf if any step had sigma 0)."""
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")
    if not _is_real(delta) or not 0 < delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    for step in history:
        if not isinstance(step, MechanismStep):
            raise ConfigError(f"history entries must be MechanismStep, got {type(step).__name__}")
    steps = merge_history(history)
    if not steps:
        return 0.0
    if any(s.noise_multiplier == 0 for s in steps):
        return math.inf
    key = tuple((float(s.noise_multiplier), float(s.sample_rate), s.steps) for s in steps)
    return _epsilon(key, float(delta), accountant, eps_error)


@functools.lru_cache(maxsize=256)
def _epsilon(
    history: tuple[tuple[float, float, int], ...],
    delta: float,
    accountant: str,
    eps_error: float | None,
) -> float:
    """Epsilon for a validated, merged history (cached: PRV and PLD take ~0.1-0.5 s)."""
    if accountant == "pld":
        return _pld_epsilon(history, delta)
    if accountant == "rdp-classic":
        orders = np.array(TF_PRIVACY_ORDERS)
        rdp = sum(
            compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=TF_PRIVACY_ORDERS)
            for sigma, q, steps in history
        )
        return float(np.min(rdp + math.log(1 / delta) / (orders - 1)))
    acct = create_accountant(mechanism=accountant)
    acct.history = list(history)
    # sample_rate 1 makes the PRV analysis take log(0) on a branch it then discards.
    kwargs = {"eps_error": eps_error} if eps_error is not None else {}
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Optimal order is the largest alpha")
        eps = float(acct.get_epsilon(delta=delta, **kwargs))
    if math.isnan(eps):
        return math.inf  # never report less privacy loss than there may be
    return max(eps, 0.0)


def _pld_epsilon(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """dp-accounting's PLD ε for replace-one neighbours (an upper bound)."""
    acct = PLDAccountant(
        NeighboringRelation.REPLACE_ONE, value_discretization_interval=PLD_DISCRETIZATION
    )
    for sigma, q, steps in history:
        acct.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
    # Its search for ε divides by a lower mass that can vanish (large q, many steps):
    # the inf this overflows to is what its comparison means, not an error.
    with np.errstate(over="ignore"):
        eps = float(acct.get_epsilon(delta))
    if math.isnan(eps):
        return math.inf
    return max(eps, 0.0)
