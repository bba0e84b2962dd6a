"""Coordinator configuration (TOML) into a frozen, validated model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsov.config import Table, load_toml
from fedsov.messages import TrainingPlan
from fedsov.transport.endpoint import ServerEndpoint, read_server_endpoint

__all__ = ["CoordinatorConfig", "EvaluationConfig", "ModelConfig", "RoundsConfig", "load"]


@dataclass(frozen=True)
class ModelConfig:
    factory: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RoundsConfig:
    num_rounds: int
    min_sites: int  # connected before a round opens
    min_updates: int  # accepted for a round to produce a model
    sites_per_round: int  # 0: every connected site
    timeout_s: float
    start_timeout_s: float
    max_attempts: int
    over_select: int = 0  # sites asked beyond sites_per_round; the first to answer count


@dataclass(frozen=True)
class EvaluationConfig:
    function: str | None
    kwargs: dict[str, Any] = field(default_factory=dict)


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


def read_model(table: Table) -> ModelConfig:
    model = ModelConfig(factory=table.string("factory"), kwargs=table.mapping("kwargs"))
    table.done()
    return model


def read_evaluation(table: Table) -> EvaluationConfig:
    evaluation = EvaluationConfig(
        function=table.string("function", None), kwargs=table.mapping("kwargs")
    )
    table.done()
    return evaluation


def read_training(table: Table) -> TrainingPlan:
    plan = TrainingPlan(
        local_epochs=table.integer("local_epochs", 1, min=1),
        batch_size=table.integer("batch_size", 64, min=1),
        learning_rate=table.number("learning_rate", 0.1, min=0.0, exclusive_min=True),
        momentum=table.number("momentum", 0.0, min=0.0, max=1.0),
    )
    table.done()
    return plan


def load(path: Path) -> CoordinatorConfig:
    doc = load_toml(path)
    fed = doc.table("federation", required=True)
    federation, seed = fed.string("name"), fed.integer("seed", 0, min=0)
    plan = fed.path("plan", None)
    sites = fed.strings("sites", None)
    allowed = frozenset(sites) if sites is not None else None
    fed.done()

    rt = doc.table("rounds", required=True)
    rounds = RoundsConfig(
        num_rounds=rt.integer("num_rounds", min=1),
        min_sites=rt.integer("min_sites", 1, min=1),
        min_updates=rt.integer("min_updates", rt.integer("min_sites", 1, min=1), min=1),
        sites_per_round=rt.integer("sites_per_round", 0, min=0),
        timeout_s=rt.number("timeout_s", 300.0, min=0.0, exclusive_min=True),
        start_timeout_s=rt.number("start_timeout_s", 600.0, min=0.0, exclusive_min=True),
        max_attempts=rt.integer("max_attempts", 3, min=1),
        over_select=rt.integer("over_select", 0, min=0),
    )
    if rounds.over_select and not rounds.sites_per_round:
        raise rt.error(
            "over_select",
            "needs sites_per_round: it asks that many sites more than sites_per_round",
        )
    if rounds.min_updates > rounds.min_sites:
        raise rt.error(
            "min_updates",
            f"is {rounds.min_updates}, above min_sites = {rounds.min_sites}: "
            "a round could open with too few sites to ever close",
        )
    if rounds.sites_per_round and rounds.sites_per_round < rounds.min_updates:
        raise rt.error(
            "sites_per_round",
            f"is {rounds.sites_per_round}, below min_updates = {rounds.min_updates}: "
            "no round could ever close",
        )
    rt.done()

    evaluation = read_evaluation(doc.table("evaluation"))

    out = doc.table("output")
    output_dir = out.path("dir", str(path.parent / "coordinator-out"))
    out.done()

    config = CoordinatorConfig(
        source=path,
        federation=federation,
        seed=seed,
        server=read_server_endpoint(doc.table("server", required=True)),
        model=read_model(doc.table("model", required=True)),
        rounds=rounds,
        training=read_training(doc.table("training")),
        evaluation=evaluation,
        output_dir=output_dir,
        allowed_sites=allowed,
        plan=plan,
        heartbeat_s=doc.number("heartbeat_s", 10.0, min=0.0, exclusive_min=True),
    )
    doc.done()
    return config
