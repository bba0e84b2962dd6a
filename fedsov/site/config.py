"""Site agent configuration (TOML): upstream, local data, model and privacy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fedsov.config import Table, load_toml
from fedsov.coordinator.config import ModelConfig, read_model
from fedsov.participant import Backoff
from fedsov.site.data import DataSpec
from fedsov.site.trainer import PrivacyConfig
from fedsov.transport.endpoint import ClientEndpoint, read_client_endpoint

__all__ = ["SiteConfig", "load", "read_backoff", "read_privacy"]


@dataclass(frozen=True)
class SiteConfig:
    source: Path
    name: str
    seed: int
    device: str | None  # None: CUDA when available, else CPU
    upstream: ClientEndpoint
    data: DataSpec
    model: ModelConfig
    privacy: PrivacyConfig
    backoff: Backoff
    plan: Path | None = None  # federation plan: residency checked before dialing
    budget_epsilon: float | None = None  # the site refuses rounds that would exceed it
    ledger: Path | None = None  # persistent record of every release (default: beside config)
    audit_ledger: Path | None = None  # signed audit trail (default: beside config)


def read_backoff(table: Table) -> Backoff:
    """A ``[reconnect]`` table: exponential backoff with jitter towards the upstream."""
    backoff = Backoff(
        initial_s=table.number("initial_backoff_s", 0.5, min=0.0, exclusive_min=True),
        max_s=table.number("max_backoff_s", 30.0, min=0.0, exclusive_min=True),
        max_attempts=table.integer("max_attempts", 0, min=0),
    )
    table.done()
    return backoff


def read_privacy(table: Table) -> PrivacyConfig:
    """A ``[privacy]`` table: the DP-SGD settings the data owner chooses."""
    privacy = PrivacyConfig(
        enabled=table.boolean("enabled", True),
        noise_multiplier=table.number("noise_multiplier", 1.0, min=0.0),
        max_grad_norm=table.number("max_grad_norm", 1.0, min=0.0, exclusive_min=True),
        delta=table.number("delta", 1e-5, min=0.0, max=1.0, exclusive_min=True),
        accountant=table.string("accountant", "pld"),
    )
    table.done()
    return privacy


def load(path: Path) -> SiteConfig:
    doc = load_toml(path)
    site = doc.table("site", required=True)
    name = site.string("name")
    seed = site.integer("seed", 0, min=0)
    device = site.string("device", "auto")
    if device not in ("auto", "cpu") and not device.startswith("cuda"):
        raise site.error("device", f"must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    site.done()

    dt = doc.table("data", required=True)
    if dt.has("path") == dt.has("loader"):
        raise dt.error("path", "give exactly one of 'path' (a CSV/NPZ file) or 'loader'")
    data = DataSpec(
        path=dt.path("path", None),
        loader=dt.string("loader", None),
        kwargs=dt.mapping("kwargs"),
        label_column=dt.string("label_column", "label"),
    )
    dt.done()

    pt = doc.table("privacy", required=True)
    budget = pt.number("budget_epsilon", None, min=0.0, exclusive_min=True)
    ledger = pt.path("ledger", str(path.parent / f"{name}.privacy-ledger.jsonl"))
    privacy = read_privacy(pt)

    backoff = read_backoff(doc.table("reconnect"))

    ft = doc.table("federation")
    plan = ft.path("plan", None)
    ft.done()

    at = doc.table("audit")
    audit_ledger = at.path("ledger", str(path.parent / f"{name}.audit.jsonl"))
    at.done()

    config = SiteConfig(
        source=path,
        name=name,
        seed=seed,
        device=None if device == "auto" else device,
        upstream=read_client_endpoint(doc.table("upstream", required=True)),
        data=data,
        model=read_model(doc.table("model", required=True)),
        privacy=privacy,
        backoff=backoff,
        plan=plan,
        budget_epsilon=budget,
        ledger=ledger,
        audit_ledger=audit_ledger,
    )
    doc.done()
    return config
