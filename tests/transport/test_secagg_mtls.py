"""Secure aggregation over real mTLS gRPC on loopback: the aggregator sees only sums.

Everything the aggregator process receives (every secure-aggregation message, every
upload chunk) and keeps (spool files, the state store) during one round is captured
and searched for any site's update, mask seed or plaintext share.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from fedsov.codec import encode
from fedsov.config import SecureAggregationSettings
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.messages import (
    PrivacyReport,
    SecAggReply,
    SecAggRequest,
    SecAggStage,
    TrainingPlan,
    TrainTask,
    UpdateHeader,
    UploadReceipt,
)
from fedsov.node.engine import EngineSettings
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.node.state_sqlite import SqliteStateStore
from fedsov.pki import NodeIdentity, NodePaths, NodeSpec, Role, build_pki, load_tls_material
from fedsov.secagg import SiteRound
from fedsov.strategy import FedAvg
from fedsov.testing import tls_client
from fedsov.transport.server import start_server
from fedsov.transport.service import FederationService

BASE = {"w": np.zeros((64, 32), dtype=np.float32), "b": np.zeros(32, dtype=np.float32)}
SITES = ("site-1", "site-2", "site-3", "site-4")
NO_DP = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, NodePaths]:
    root = tmp_path_factory.mktemp("pki")
    nodes = [NodeSpec("agg", Role.aggregator, "EU", ("localhost", "127.0.0.1"))]
    nodes += [NodeSpec(name, Role.site, "EU") for name in SITES]
    return build_pki(root / "fed", federation="fed", nodes=nodes)


class Capturing(ScheduledEngine):
    """The engine, recording every byte its sites send it."""

    seen: list[bytes]

    async def secure_step(self, identity: NodeIdentity, request: SecAggRequest) -> SecAggReply:
        if request.keys is not None:
            self.seen += [request.keys.cipher_key, request.keys.mask_key]
        self.seen += [s.ciphertext for s in request.shares]
        self.seen += [r.value for r in request.reveals]
        self.reveals += [(r.owner, r.mask_key) for r in request.reveals]
        return await super().secure_step(identity, request)

    async def receive_update(
        self,
        identity: NodeIdentity,
        header: UpdateHeader,
        chunks: AsyncIterator[bytes | memoryview],
    ) -> UploadReceipt:
        async def kept() -> AsyncIterator[bytes | memoryview]:
            async for chunk in chunks:
                self.seen.append(bytes(chunk))
                yield chunk

        return await super().receive_update(identity, header, kept())


def make_engine(tmp_path: Path) -> Capturing:
    settings = EngineSettings(
        federation="fed",
        min_sites=len(SITES),
        min_updates=1,
        sites_per_round=0,
        round_timeout_s=30.0,
        start_timeout_s=10.0,
        seed=0,
        heartbeat_s=1.0,
        secure=SecureAggregationSettings(threshold=3, stage_timeout_s=5.0),
    )
    engine = Capturing(
        settings,
        Schedule(num_rounds=1, max_attempts=1, training=TrainingPlan(1, 8, 0.1)),
        initial=GlobalModel.from_arrays(BASE, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
        state=SqliteStateStore(tmp_path / "state.db"),
    )
    engine.seen, engine.reveals = [], []
    return engine


async def one_site(
    address: str, paths: NodePaths, delta: dict[str, np.ndarray], kept: dict[str, object]
) -> None:
    client = tls_client(address, paths)
    try:
        await client.join(device="cpu")
        task = None
        async for event in client.tasks():
            if isinstance(event, TrainTask):
                task = event
                break
        assert task is not None and task.secure is not None
        ids = {"task_id": task.task_id, "round": task.round}
        name = paths_name(paths)
        secure = SiteRound(name, task.secure, round=task.round)
        step = client.secure_step
        reply = await step(
            SecAggRequest(stage=SecAggStage.ADVERTISE, keys=secure.keys(), **ids), timeout=30
        )
        shares = secure.share(reply.neighbours)
        reply = await step(SecAggRequest(stage=SecAggStage.SHARE, shares=shares, **ids), timeout=30)
        secure.accept_shares(reply.shares)
        masked = secure.mask(delta, task.manifest, weight=10)
        header = UpdateHeader.answering(
            task, masked, num_examples=10, privacy=NO_DP, contributors=(name,)
        )
        await client.upload(header, masked.payload)
        reply = await step(SecAggRequest(stage=SecAggStage.UNMASK, **ids), timeout=30)
        reveals = secure.reveal(reply.survivors, reply.dropped)
        await step(SecAggRequest(stage=SecAggStage.REVEAL, reveals=reveals, **ids), timeout=30)
        kept[name] = secure
    finally:
        await client.close()


def paths_name(paths: NodePaths) -> str:
    return load_tls_material(cert=paths.cert, key=paths.key, ca=paths.ca).identity.name


def test_aggregator_sees_no_update_seed_or_share(tmp_path: Path, pki: dict[str, NodePaths]) -> None:
    rng = np.random.default_rng(3)
    deltas = {
        s: {k: rng.normal(0, 0.1, v.shape).astype(np.float32) for k, v in BASE.items()}
        for s in SITES
    }
    engine = make_engine(tmp_path)
    kept: dict[str, object] = {}

    async def scenario() -> None:
        a = pki["agg"]
        tls = load_tls_material(cert=a.cert, key=a.key, ca=a.ca)
        server = await start_server(
            FederationService(engine, tls=tls), address="127.0.0.1:0", tls=tls
        )
        await engine.prepare()
        run = asyncio.ensure_future(engine.run())
        try:
            address = f"127.0.0.1:{server.port}"
            await asyncio.gather(*(one_site(address, pki[s], deltas[s], kept) for s in SITES))
            (report,) = await asyncio.wait_for(run, 60)
            assert report.completed, report.failure
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            await server.stop(0)

    asyncio.run(scenario())
    mean = {k: sum(deltas[s][k].astype(np.float64) for s in SITES) / len(SITES) for k in BASE}
    got = engine.model.arrays()
    assert max(float(np.abs(got[k] - mean[k]).max()) for k in BASE) < 1e-6

    # What the aggregator received and kept: messages, then every file it wrote.
    blobs = list(engine.seen)
    blobs += [
        p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and "models" not in p.parts
    ]
    haystack = b"".join(blobs)
    for site, secure in kept.items():
        assert isinstance(secure, SiteRound)
        assert secure._seed not in haystack, f"{site}'s self-mask seed reached the aggregator"
        private = secure._mask.private_bytes_raw()
        assert private not in haystack, f"{site}'s mask key reached the aggregator"
        plain = encode(deltas[site]).payload
        assert bytes(plain[:256]) not in haystack, f"{site}'s update reached the aggregator"
        for _seed_share, key_share in secure._held.values():
            assert key_share not in haystack  # no one dropped: no mask-key share is revealed
    # Per owner, shares of one kind only: never both the seed and the mask key of a site.
    kinds: dict[str, set[bool]] = {}
    for owner, is_key in engine.reveals:
        kinds.setdefault(owner, set()).add(is_key)
    assert kinds and all(k == {False} for k in kinds.values())
