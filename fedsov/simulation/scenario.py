"""Simulation scenarios (TOML): data, partition, model, rounds, training, privacy, the
aggregation rule and the stop rules (``[strategy]``, ``[guardrails]``: as in a
coordinator's config)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from fedsov.config import (
    DataChoice,
    GuardrailSettings,
    Int,
    KeyProblem,
    ModelConfig,
    Number,
    PrivacyConfig,
    Section,
    SecureAggregationSettings,
    SimulationRuntime,
    Str,
    StrategyConfig,
    TrainingPlan,
    load_toml,
    read_toml,
    section,
)
from fedsov.strategy import check_secure, check_strategy

__all__ = ["DataPlan", "RoundsPlan", "Scenario", "ScenarioFile", "is_plan", "load_scenario"]


@section
class DataPlan(DataChoice):
    """A scenario's ``[data]``: the data choice (with the synthetic shape) and how many sites."""

    sites: Annotated[Int, Field(ge=1, le=100_000)] = Field(kw_only=True)


@section
class RoundsPlan(Section):
    SECTION = "rounds"
    num_rounds: Annotated[Int, Field(ge=1)]
    min_sites: Annotated[Int, Field(ge=1)] | None = None  # default: every site
    # updates a round needs to close (default: min_sites); fewer than min_sites lets a
    # round select sites_per_round < min_sites from everyone connected
    min_updates: Annotated[Int, Field(ge=1)] | None = None
    sites_per_round: Annotated[Int, Field(ge=0)] = 0
    timeout_s: Annotated[Number, Field(gt=0.0)] = 300.0


def _name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise ValueError("use lower-case letters, digits, '.', '_' or '-'")
    return name


@section
class ScenarioFile(Section):
    """A flat scenario file, table by table."""

    name: Annotated[Str, AfterValidator(_name)]
    data: DataPlan
    model: ModelConfig
    rounds: RoundsPlan
    seed: Annotated[Int, Field(ge=0)] = 0
    training: TrainingPlan = dataclasses.field(default_factory=TrainingPlan)
    privacy: PrivacyConfig = dataclasses.field(default_factory=PrivacyConfig)
    strategy: StrategyConfig = dataclasses.field(default_factory=StrategyConfig)
    secure_aggregation: SecureAggregationSettings | None = None  # SecAgg+ at the coordinator
    guardrails: GuardrailSettings | None = None  # the coordinator's stop rules
    simulation: SimulationRuntime = dataclasses.field(default_factory=SimulationRuntime)

    def __post_init__(self) -> None:
        sites = self.data.sites
        for key in ("min_sites", "min_updates", "sites_per_round"):
            value = getattr(self.rounds, key)
            if value is not None and value > sites:
                raise KeyProblem(f"rounds.{key}", f"must be <= {sites}, got {value}")


@dataclass(frozen=True)
class Scenario:
    source: Path
    name: str
    seed: int
    data: DataPlan
    model: ModelConfig
    rounds: RoundsPlan
    training: TrainingPlan
    privacy: PrivacyConfig
    strategy: StrategyConfig = dataclasses.field(default_factory=StrategyConfig)
    secure: SecureAggregationSettings | None = None
    guardrails: GuardrailSettings | None = None
    runtime: SimulationRuntime = dataclasses.field(default_factory=SimulationRuntime)


def is_plan(path: Path) -> bool:
    """A federation plan declares ``[[nodes]]``; a flat scenario does not."""
    return "nodes" in read_toml(path)[1]


def load_scenario(path: Path) -> Scenario:
    doc = load_toml(ScenarioFile, path)
    rounds = doc.rounds
    if rounds.min_sites is None:
        rounds = dataclasses.replace(rounds, min_sites=doc.data.sites)
    updates = rounds.min_updates or rounds.min_sites or doc.data.sites
    check_strategy(path, doc.strategy, key="rounds.min_sites", updates=updates)
    check_secure(path, doc.secure_aggregation, doc.strategy.name, 0)
    return Scenario(
        source=path,
        name=doc.name,
        seed=doc.seed,
        data=doc.data,
        model=doc.model,
        rounds=rounds,
        training=doc.training,
        privacy=doc.privacy,
        strategy=doc.strategy,
        secure=doc.secure_aggregation,
        guardrails=doc.guardrails,
        runtime=doc.simulation,
    )
