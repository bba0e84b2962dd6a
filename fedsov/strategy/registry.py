"""Strategies by name, so a config can name one: ``create_strategy("dp-fedavg", ...)``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedsov.config import StrategyConfig
from fedsov.exceptions import ConfigError
from fedsov.strategy.base import Strategy
from fedsov.strategy.dp_fedavg import DPFedAvg
from fedsov.strategy.fedavg import FedAvg
from fedsov.strategy.fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi
from fedsov.strategy.fedprox import FedProx
from fedsov.strategy.krum import Bulyan, Krum, MultiKrum
from fedsov.strategy.robust import FedMedian, FedTrimmedAvg

__all__ = ["STRATEGIES", "check_strategy", "create_strategy", "strategy_from_config"]

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
