"""Aggregation rules, one module each, behind the Strategy interface."""

from fedsov.strategy.base import Replay, RoundAggregate, SiteLevelDP, Strategy, UpdateFold
from fedsov.strategy.dp_fedavg import DPFedAvg, DPFedAvgAggregate, SiteDPSettings
from fedsov.strategy.fedavg import FedAvg, FedAvgAggregate
from fedsov.strategy.fedopt import FedAdagrad, FedAdam, FedAvgM, FedYogi, ServerOptimizer
from fedsov.strategy.fedprox import FedProx
from fedsov.strategy.krum import Bulyan, Krum, MultiKrum
from fedsov.strategy.registry import (
    SECURE_STRATEGIES,
    STRATEGIES,
    check_secure,
    check_strategy,
    create_strategy,
    strategy_from_config,
)
from fedsov.strategy.robust import FedMedian, FedTrimmedAvg
from fedsov.strategy.spooled import SpooledAggregate

__all__ = [
    "SECURE_STRATEGIES",
    "STRATEGIES",
    "Bulyan",
    "DPFedAvg",
    "DPFedAvgAggregate",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgAggregate",
    "FedAvgM",
    "FedMedian",
    "FedProx",
    "FedTrimmedAvg",
    "FedYogi",
    "Krum",
    "MultiKrum",
    "Replay",
    "RoundAggregate",
    "ServerOptimizer",
    "SiteDPSettings",
    "SiteLevelDP",
    "SpooledAggregate",
    "Strategy",
    "UpdateFold",
    "check_secure",
    "check_strategy",
    "create_strategy",
    "strategy_from_config",
]
