"""The dataset a simulation splits over its sites: ``[data]`` or a plan's ``[simulation]``."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import Int, KeyProblem, Number, Section, Str, one_of, section
from fedsov.config.simulation import SimulationRuntime
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
    # FedProx Synthetic(alpha, beta): one dataset per site (partition = "iid"), or with
    # partition = "dirichlet" one pool of synthetic_samples examples of its IID variant
    # (shared W, b; alpha and beta unused) split with Dirichlet label skew.
    synthetic_alpha: Annotated[Number, Field(ge=0.0)] = 1.0
    synthetic_beta: Annotated[Number, Field(ge=0.0)] = 1.0
    synthetic_samples: Annotated[Int, Field(ge=2, le=10_000_000)] = 60_000
    # partition = "dirichlet": the fewest examples a site gets (the synthetic pool tops
    # small sites up from the largest; other datasets redraw until every site has them)
    min_site_examples: Annotated[Int, Field(ge=1)] = 10

    def __post_init__(self) -> None:
        if self.partition == "dirichlet" and self.alpha is None:
            raise KeyProblem("alpha", "is required with partition = 'dirichlet'")


@section
class SimulationSpec(DataChoice, SimulationRuntime):
    """A plan's ``[simulation]``: the data choice (digits unless it says otherwise) and
    where the sites run (:class:`~fedsov.config.simulation.SimulationRuntime`)."""

    SECTION = "simulation"
    dataset: Annotated[Str, one_of(*DATASETS)] = "digits"
    # Every site's [trainer] (e.g. a Flower app), its node_config completed per site
    # with partition-id, num-partitions and data-path (fedsov.simulation.hierarchy).
    trainer: TrainerConfig | None = None

    def __post_init__(self) -> None:
        DataChoice.__post_init__(self)
        SimulationRuntime.__post_init__(self)

    def runtime(self) -> SimulationRuntime:
        """The mode, backend and workers alone."""
        return SimulationRuntime(
            **{f: getattr(self, f) for f in SimulationRuntime.__dataclass_fields__}
        )
