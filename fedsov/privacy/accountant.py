"""Privacy accounting for DP-SGD: epsilon of a history of Poisson-sampled Gaussian steps.

Neighbouring datasets: a site publishes its exact example count N (it weights the
average and fixes q and the number of steps), so the honest relation is *replace one
record* with N public. ``pld`` (Google's dp-accounting, privacy-loss distributions,
pessimistic discretisation: an upper bound) accounts exactly that and is the only
accountant a site may use. ``prv``, ``rdp`` and ``rdp-classic`` account *add or remove
one record* and are kept to compare with papers and Opacus (``fedsov privacy epsilon``).
``gdp`` was removed: it is not an upper bound.

Accountants are named in configs and on the command line; ``create_accountant(name)``
(as in Opacus) returns the object that computes ε for that name and calibrates noise
to a target ε. Adding an accountant is one entry in ``_REGISTRY``.

The libraries are imported when an accountant first computes, not with this module: a
site opens its privacy ledger before it joins, and dp-accounting (scipy) takes seconds
to import, Opacus (torch) hundreds of MB (see docs/architecture.md, "Light imports").
"""

from __future__ import annotations

import functools
import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsov.exceptions import ConfigError

if TYPE_CHECKING:
    from dp_accounting.pld.pld_privacy_accountant import PLDAccountant

__all__ = [
    "ACCOUNTANTS",
    "NEIGHBOURS",
    "SITE_ACCOUNTANTS",
    "Accountant",
    "MechanismStep",
    "check_site_accountant",
    "compute_epsilon",
    "create_accountant",
    "merge_history",
]

PLD_DISCRETIZATION = 1e-3
"""dp-accounting's value discretisation: pessimistic (ε only rounds up); within 0.02% of
1e-4 on the quickstart's and the tests' settings, and ~10x faster."""

MAX_NOISE_MULTIPLIER = 1e4
"""Calibration looks for σ up to this (the messages say "1e4")."""

History = tuple[tuple[float, float, int], ...]
"""A validated, merged history: ``(sigma, q, steps)`` per entry, as Opacus keeps it."""


