"""Simulation scenarios (TOML): data, partition, model, rounds, training and privacy."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from fedsov.config import Table, load_toml
from fedsov.coordinator.config import ModelConfig, read_model, read_training
from fedsov.messages import TrainingPlan
from fedsov.site.config import read_privacy
from fedsov.site.trainer import PrivacyConfig

__all__ = ["DataPlan", "RoundsPlan", "Scenario", "load_scenario"]

DATASETS = ("digits", "mnist", "synthetic")
PARTITIONS = ("iid", "dirichlet")


@dataclass(frozen=True)
class DataPlan:
    dataset: str
    partition: str
    alpha: float | None
    synthetic_alpha: float
    synthetic_beta: float
    test_fraction: float
    sites: int


@dataclass(frozen=True)
class RoundsPlan:
    num_rounds: int
    min_sites: int
    sites_per_round: int
    timeout_s: float


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


@dataclass(frozen=True)
class DataChoice:
    """Which dataset, how it is split over the sites, and how much is held out."""

    dataset: str
    partition: str
    alpha: float | None
    test_fraction: float


def read_data_choice(table: Table, *, default_dataset: str | None) -> DataChoice:
    """The data keys shared by scenarios ([data]) and plans ([simulation])."""
    dataset = (
        table.string("dataset", default_dataset) if default_dataset else table.string("dataset")
    )
    if dataset not in DATASETS:
        raise table.error("dataset", f"{dataset!r} is not one of {', '.join(DATASETS)}")
    partition = table.string("partition", "iid")
    if partition not in PARTITIONS:
        raise table.error("partition", f"{partition!r} is not one of {', '.join(PARTITIONS)}")
    choice = DataChoice(
        dataset=dataset,
        partition=partition,
        alpha=table.number("alpha", None, min=0.0, exclusive_min=True),
        test_fraction=table.number("test_fraction", 0.2, min=0.0, max=0.9, exclusive_min=True),
    )
    if partition == "dirichlet" and choice.alpha is None:
        raise table.error("alpha", "is required with partition = 'dirichlet'")
    return choice


def is_plan(path: Path) -> bool:
    """A federation plan declares ``[[nodes]]``; a flat scenario does not."""
    return load_toml(path).has("nodes")


def load_scenario(path: Path) -> Scenario:
    doc = load_toml(path)
    name = doc.string("name")
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        raise doc.error("name", "use lower-case letters, digits, '.', '_' or '-'")
    seed = doc.integer("seed", 0, min=0)

    dt = doc.table("data", required=True)
    choice = read_data_choice(dt, default_dataset=None)
    data = DataPlan(
        dataset=choice.dataset,
        partition=choice.partition,
        alpha=choice.alpha,
        synthetic_alpha=dt.number("synthetic_alpha", 1.0, min=0.0),
        synthetic_beta=dt.number("synthetic_beta", 1.0, min=0.0),
        test_fraction=choice.test_fraction,
        sites=dt.integer("sites", min=1, max=200),
    )
    dt.done()

    rt = doc.table("rounds", required=True)
    rounds = RoundsPlan(
        num_rounds=rt.integer("num_rounds", min=1),
        min_sites=rt.integer("min_sites", data.sites, min=1, max=data.sites),
        sites_per_round=rt.integer("sites_per_round", 0, min=0, max=data.sites),
        timeout_s=rt.number("timeout_s", 300.0, min=0.0, exclusive_min=True),
    )
    rt.done()

    privacy = read_privacy(doc.table("privacy"))

    scenario = Scenario(
        source=path,
        name=name,
        seed=seed,
        data=data,
        model=read_model(doc.table("model", required=True)),
        rounds=rounds,
        training=read_training(doc.table("training")),
        privacy=privacy,
    )
    doc.done()
    return scenario
