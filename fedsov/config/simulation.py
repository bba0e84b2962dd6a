"""Where a simulation's sites run: ``[simulation]`` mode, backend and workers.

``mode = "process"`` starts one OS process per site (as a deployment runs them);
``mode = "virtual"`` runs the sites' own code (``fedsov.site.agent``) in a few site-host
workers, each multiplexing many sites' mTLS sessions; ``backend = "ray"`` makes those
workers Ray actors, so a simulation runs on a Ray cluster unchanged.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fedsov.config.base import Int, KeyProblem, Number, Section, Str, one_of, section

__all__ = ["BACKENDS", "MODES", "SimulationRuntime"]

MODES = ("process", "virtual")
BACKENDS = ("local", "ray")


@section
class SimulationRuntime(Section):
    """How a simulation runs its sites (the keys it adds to ``[simulation]``)."""

    SECTION = "simulation"
    mode: Annotated[Str, one_of(*MODES)] = "process"
    backend: Annotated[Str, one_of(*BACKENDS)] = "local"
    # site-host workers: 0 means two per core (local) or one per CPU of the Ray cluster
    workers: Annotated[Int, Field(ge=0, le=4096)] = 0
    # Ray: None starts a Ray instance for this run; "auto" or "host:port" joins a cluster
    ray_address: Str | None = None
    cpus_per_worker: Annotated[Number, Field(gt=0.0)] = 1.0
    gpus_per_worker: Annotated[Number, Field(ge=0.0)] = 0.0

    def __post_init__(self) -> None:
        if self.backend == "ray" and self.mode != "virtual":
            raise KeyProblem("backend", "'ray' runs virtual sites: set mode = 'virtual'")