@dataclass(frozen=True)
class MechanismStep:
    """``steps`` releases of the subsampled Gaussian mechanism with the same parameters."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        sigma, q, steps = self.noise_multiplier, self.sample_rate, self.steps
        if isinstance(sigma, bool) or not isinstance(sigma, int | float):
            sigma = math.nan  # rejected below with the value given
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ConfigError(
                f"noise_multiplier must be a finite number >= 0, got {self.noise_multiplier!r}"
            )
        if isinstance(q, bool) or not isinstance(q, int | float) or not 0 < q <= 1:
            raise ConfigError(f"sample_rate must be in (0, 1], got {self.sample_rate!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ConfigError(f"steps must be an integer >= 0, got {self.steps!r}")


@contextmanager
def _quiet() -> Iterator[None]:
    """Opacus' PRV takes log(0) at sample rate 1 on a branch it then discards, and RDP
    warns when the best order is its largest; dp-accounting's PLD search for ε divides
    by a lower mass that can vanish (large q, many steps): the inf this overflows to is
    what its comparison means. None of it is an error."""
    with (
        np.errstate(divide="ignore", invalid="ignore", over="ignore"),
        warnings.catch_warnings(),
    ):
        warnings.filterwarnings("ignore", "Optimal order is the largest alpha")
        yield


def _upper_bound(eps: float) -> float:
    """Never report less privacy loss than there may be: nan is inf, ε is >= 0."""
    return math.inf if math.isnan(eps) else max(eps, 0.0)


def _no_noise_reaches(target_epsilon: float) -> ConfigError:
    return ConfigError(f"no noise multiplier up to 1e4 reaches ε = {target_epsilon}")


@dataclass(frozen=True)
class Accountant(ABC):
    """A way to account the Poisson-subsampled Gaussian mechanism."""

    name: str
    neighbours: str  # "replace-one" or "add-remove"

    @abstractmethod
    def epsilon(self, history: History, delta: float, eps_error: float | None = None) -> float:
        """ε at ``delta`` of a non-empty history with noise (``eps_error``: PRV's)."""

    @abstractmethod
    def noise_multiplier(
        self,
        *,
        target_epsilon: float,
        sample_rate: float,
        steps: int,
        delta: float,
        tolerance: float,
        eps_error: float | None = None,
    ) -> float:
        """The smallest σ (within ``tolerance``) whose ε after ``steps`` is <= the target."""


@dataclass(frozen=True)
class PldAccountant(Accountant):
    """Google's dp-accounting, privacy-loss distributions (pessimistic: an upper bound)."""

    discretization: float = PLD_DISCRETIZATION

    def _fresh(self) -> PLDAccountant:
        from dp_accounting.pld.pld_privacy_accountant import PLDAccountant
        from dp_accounting.privacy_accountant import NeighboringRelation

        relation = (
            NeighboringRelation.REPLACE_ONE
            if self.neighbours == "replace-one"
            else NeighboringRelation.ADD_OR_REMOVE_ONE
        )
        return PLDAccountant(relation, value_discretization_interval=self.discretization)

    def epsilon(self, history: History, delta: float, eps_error: float | None = None) -> float:
        from dp_accounting import dp_event

        acct = self._fresh()
        for sigma, q, steps in history:
            acct.compose(dp_event.PoissonSampledDpEvent(q, dp_event.GaussianDpEvent(sigma)), steps)
        with _quiet():
            return _upper_bound(float(acct.get_epsilon(delta)))

    def noise_multiplier(
        self,
        *,
        target_epsilon: float,
        sample_rate: float,
        steps: int,
        delta: float,
        tolerance: float,
        eps_error: float | None = None,
    ) -> float:
        """dp-accounting's ``calibrate_dp_mechanism`` (Brent's method): its tolerance is
        absolute, in σ: the result σ has ε(σ) <= target and σ* <= σ <= σ* + tolerance."""
        from dp_accounting import dp_event
        from dp_accounting.mechanism_calibration import (
            NoBracketIntervalFoundError,
            calibrate_dp_mechanism,
        )

        def event(sigma: float) -> dp_event.DpEvent:
            gaussian = dp_event.GaussianDpEvent(sigma)
            return dp_event.SelfComposedDpEvent(
                dp_event.PoissonSampledDpEvent(sample_rate, gaussian), steps
            )

        try:
            with _quiet():
                sigma = float(
                    calibrate_dp_mechanism(self._fresh, event, target_epsilon, delta, tol=tolerance)
                )
        except NoBracketIntervalFoundError as exc:
            raise _no_noise_reaches(target_epsilon) from exc
        if sigma > MAX_NOISE_MULTIPLIER:
            raise _no_noise_reaches(target_epsilon)
        return sigma


@dataclass(frozen=True)
class OpacusAccountant(Accountant):
    """An accountant of Opacus' registry (``opacus.accountants.create_accountant``)."""

    def epsilon(self, history: History, delta: float, eps_error: float | None = None) -> float:
        from fedsov.privacy.opacus_accountants import create_opacus_accountant

        acct = create_opacus_accountant(mechanism=self.name)
        acct.history = list(history)
        kwargs = {"eps_error": eps_error} if eps_error is not None else {}
        with _quiet():
            return _upper_bound(float(acct.get_epsilon(delta=delta, **kwargs)))

    def noise_multiplier(
        self,
        *,
        target_epsilon: float,
        sample_rate: float,
        steps: int,
        delta: float,
        tolerance: float,
        eps_error: float | None = None,
    ) -> float:
        """Opacus' ``get_noise_multiplier`` (bisection): its tolerance is on ε, here
        relative: ε(σ) in [target·(1 - tolerance), target)."""
        from fedsov.privacy.opacus_accountants import get_noise_multiplier

        kwargs: dict[str, Any] = {"eps_error": eps_error} if eps_error is not None else {}
        try:
            with _quiet():
                sigma = float(
                    get_noise_multiplier(
                        target_epsilon=target_epsilon,
                        target_delta=delta,
                        sample_rate=sample_rate,
                        steps=steps,
                        accountant=self.name,
                        epsilon_tolerance=tolerance * target_epsilon,
                        **kwargs,
                    )
                )
        except ValueError as exc:  # "The privacy budget is too low." (σ over 1e6)
            raise _no_noise_reaches(target_epsilon) from exc
        if sigma > MAX_NOISE_MULTIPLIER:
            raise _no_noise_reaches(target_epsilon)
        return sigma


_REGISTRY: dict[str, Accountant] = {
    a.name: a
    for a in (
        PldAccountant("pld", "replace-one"),
        OpacusAccountant("prv", "add-remove"),
        OpacusAccountant("rdp", "add-remove"),
        OpacusAccountant("rdp-classic", "add-remove"),
    )
}
"""``pld``: dp-accounting's PLD accountant, replace-one. ``prv``, ``rdp``: Opacus'
accountants. ``rdp-classic``: Opacus' RDP with the classic conversion."""

ACCOUNTANTS = tuple(_REGISTRY)
NEIGHBOURS = {name: a.neighbours for name, a in _REGISTRY.items()}
"""Each accountant and the neighbouring relation its ε is for."""
SITE_ACCOUNTANTS = tuple(name for name, a in _REGISTRY.items() if a.neighbours == "replace-one")
"""What a site may account with: its example count is public, so replace-one only."""


def create_accountant(name: object) -> Accountant:
    """The accountant called ``name`` (a ConfigError that lists them if none is)."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"accountant must be one of {', '.join(ACCOUNTANTS)}, got {name!r}")
    return _REGISTRY[name]


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
    acct = create_accountant(accountant)
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta < 1:
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
    return _epsilon(acct, key, float(delta), eps_error)


@functools.lru_cache(maxsize=256)
def _epsilon(
    accountant: Accountant, history: History, delta: float, eps_error: float | None
) -> float:
    """Epsilon for a validated, merged history (cached: PRV and PLD take ~0.1-0.5 s)."""
    return accountant.epsilon(history, delta, eps_error)
