"""Strategies by name, so a config can name one: ``create_strategy("dp-fedavg", ...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fedsov.exceptions import ConfigError
from fedsov.strategy.base import Strategy
from fedsov.strategy.dp_fedavg import DPFedAvg
from fedsov.strategy.fedavg import FedAvg

__all__ = ["STRATEGIES", "create_strategy"]

STRATEGIES: dict[str, Callable[..., Strategy]] = {
    FedAvg.name: FedAvg,
    DPFedAvg.name: DPFedAvg,
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
