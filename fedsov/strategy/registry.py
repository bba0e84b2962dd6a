"""Strategies by name, so a config can name one: ``create_strategy("dp-fedavg", ...)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsov.config import SecureAggregationSettings, StrategyConfig
from fedsov.exceptions import ConfigError
from fedsov.strategy.base import Strategy
from fedsov.strategy.dp_fedavg import DPFedAvg
from fedsov.strategy.fedavg import FedAvg
from fedsov.strategy.fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi
from fedsov.strategy.fedprox import FedProx
from fedsov.strategy.krum import Bulyan, Krum, MultiKrum
from fedsov.strategy.robust import FedMedian, FedTrimmedAvg

__all__ = [
    "SECURE_STRATEGIES",
    "STRATEGIES",
    "check_secure",
    "check_strategy",
    "create_strategy",
    "strategy_from_config",
]

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    FedAvg.name: FedAvg,
    DPFedAvg.name: DPFedAvg,
    FedProx.name: FedProx,
    FedAdam.name: FedAdam,
    FedYogi.name: FedYogi,
    FedAdagrad.name: FedAdagrad,
    FedAvgM.name: FedAvgM,
    FedMedian.name: FedMedian,
    FedTrimmedAvg.name: FedTrimmedAvg,
    Krum.name: Krum,
    MultiKrum.name: MultiKrum,
    Bulyan.name: Bulyan,
}
"""Name -> constructor. To add a strategy: one module beside this one, one line here."""

SECURE_STRATEGIES = frozenset(
    {FedAvg.name, DPFedAvg.name, FedProx.name, FedAdam.name, FedYogi.name, FedAdagrad.name}
    | {FedAvgM.name}
)
"""The rules that need only the sum of the updates: they run under secure aggregation."""


def create_strategy(name: str, **kwargs: Any) -> Strategy:
    """The strategy called ``name``, built with ``kwargs`` (its constructor's)."""
    try:
        factory = STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ConfigError(f"unknown strategy {name!r} (known: {known})") from None
    return factory(**kwargs)


def strategy_from_config(config: StrategyConfig) -> Strategy:
    """The strategy a ``[strategy]`` table names; ConfigError naming the bad key."""
    if config.name == DPFedAvg.name:
        raise ConfigError(
            "strategy.name: dp-fedavg is configured by [site_dp] in an aggregator's config"
        )
    if config.name not in STRATEGIES:
        known = ", ".join(sorted(set(STRATEGIES) - {DPFedAvg.name}))
        raise ConfigError(f"strategy.name: unknown strategy {config.name!r} (known: {known})")
    return create_strategy(config.name, **config.settings)


def check_strategy(path: Path, strategy: StrategyConfig, *, key: str, updates: int) -> None:
    """ConfigError (naming ``path``) unless ``strategy`` builds and a round of ``updates``
    accepted updates (``key``) is enough for it."""
    try:
        built = strategy_from_config(strategy)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    needed = built.updates_needed()
    if updates < needed:
        raise ConfigError(
            f"{path}: {key}: is {updates}, {built.name} needs at least {needed} updates a round"
        )


def check_secure(
    path: Path, secure: SecureAggregationSettings | None, strategy: str, over_select: int
) -> None:
    """ConfigError (naming ``path``) if ``[secure_aggregation]`` cannot run with the rule."""
    if secure is None:
        return
    if strategy not in SECURE_STRATEGIES:
        raise ConfigError(
            f"{path}: strategy.name: is {strategy!r}; under [secure_aggregation] the aggregator "
            f"sees only the sum of the updates, so the rule is one of "
            f"{', '.join(sorted(SECURE_STRATEGIES))}"
        )
    if secure.threshold == 1:
        raise ConfigError(
            f"{path}: secure_aggregation.threshold: is 1; a secret one share rebuilds is no "
            "secret (use 2 or more, or 0 for half of each site's holders)"
        )
