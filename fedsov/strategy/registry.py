"""Strategies by name, so a config can name one: ``create_strategy("dp-fedavg", ...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fedsov.exceptions import ConfigError
from fedsov.strategy.base import Strategy
from fedsov.strategy.dp_fedavg import DPFedAvg
from fedsov.strategy.fedavg import FedAvg
from fedsov.strategy.fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi
from fedsov.strategy.fedprox import FedProx
from fedsov.strategy.krum import Bulyan, Krum, MultiKrum
from fedsov.strategy.robust import FedMedian, FedTrimmedAvg

__all__ = ["STRATEGIES", "create_strategy"]

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
