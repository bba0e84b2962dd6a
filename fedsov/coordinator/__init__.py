"""The coordinator (global aggregator): a node driven by its own schedule of rounds."""

from fedsov.coordinator.app import Coordinator
from fedsov.coordinator.config import CoordinatorConfig
from fedsov.coordinator.schedule import Schedule, ScheduledEngine

__all__ = ["Coordinator", "CoordinatorConfig", "Schedule", "ScheduledEngine"]
