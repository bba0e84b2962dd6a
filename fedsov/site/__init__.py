"""A site agent: trains on local data under DP-SGD and sends only the noised update.

``DPTrainer`` and ``TrainResult`` are loaded on first use: they import torch and
Opacus, which a site needs only once it trains (docs/architecture.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedsov.site.agent import SiteAgent, SiteOutcome
from fedsov.site.config import SiteConfig
from fedsov.site.data import Dataset, load_local_data

if TYPE_CHECKING:
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


def __getattr__(name: str) -> object:
    if name in ("DPTrainer", "TrainResult"):
        from fedsov.site import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
