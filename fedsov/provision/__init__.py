"""Deployment kits from a federation plan: one folder per node (``fedsov provision``),
and the per-node config builders that ``fedsov simulate`` writes its configs with."""

from fedsov.provision.addresses import Addresses, Network
from fedsov.provision.configs import (
    NodeFiles,
    aggregator_config,
    coordinator_config,
    site_config,
)
from fedsov.provision.kit import Kit
from fedsov.provision.kits import DemoData, Provisioned, provision

__all__ = [
    "Addresses",
    "DemoData",
    "Kit",
    "Network",
    "NodeFiles",
    "Provisioned",
    "aggregator_config",
    "coordinator_config",
    "provision",
    "site_config",
]
