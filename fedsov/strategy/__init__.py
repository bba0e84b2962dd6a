"""Aggregation rules, one module each, behind the Strategy interface."""

from fedsov.strategy.base import RoundAggregate, SiteLevelDP, Strategy
from fedsov.strategy.dp_fedavg import DPFedAvg, DPFedAvgAggregate, SiteDPSettings
from fedsov.strategy.fedavg import FedAvg, FedAvgAggregate
from fedsov.strategy.registry import STRATEGIES, create_strategy

__all__ = [
    "STRATEGIES",
    "DPFedAvg",
    "DPFedAvgAggregate",
    "FedAvg",
    "FedAvgAggregate",
    "RoundAggregate",
    "SiteDPSettings",
    "SiteLevelDP",
    "Strategy",
    "create_strategy",
]
