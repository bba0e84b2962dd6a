"""A site agent: trains on local data under DP-SGD and sends only the noised update."""

from fedsov.site.agent import SiteAgent, SiteOutcome
from fedsov.site.config import SiteConfig
from fedsov.site.data import Dataset, load_local_data
from fedsov.site.trainer import DPTrainer, TrainResult

__all__ = [
    "DPTrainer",
    "Dataset",
    "SiteAgent",
    "SiteConfig",
    "SiteOutcome",
    "TrainResult",
    "load_local_data",
]
