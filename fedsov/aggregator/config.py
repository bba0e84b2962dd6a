"""Regional aggregator configuration (TOML)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsov.config import Table, load_toml
from fedsov.coordinator.config import (
    EvaluationConfig,
    ModelConfig,
    read_evaluation,
    read_model,
)
from fedsov.participant import Backoff
from fedsov.site.config import read_backoff
from fedsov.strategy import SiteDPSettings
from fedsov.transport.endpoint import (
    ClientEndpoint,
    ServerEndpoint,
    read_client_endpoint,
    read_server_endpoint,
)

__all__ = ["OVER_SELECT_WITH_SITE_DP", "AggregatorConfig", "RegionRounds", "load", "read_site_dp"]

OVER_SELECT_WITH_SITE_DP = (
    "must be 0 with [site_dp]: over-selection keeps the fastest sites, not a uniform "
    "sample of sites_per_round of the region's sites, so the site-level ε that "
    "accounting reports would not hold; set sites_per_round alone"
)


@dataclass(frozen=True)
class RegionRounds:
    min_sites: int  # k: a round with fewer accepted site updates exports nothing
    sites_per_round: int  # 0: every connected site
    timeout_s: float  # regional deadline, never past the upstream's
    start_timeout_s: float
    # Sites asked beyond sites_per_round; the first to answer count. Not with [site_dp]:
    # keeping the fastest is no uniform sample, which site-level accounting assumes.
    over_select: int = 0


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


def read_site_dp(table: Table) -> SiteDPSettings:
    """A ``[site_dp]`` table: DP-FedAvg with (optionally adaptive) clipping."""
    settings = SiteDPSettings(
        clip=table.number("clip", min=0.0, exclusive_min=True),
        noise_multiplier=table.number("noise_multiplier", min=0.0),
        adaptive=table.boolean("adaptive", False),
        target_quantile=table.number("target_quantile", 0.5, min=0.0, max=1.0),
        clip_learning_rate=table.number("clip_learning_rate", 0.2, min=0.0),
        delta=table.number("delta", 1e-5, min=0.0, max=1.0, exclusive_min=True),
    )
    table.done()
    return settings


def load(path: Path) -> AggregatorConfig:
    doc = load_toml(path)
    agg = doc.table("aggregator", required=True)
    name, seed = agg.string("name"), agg.integer("seed", 0, min=0)
    agg.done()
    fed = doc.table("federation", required=True)
    federation, plan = fed.string("name"), fed.path("plan", None)
    fed.done()
    rt = doc.table("rounds")
    rounds = RegionRounds(
        min_sites=rt.integer("min_sites", 1, min=1),
        sites_per_round=rt.integer("sites_per_round", 0, min=0),
        timeout_s=rt.number("timeout_s", 120.0, min=0.0, exclusive_min=True),
        start_timeout_s=rt.number("start_timeout_s", 300.0, min=0.0, exclusive_min=True),
        over_select=rt.integer("over_select", 0, min=0),
    )
    site_dp = read_site_dp(doc.table("site_dp")) if doc.has("site_dp") else None
    if rounds.over_select and not rounds.sites_per_round:
        raise rt.error(
            "over_select",
            "needs sites_per_round: it asks that many sites more than sites_per_round",
        )
    if rounds.over_select and site_dp is not None:
        raise rt.error("over_select", OVER_SELECT_WITH_SITE_DP)
    rt.done()
    out = doc.table("output")
    output_dir = out.path("dir", str(path.parent / f"{name}-out"))
    out.done()
    config = AggregatorConfig(
        source=path,
        name=name,
        federation=federation,
        seed=seed,
        plan=plan,
        server=read_server_endpoint(doc.table("server", required=True)),
        upstream=read_client_endpoint(doc.table("upstream", required=True)),
        model=read_model(doc.table("model", required=True)),
        evaluation=read_evaluation(doc.table("evaluation")),
        rounds=rounds,
        site_dp=site_dp,
        backoff=read_backoff(doc.table("reconnect")),
        output_dir=output_dir,
    )
    doc.done()
    return config
