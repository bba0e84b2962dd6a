"""A regional aggregator: a node towards its sites, a participant towards its upstream."""

from fedsov.aggregator.app import RegionalAggregator
from fedsov.aggregator.config import AggregatorConfig

__all__ = ["AggregatorConfig", "RegionalAggregator"]
