"""Aggregation rules, one module each, behind the Strategy interface."""

from fedsov.strategy.base import RoundAggregate, Strategy
from fedsov.strategy.dp_fedavg import DPFedAvg, DPFedAvgAggregate, SiteDPSettings
from fedsov.strategy.fedavg import FedAvg, FedAvgAggregate

__all__ = [
    "DPFedAvg",
    "DPFedAvgAggregate",
    "FedAvg",
    "FedAvgAggregate",
    "RoundAggregate",
    "SiteDPSettings",
    "Strategy",
]
