"""Helpers for tests and benchmarks: a round engine without config files, a plan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from fedsov.codec import encode
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.messages import PrivacyReport, TrainingPlan, TrainTask, UpdateHeader
from fedsov.node.engine import EngineSettings
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.pki import NodePaths, load_tls_material
from fedsov.proto.v1 import federation_pb2 as pb
from fedsov.strategy import FedAvg
from fedsov.transport import serde
from fedsov.transport.client import FederationClient

__all__ = ["make_engine", "stalling_upload", "tls_client", "two_jurisdiction_plan", "update_for"]

DEFAULT_PLAN = TrainingPlan(local_epochs=1, batch_size=8, learning_rate=0.1)


def make_engine(
    tmp_path: Path,
    initial: Mapping[str, np.ndarray],
    *,
    federation: str,
    num_rounds: int = 1,
    min_sites: int = 1,
    min_updates: int = 1,
    timeout_s: float = 30.0,
    plan: TrainingPlan = DEFAULT_PLAN,
) -> ScheduledEngine:
    """A FedAvg round engine over ``initial``, storing models under ``tmp_path``."""
    return ScheduledEngine(
        EngineSettings(
            federation=federation,
            min_sites=min_sites,
            min_updates=min_updates,
            sites_per_round=0,
            round_timeout_s=timeout_s,
            start_timeout_s=timeout_s,
            seed=0,
            heartbeat_s=1.0,
        ),
        Schedule(num_rounds=num_rounds, max_attempts=1, training=plan),
        initial=GlobalModel.from_arrays(initial, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
    )


NO_DP = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)


def update_for(
    task: TrainTask,
    delta: Mapping[str, np.ndarray],
    num_examples: int,
    *,
    privacy: PrivacyReport = NO_DP,
    metrics: Mapping[str, float] | None = None,
    sha256: str | None = None,
) -> tuple[UpdateHeader, bytes]:
    """An upload answering ``task``: its header and payload (``sha256`` overrides the
    payload's true hash, for tests of a lying sender)."""
    enc = encode(dict(delta))
    header = UpdateHeader.answering(
        task, enc, num_examples=num_examples, privacy=privacy, metrics=metrics
    )
    return replace(header, payload_sha256=sha256 or enc.sha256), bytes(enc.payload)


async def stalling_upload(
    header: UpdateHeader | None, *, trickle: float | None = None
) -> AsyncIterator[pb.UpdateChunk]:
    """A hostile upload's messages: optionally a header, then one byte every
    ``trickle`` s, or silence, for ever."""
    if header is not None:
        yield pb.UpdateChunk(header=serde.update_header_to_proto(header))
    while trickle is not None:
        await asyncio.sleep(trickle)
        yield pb.UpdateChunk(data=b"\0")
    await asyncio.Event().wait()


def tls_client(address: str, paths: NodePaths, server_name: str = "localhost") -> FederationClient:
    """A participant's client presenting ``paths``' certificate."""
    tls = load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca)
    return FederationClient(address, tls=tls, server_name=server_name)


_TWO_JURISDICTIONS = """
[federation]
name = "{name}"
seed = {seed}

[model]
factory = "fedsov.simulation.models:mlp"
kwargs = {{ in_features = 64, hidden = 16, num_classes = 10 }}

[rounds]
num_rounds = {rounds}
timeout_s = {timeout_s}

[training]
local_epochs = 1
batch_size = 64
learning_rate = 0.5

[privacy]
noise_multiplier = 1.0
max_grad_norm = 1.0
delta = 1e-5

[[nodes]]
name = "coordinator"
tier = "global"
jurisdiction = "EU"

[[nodes]]
name = "agg-eu"
tier = "regional"
jurisdiction = "EU"
upstream = "coordinator"

[[nodes]]
name = "agg-in"
tier = "regional"
jurisdiction = "IN"
upstream = "coordinator"

[[nodes]]
name = "paris"
tier = "edge"
jurisdiction = "EU"
upstream = "{paris_upstream}"

[[nodes]]
name = "berlin"
tier = "edge"
jurisdiction = "EU"
upstream = "agg-eu"

[[nodes]]
name = "mumbai"
tier = "edge"
jurisdiction = "IN"
upstream = "agg-in"

[[nodes]]
name = "delhi"
tier = "edge"
jurisdiction = "IN"
upstream = "agg-in"

[policy.residency]
EU = ["EU"]
IN = ["IN", "EU"]

[policy.export]
IN = {{ min_sites = 2, site_dp = true }}

[policy.site_dp]
clip = 1.0
noise_multiplier = 0.5

[policy.budgets]
jurisdiction_epsilon = {{ IN = {in_budget} }}

[simulation]
dataset = "digits"
partition = "iid"
"""


def two_jurisdiction_plan(
    *,
    name: str,
    seed: int,
    rounds: int,
    timeout_s: float,
    paris_upstream: str = "agg-eu",
    in_budget: float = 100.0,
) -> str:
    """A plan's TOML: a coordinator, agg-eu and agg-in, paris and berlin (EU), mumbai and
    delhi (IN); IN exports only aggregates of >= 2 sites with site-level DP."""
    return _TWO_JURISDICTIONS.format(
        name=name,
        seed=seed,
        rounds=rounds,
        timeout_s=timeout_s,
        paris_upstream=paris_upstream,
        in_budget=in_budget,
    )
