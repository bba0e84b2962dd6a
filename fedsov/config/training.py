"""``[training]``: the local optimisation every site runs, pushed with each round's task."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import Bool, Int, Number, Section, section

__all__ = ["TrainingPlan"]


@section
class TrainingPlan(Section):
    """Epochs over the local data, batch size and SGD settings (one type: file, wire, trainer).

    ``proximal_mu``: FedProx's μ, the weight of the proximal term μ/2·||w - w_global||²
    each site adds to its local loss (0: plain SGD).
    """

    SECTION = "training"
    local_epochs: Annotated[Int, Field(ge=1)] = 1
    batch_size: Annotated[Int, Field(ge=1)] = 64
    learning_rate: Annotated[Number, Field(gt=0.0)] = 0.1
    momentum: Annotated[Number, Field(ge=0.0, lt=1.0)] = 0.0
    proximal_mu: Annotated[Number, Field(ge=0.0)] = 0.0
    # Federated evaluation: each site scores the model it receives on its local data
    # and sends DP-noised sums with its update (fedsov.privacy.evaluation).
    evaluate: Bool = False
    evaluate_every: Annotated[Int, Field(ge=1)] = 1  # the coordinator asks in rounds 1, 1+k, ...
