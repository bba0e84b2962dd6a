"""Aggregation rules, one module each, behind the Strategy interface."""

from fedsov.strategy.base import RoundAggregate, Strategy
from fedsov.strategy.fedavg import FedAvg, FedAvgAggregate

__all__ = ["FedAvg", "FedAvgAggregate", "RoundAggregate", "Strategy"]
