"""Regional aggregator configuration (TOML)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field

from fedsov.config import (
    MAX_EXAMPLES,
    MAX_UPDATE_NORM,
    Backoff,
    ClientEndpoint,
    ConfigPath,
    EvaluationConfig,
    ExampleCap,
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
    SiteDPSettings,
    Str,
    StrategyConfig,
    UpstreamTable,
    beside,
    load_toml,
    section,
)
from fedsov.exceptions import ConfigError
from fedsov.strategy import check_secure, check_strategy

__all__ = ["OVER_SELECT_WITH_SITE_DP", "AggregatorConfig", "AggregatorFile", "RegionRounds", "load"]

OVER_SELECT_WITH_SITE_DP = (
    "must be 0 with [site_dp]: over-selection keeps the fastest sites, not a uniform "
    "sample of sites_per_round of the region's sites, so the site-level ε that "
    "accounting reports would not hold; set sites_per_round alone"
)
Seconds = Annotated[Number, Field(gt=0.0)]


@section
class RegionRounds(Section):
    SECTION = "rounds"
    min_sites: Annotated[Int, Field(ge=1)] = 1  # k: fewer accepted site updates export nothing
    sites_per_round: Annotated[Int, Field(ge=0)] = 0  # 0: every connected site
    timeout_s: Seconds = 120.0  # regional deadline, never past the upstream's
    start_timeout_s: Seconds = 300.0
    # Before its first round the region waits (up to start_timeout_s, and half the
    # upstream's deadline) for this many sites, then runs with whoever joined.
    first_round_sites: Annotated[Int, Field(ge=0)] = 0
    # Sites asked beyond sites_per_round; the first to answer count. Not with [site_dp]:
    # keeping the fastest is no uniform sample, which site-level accounting assumes.
    over_select: Annotated[Int, Field(ge=0)] = 0
    max_update_norm: NormBound = MAX_UPDATE_NORM  # larger site updates are refused
    max_examples: ExampleCap = MAX_EXAMPLES  # a site update claiming more is refused

    def __post_init__(self) -> None:
        if self.over_select and not self.sites_per_round:
            raise KeyProblem(
                "over_select",
                "needs sites_per_round: it asks that many sites more than sites_per_round",
            )
        if self.sites_per_round and self.sites_per_round < self.min_sites:
            raise KeyProblem(
                "sites_per_round",
                f"is {self.sites_per_round}, below min_sites = {self.min_sites}: "
                "no round could ever export; raise sites_per_round or lower min_sites",
            )


@section
class AggregatorTable(Section):
    name: Str
    seed: Annotated[Int, Field(ge=0)] = 0


@section
class FederationTable(Section):
    name: Str
    plan: ConfigPath | None = None


@section
class OutputTable(Section):
    dir: ConfigPath | None = None


@section
class AggregatorFile(Section):
    """A regional aggregator's TOML file, table by table."""

    aggregator: AggregatorTable
    federation: FederationTable
    server: ServerTable
    upstream: UpstreamTable
    model: ModelConfig
    evaluation: EvaluationConfig = dataclasses.field(default_factory=EvaluationConfig)
    rounds: RegionRounds = dataclasses.field(default_factory=RegionRounds)
    site_dp: SiteDPSettings | None = None
    secure_aggregation: SecureAggregationSettings | None = None  # SecAgg+ with the sites
    metrics: MetricsSettings | None = None  # Prometheus /metrics (off without the table)
    strategy: StrategyConfig = dataclasses.field(default_factory=StrategyConfig)
    reconnect: Backoff = dataclasses.field(default_factory=Backoff)
    output: OutputTable = dataclasses.field(default_factory=OutputTable)

    def __post_init__(self) -> None:
        if self.rounds.over_select and self.site_dp is not None:
            raise KeyProblem("rounds.over_select", OVER_SELECT_WITH_SITE_DP)


@dataclass(frozen=True)
class AggregatorConfig:
    source: Path
    name: str
    federation: str
    seed: int
    plan: Path | None
    server: ServerEndpoint
    upstream: ClientEndpoint
    model: ModelConfig
    evaluation: EvaluationConfig
    rounds: RegionRounds
    site_dp: SiteDPSettings | None
    backoff: Backoff
    output_dir: Path
    strategy: StrategyConfig = dataclasses.field(
        default_factory=StrategyConfig
    )  # the region's rule (FedAvg under [site_dp])
    secure: SecureAggregationSettings | None = None  # [secure_aggregation]
    metrics: MetricsSettings | None = None  # [metrics]: Prometheus /metrics


def load(path: Path) -> AggregatorConfig:
    doc = load_toml(AggregatorFile, path)
    if doc.site_dp is not None and doc.strategy.name != "fedavg":
        raise ConfigError(
            f"{path}: strategy.name: is {doc.strategy.name!r}; [site_dp] noises a FedAvg sum, "
            "so a region with [site_dp] aggregates with fedavg (leave [strategy] out)"
        )
    check_strategy(path, doc.strategy, key="rounds.min_sites", updates=doc.rounds.min_sites)
    check_secure(path, doc.secure_aggregation, doc.strategy.name, doc.rounds.over_select)
    return AggregatorConfig(
        source=path,
        name=doc.aggregator.name,
        federation=doc.federation.name,
        seed=doc.aggregator.seed,
        plan=doc.federation.plan,
        server=doc.server.endpoint(),
        upstream=doc.upstream.endpoint(),
        model=doc.model,
        evaluation=doc.evaluation,
        rounds=doc.rounds,
        site_dp=doc.site_dp,
        backoff=doc.reconnect,
        output_dir=doc.output.dir or beside(path, f"{doc.aggregator.name}-out"),
        strategy=doc.strategy,
        secure=doc.secure_aggregation,
        metrics=doc.metrics,
    )
