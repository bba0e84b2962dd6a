"""The dataset a simulation splits over its sites: ``[data]`` or a plan's ``[simulation]``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import KeyProblem, Number, Section, Str, one_of, section
from fedsov.config.trainer import TrainerConfig

__all__ = ["DATASETS", "PARTITIONS", "DataChoice", "SimulationSpec"]

DATASETS = ("digits", "mnist", "synthetic")
PARTITIONS = ("iid", "dirichlet")


@section
class DataChoice(Section):
    """Which dataset, how it is split over the sites, and how much is held out."""

    SECTION = "data"
    dataset: Annotated[Str, one_of(*DATASETS)]
    partition: Annotated[Str, one_of(*PARTITIONS)] = "iid"
    alpha: Annotated[Number, Field(gt=0.0)] | None = None
    test_fraction: Annotated[Number, Field(gt=0.0, le=0.9)] = 0.2

    def __post_init__(self) -> None:
        if self.partition == "dirichlet" and self.alpha is None:
            raise KeyProblem("alpha", "is required with partition = 'dirichlet'")


@section
class SimulationSpec(DataChoice):
    """A plan's ``[simulation]``: the data choice, digits unless it says otherwise."""

    SECTION = "simulation"
    dataset: Annotated[Str, one_of(*DATASETS)] = "digits"
    # Every site's [trainer] (e.g. a Flower app), its node_config completed per site
    # with partition-id, num-partitions and data-path (fedsov.simulation.hierarchy).
    trainer: TrainerConfig | None = None
