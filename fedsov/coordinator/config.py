"""Coordinator configuration (TOML) into a frozen, validated model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, model_validator

from fedsov.config import (
    MAX_EXAMPLES,
    MAX_UPDATE_NORM,
    ConfigPath,
    EvaluationConfig,
    ExampleCap,
    GuardrailSettings,
    Int,
    KeyProblem,
    MetricsSettings,
    ModelConfig,
    NormBound,
    Number,
    Section,
    SecureAggregationSettings,
    ServerEndpoint,
    ServerTable,
    Str,
    StrategyConfig,
    TrainingPlan,
    beside,
    fields_of,
    load_toml,
    section,
    with_fields,
)
from fedsov.strategy import check_secure, check_strategy

__all__ = ["CoordinatorConfig", "CoordinatorFile", "RoundsConfig", "load"]

PositiveInt = Annotated[Int, Field(ge=1)]
Seconds = Annotated[Number, Field(gt=0.0)]


@section
class FederationTable(Section):
    name: Str
    seed: Annotated[Int, Field(ge=0)] = 0
    plan: ConfigPath | None = None  # federation plan: admission, plan-hash pinning
    sites: list[Str] | None = None  # the only site names admitted (without a plan)


@section
class RoundsConfig(Section):
    SECTION = "rounds"
    num_rounds: PositiveInt
    min_sites: PositiveInt = 1  # connected before a round opens
    min_updates: PositiveInt = 1  # accepted for a round to produce a model (default: min_sites)
    sites_per_round: Annotated[Int, Field(ge=0)] = 0  # 0: every connected site
    timeout_s: Seconds = 300.0
    start_timeout_s: Seconds = 600.0
    max_attempts: PositiveInt = 3
    over_select: Annotated[Int, Field(ge=0)] = 0  # sites asked beyond sites_per_round
    max_update_norm: NormBound = MAX_UPDATE_NORM  # larger updates are refused
    max_examples: ExampleCap = MAX_EXAMPLES  # an update claiming more is refused

    @model_validator(mode="before")
    @classmethod
    def _min_updates_defaults_to_min_sites(cls, data: Any) -> Any:
        values = fields_of(data)
        if "min_updates" not in values and "min_sites" in values:
            return with_fields(data, {**values, "min_updates": values["min_sites"]})
        return data

    def __post_init__(self) -> None:
        if self.over_select and not self.sites_per_round:
            raise KeyProblem(
                "over_select",
                "needs sites_per_round: it asks that many sites more than sites_per_round",
            )
        if self.min_updates > self.min_sites:
            raise KeyProblem(
                "min_updates",
                f"is {self.min_updates}, above min_sites = {self.min_sites}: "
                "a round could open with too few sites to ever close",
            )
        if self.sites_per_round and self.sites_per_round < self.min_updates:
            raise KeyProblem(
                "sites_per_round",
                f"is {self.sites_per_round}, below min_updates = {self.min_updates}: "
                "no round could ever close",
            )


@section
class OutputTable(Section):
    dir: ConfigPath | None = None


@section
class CoordinatorFile(Section):
    """A coordinator's TOML file, table by table."""

    federation: FederationTable
    server: ServerTable
    model: ModelConfig
    rounds: RoundsConfig
    training: TrainingPlan = dataclasses.field(default_factory=TrainingPlan)
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    output: OutputTable = dataclasses.field(default_factory=OutputTable)
    strategy: StrategyConfig = dataclasses.field(default_factory=StrategyConfig)
    # SecAgg+ with the participants: all of them sites (a flat federation)
    secure_aggregation: SecureAggregationSettings | None = None
    metrics: MetricsSettings | None = None  # Prometheus /metrics (off without the table)
    guardrails: GuardrailSettings | None = None  # stop rules (default: the plan's, if any)
    heartbeat_s: Seconds = 10.0


@dataclass(frozen=True)
class CoordinatorConfig:
    source: Path
    federation: str
    seed: int
    server: ServerEndpoint
    model: ModelConfig
    rounds: RoundsConfig
    training: TrainingPlan
    evaluation: EvaluationConfig
    output_dir: Path
    allowed_sites: frozenset[str] | None
    heartbeat_s: float
    plan: Path | None = None  # federation plan: admission, plan-hash pinning
    strategy: StrategyConfig = dataclasses.field(
        default_factory=StrategyConfig
    )  # the aggregation rule and its settings
    secure: SecureAggregationSettings | None = None  # [secure_aggregation]
    metrics: MetricsSettings | None = None  # [metrics]: Prometheus /metrics
    guardrails: GuardrailSettings | None = None  # [guardrails]: stop rules


def load(path: Path) -> CoordinatorConfig:
    doc = load_toml(CoordinatorFile, path)
    check_strategy(path, doc.strategy, key="rounds.min_updates", updates=doc.rounds.min_updates)
    check_secure(path, doc.secure_aggregation, doc.strategy.name, doc.rounds.over_select)
    fed = doc.federation
    return CoordinatorConfig(
        source=path,
        federation=fed.name,
        seed=fed.seed,
        server=doc.server.endpoint(),
        model=doc.model,
        rounds=doc.rounds,
        training=doc.training,
        evaluation=doc.evaluation,
        output_dir=doc.output.dir or beside(path, "coordinator-out"),
        allowed_sites=frozenset(fed.sites) if fed.sites is not None else None,
        heartbeat_s=doc.heartbeat_s,
        plan=fed.plan,
        strategy=doc.strategy,
        secure=doc.secure_aggregation,
        metrics=doc.metrics,
        guardrails=doc.guardrails,
    )
