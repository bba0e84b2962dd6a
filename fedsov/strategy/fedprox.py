"""FedProx (Li et al. 2020): FedAvg at the server; each site adds (μ/2)·‖w - w_global‖²
to its local loss, μ sent with every task (``TrainingPlan.proximal_mu``, Flower's
``"proximal-mu"``)."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from pydantic import Field

from fedsov.config import TrainingPlan
from fedsov.config.base import Number
from fedsov.strategy.fedavg import FedAvg
from fedsov.strategy.settings import checked_settings

__all__ = ["FedProx"]


class FedProx(FedAvg):
    """``proximal_mu`` μ >= 0 (Flower's default 0: plain FedAvg)."""

    name = "fedprox"

    @checked_settings
    def __init__(self, *, proximal_mu: Annotated[Number, Field(ge=0.0)] = 0.0) -> None:
        self.proximal_mu = proximal_mu

    def configure_training(self, plan: TrainingPlan) -> TrainingPlan:
        return dataclasses.replace(plan, proximal_mu=self.proximal_mu)
