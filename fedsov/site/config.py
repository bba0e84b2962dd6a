"""Site agent configuration (TOML): upstream, local data, model, trainer and privacy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from fedsov.config import (
    Backoff,
    ClientEndpoint,
    ConfigPath,
    Int,
    KeyProblem,
    MetricsSettings,
    ModelConfig,
    Number,
    PrivacyConfig,
    Section,
    Str,
    TrainerConfig,
    UpstreamTable,
    beside,
    load_toml,
    section,
)
from fedsov.site.data import DataSpec

__all__ = ["SiteConfig", "SiteFile", "load"]


def _device(device: str) -> str:
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise ValueError(f"must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    return device


@section
class SiteTable(Section):
    name: Str
    seed: Annotated[Int, Field(ge=0)] = 0
    device: Annotated[Str, AfterValidator(_device)] = "auto"


@section
class SitePrivacy(PrivacyConfig):
    """``[privacy]`` at a site: DP-SGD settings, the site's ε budget and its ledger."""

    budget_epsilon: Annotated[Number, Field(gt=0.0)] | None = None  # refuse rounds past it
    ledger: ConfigPath | None = None  # record of every release (default: beside the config)

    def settings(self) -> PrivacyConfig:
        names = (f.name for f in dataclasses.fields(PrivacyConfig))
        return PrivacyConfig(**{name: getattr(self, name) for name in names})


@section
class FederationTable(Section):
    plan: ConfigPath | None = None  # federation plan: residency checked before dialing


@section
class AuditTable(Section):
    ledger: ConfigPath | None = None  # signed audit trail (default: beside the config)


@section
class SiteFile(Section):
    """A site agent's TOML file, table by table."""

    site: SiteTable
    upstream: UpstreamTable
    model: ModelConfig
    privacy: SitePrivacy
    data: DataSpec | None = None  # a Flower app may load its own data instead
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    reconnect: Backoff = dataclasses.field(default_factory=Backoff)
    federation: FederationTable = dataclasses.field(default_factory=FederationTable)
    audit: AuditTable = dataclasses.field(default_factory=AuditTable)
    metrics: MetricsSettings | None = None  # Prometheus /metrics (off without the table)

    def __post_init__(self) -> None:
        if self.data is None and not self.trainer.flower:
            raise KeyProblem("data", "a [data] table is required unless [trainer] kind = 'flower'")


@dataclass(frozen=True)
class SiteConfig:
    source: Path
    name: str
    seed: int
    device: str | None  # None: CUDA when available, else CPU
    upstream: ClientEndpoint
    data: DataSpec | None  # None: a Flower app that loads its own data
    model: ModelConfig
    privacy: PrivacyConfig
    backoff: Backoff
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    plan: Path | None = None  # federation plan: residency checked before dialing
    budget_epsilon: float | None = None  # the site refuses rounds that would exceed it
    ledger: Path | None = None  # persistent record of every release (default: beside config)
    audit_ledger: Path | None = None  # signed audit trail (default: beside config)
    metrics: MetricsSettings | None = None  # [metrics]: Prometheus /metrics


def load(path: Path) -> SiteConfig:
    doc = load_toml(SiteFile, path)
    name = doc.site.name
    return SiteConfig(
        source=path,
        name=name,
        seed=doc.site.seed,
        device=None if doc.site.device == "auto" else doc.site.device,
        upstream=doc.upstream.endpoint(),
        data=doc.data,
        model=doc.model,
        privacy=doc.privacy.settings(),
        backoff=doc.reconnect,
        trainer=doc.trainer,
        plan=doc.federation.plan,
        budget_epsilon=doc.privacy.budget_epsilon,
        ledger=doc.privacy.ledger or beside(path, f"{name}.privacy-ledger.jsonl"),
        audit_ledger=doc.audit.ledger or beside(path, f"{name}.audit.jsonl"),
        metrics=doc.metrics,
    )
