"""With DP off, a two-tier federation produces the flat federation's global model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from fedsov.aggregator.app import RegionalAggregator
from fedsov.aggregator.config import AggregatorConfig, RegionRounds
from fedsov.config import (
    Backoff,
    ClientEndpoint,
    EvaluationConfig,
    ModelConfig,
    PrivacyConfig,
    ServerEndpoint,
    TlsPaths,
)
from fedsov.messages import TrainingPlan
from fedsov.modelref import build_model
from fedsov.node.engine import Engine
from fedsov.node.model import state_to_numpy
from fedsov.pki import NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.pki.identity import NodeIdentity
from fedsov.simulation.datasets import load_digits
from fedsov.site.agent import SiteAgent
from fedsov.site.config import SiteConfig
from fedsov.site.data import DataSpec, save_npz
from fedsov.strategy import SiteDPSettings
from fedsov.testing import make_engine
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

MODEL = ModelConfig("fedsov.simulation.models:mlp", {"in_features": 64, "hidden": 32})
SITES = ("s1", "s2", "s3", "s4")
REGIONS = {"agg-a": ("s1", "s2"), "agg-b": ("s3", "s4")}
PLAN = TrainingPlan(local_epochs=1, batch_size=32, learning_rate=0.5)
NO_DP = PrivacyConfig(noise_multiplier=1.0, max_grad_norm=1.0, delta=1e-5, enabled=False)
ROUNDS = 2
SERVER_HOSTS = ("localhost", "127.0.0.1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    nodes = [NodeSpec("coordinator", Role.coordinator, "EU", SERVER_HOSTS)]
    nodes += [NodeSpec(a, Role.aggregator, "EU", SERVER_HOSTS) for a in REGIONS]
    nodes += [NodeSpec(s, Role.site, "EU") for s in SITES]
    return build_pki(tmp_path_factory.mktemp("pki"), federation="tiers", nodes=nodes)


def tls(p: NodePaths) -> TlsPaths:
    return TlsPaths(p.cert, p.key, p.ca)


def site(tmp_path: Path, pki: dict[str, NodePaths], name: str, port: int) -> SiteAgent:
    index = SITES.index(name)
    data = tmp_path / f"{name}.npz"
    save_npz(data, load_digits().subset(np.arange(index * 150, (index + 1) * 150)))
    return SiteAgent(
        SiteConfig(
            source=tmp_path / f"{name}.toml",
            name=name,
            seed=10 + index,
            device="cpu",
            upstream=ClientEndpoint(f"127.0.0.1:{port}", tls(pki[name]), "localhost"),
            data=DataSpec(path=data),
            model=MODEL,
            privacy=NO_DP,
            backoff=Backoff(0.1, 0.5, 50),
        )
    )


def region_config(
    tmp_path: Path,
    p: NodePaths,
    *,
    name: str,
    upstream_port: int,
    site_dp: SiteDPSettings | None = None,
) -> AggregatorConfig:
    """A regional aggregator of 2 sites, listening on a free port, without a plan."""
    return AggregatorConfig(
        source=tmp_path / f"{name}.toml",
        name=name,
        federation="tiers",
        seed=0,
        plan=None,
        server=ServerEndpoint("127.0.0.1:0", tls(p), None),
        upstream=ClientEndpoint(f"127.0.0.1:{upstream_port}", tls(p), "localhost"),
        model=MODEL,
        evaluation=EvaluationConfig(None),
        rounds=RegionRounds(min_sites=2, sites_per_round=0, timeout_s=60, start_timeout_s=60),
        site_dp=site_dp,
        backoff=Backoff(0.1, 0.5, 50),
        output_dir=tmp_path / name,
    )


def coordinator(tmp_path: Path, participants: int) -> Engine:
    initial = state_to_numpy(build_model(MODEL.factory, MODEL.kwargs, seed=0))
    return make_engine(
        tmp_path,
        initial,
        federation="tiers",
        num_rounds=ROUNDS,
        min_sites=participants,
        min_updates=participants,
        timeout_s=120,
        plan=PLAN,
    )


def accept_any_node_of(federation: str):  # type: ignore[no-untyped-def]
    def admit(identity: NodeIdentity) -> None:
        assert identity.federation == federation

    return admit


async def serve(engine: Engine, pki: dict[str, NodePaths]):  # type: ignore[no-untyped-def]
    c = pki["coordinator"]
    tls = load_tls_material(cert=c.cert, key=c.key, ca=c.ca)
    return await start_server(FederationService(engine, tls=tls), address="127.0.0.1:0", tls=tls)


async def flat(tmp_path: Path, pki: dict[str, NodePaths]) -> dict[str, np.ndarray]:
    engine = coordinator(tmp_path / "flat", participants=len(SITES))
    server = await serve(engine, pki)
    agents = [asyncio.ensure_future(site(tmp_path, pki, s, server.port).run()) for s in SITES]
    try:
        reports = await asyncio.wait_for(engine.run(), 180)
        await asyncio.wait_for(asyncio.gather(*agents), 30)
    finally:
        for a in agents:
            a.cancel()
        await server.stop(0)
    assert all(r.completed for r in reports)
    return {k: v.copy() for k, v in engine.model.arrays().items()}


async def two_tier(tmp_path: Path, pki: dict[str, NodePaths]) -> dict[str, np.ndarray]:
    engine = coordinator(tmp_path / "top", participants=len(REGIONS))
    engine.admit = accept_any_node_of("tiers")
    server = await serve(engine, pki)
    tasks: list[asyncio.Future[object]] = []
    try:
        for name, members in REGIONS.items():
            p = pki[name]
            agg = RegionalAggregator(
                region_config(tmp_path, p, name=name, upstream_port=server.port)
            )
            tasks.append(asyncio.ensure_future(agg.run()))
            await asyncio.wait_for(agg.listening.wait(), 30)
            assert agg.port is not None
            tasks += [
                asyncio.ensure_future(site(tmp_path, pki, s, agg.port).run()) for s in members
            ]
        reports = await asyncio.wait_for(engine.run(), 180)
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        for t in tasks:
            t.cancel()
        await server.stop(0)
    assert all(r.completed for r in reports)
    assert all(s.num_examples == 300 for r in reports for s in r.sites)  # 2 sites x 150
    return {k: v.copy() for k, v in engine.model.arrays().items()}


def test_two_tier_equals_flat_without_dp(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    flat_model = asyncio.run(flat(tmp_path, pki))
    tiered_model = asyncio.run(two_tier(tmp_path, pki))
    initial = state_to_numpy(build_model(MODEL.factory, MODEL.kwargs, seed=0))
    for name, value in flat_model.items():
        assert np.abs(value - initial[name]).max() > 1e-3  # training moved the weights
        diff = float(np.abs(value - tiered_model[name]).max())
        print(f"{name}: max abs difference flat vs two-tier {diff:.2e}")
        assert diff <= 1e-5, f"{name}: max abs difference {diff}"
