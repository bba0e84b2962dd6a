"""Aggregation rules, one module each, behind the Strategy interface."""

from fedsov.strategy.base import Replay, RoundAggregate, SiteLevelDP, Strategy, UpdateFold
from fedsov.strategy.dp_fedavg import DPFedAvg, DPFedAvgAggregate, SiteDPSettings
from fedsov.strategy.fedavg import FedAvg, FedAvgAggregate
from fedsov.strategy.registry import STRATEGIES, create_strategy

__all__ = [
    "STRATEGIES",
    "DPFedAvg",
    "DPFedAvgAggregate",
    "FedAvg",
    "FedAvgAggregate",
    "Replay",
    "RoundAggregate",
    "SiteDPSettings",
    "SiteLevelDP",
    "Strategy",
    "UpdateFold",
    "create_strategy",
]
