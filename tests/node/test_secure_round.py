"""Secure rounds in the engine (no socket): SecAgg+ stages, dropouts, failure, audit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np

from fedsov.codec import iter_chunks
from fedsov.config import SecureAggregationSettings
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import FedsovError, SecureAggregation
from fedsov.messages import (
    PrivacyReport,
    SecAggRequest,
    SecAggStage,
    TrainingPlan,
    TrainTask,
    UpdateHeader,
)
from fedsov.node.engine import EngineSettings, RoundReport
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.pki import NodeIdentity, Role
from fedsov.secagg import SiteRound
from fedsov.strategy import FedAvg

BASE = {"w": np.zeros((40, 25), dtype=np.float32), "b": np.ones(7, dtype=np.float32)}
NO_DP = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)


def engine(tmp_path: Path, *, sites: int, threshold: int, timeout_s: float) -> ScheduledEngine:
    settings = EngineSettings(
        federation="fed",
        min_sites=sites,
        min_updates=1,
        sites_per_round=0,
        round_timeout_s=timeout_s,
        start_timeout_s=10.0,
        seed=0,
        heartbeat_s=1.0,
        secure=SecureAggregationSettings(threshold=threshold, stage_timeout_s=1.5),
    )
    return ScheduledEngine(
        settings,
        Schedule(num_rounds=1, max_attempts=1, training=TrainingPlan(1, 8, 0.1)),
        initial=GlobalModel.from_arrays(BASE, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
        admission=lambda identity: None,
    )


def updates(n: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return {
        f"site-{i:02d}": {
            k: rng.normal(0, 0.05, v.shape).astype(np.float32) for k, v in BASE.items()
        }
        for i in range(n)
    }


async def _chunks(payload: bytes | bytearray) -> AsyncIterator[bytes | memoryview]:
    for chunk in iter_chunks(payload, 997):
        yield chunk


async def site(
    eng: ScheduledEngine, name: str, delta: dict[str, np.ndarray], examples: int, die: str = ""
) -> dict[str, Any]:
    """A site's secure round against the engine; ``die`` stops it "before" or "after"
    its upload. Returns what it saw."""
    me = NodeIdentity(name, Role.site, "EU", "fed")
    events = await eng.subscribe(me)
    task = None
    async for event in events:
        if isinstance(event, TrainTask):
            task = event
            break
    assert task is not None and task.secure is not None
    ids = {"task_id": task.task_id, "round": task.round}
    secure = SiteRound(name, task.secure, round=task.round)
    reply = await eng.secure_step(
        me, SecAggRequest(stage=SecAggStage.ADVERTISE, keys=secure.keys(), **ids)
    )
    reply = await eng.secure_step(
        me, SecAggRequest(stage=SecAggStage.SHARE, shares=secure.share(reply.neighbours), **ids)
    )
    secure.accept_shares(reply.shares)
    if die == "before":
        return {"params": task.secure}
    masked = secure.mask(delta, task.manifest, weight=examples)
    header = UpdateHeader.answering(
        task, masked, num_examples=examples, privacy=NO_DP, contributors=(name,)
    )
    await eng.receive_update(me, header, _chunks(masked.payload))
    if die == "after":
        return {"params": task.secure, "masked": bytes(masked.payload)}
    reply = await eng.secure_step(me, SecAggRequest(stage=SecAggStage.UNMASK, **ids))
    reveals = secure.reveal(reply.survivors, reply.dropped)
    await eng.secure_step(me, SecAggRequest(stage=SecAggStage.REVEAL, reveals=reveals, **ids))
    return {"params": task.secure, "survivors": reply.survivors, "dropped": reply.dropped}


async def run(
    eng: ScheduledEngine, deltas: dict[str, dict[str, np.ndarray]], dies: dict[str, str]
) -> tuple[RoundReport, list[dict[str, Any]]]:
    await eng.prepare()
    runner = asyncio.create_task(eng.run())
    outcomes = await asyncio.gather(
        *(site(eng, s, d, 10 + i, dies.get(s, "")) for i, (s, d) in enumerate(deltas.items())),
        return_exceptions=True,
    )
    with contextlib.suppress(FedsovError):  # a failed round ends the schedule
        await runner
    reports = eng.reports
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if report_ok := reports[-1].completed:
        assert not failed, failed
    assert report_ok or all(isinstance(o, SecureAggregation) for o in failed), failed
    return reports[-1], [o for o in outcomes if isinstance(o, dict)]


def fedavg(deltas: dict[str, dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    weights = {s: 10 + i for i, s in enumerate(deltas)}
    total = sum(weights[s] for s in names)
    return {
        k: v + sum(weights[s] * deltas[s][k].astype(np.float64) for s in names) / total
        for k, v in BASE.items()
    }


def relative_error(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    diff = sum(float(np.sum((got[k] - want[k]) ** 2)) for k in want)
    return float(np.sqrt(diff / sum(float(np.sum((want[k] - BASE[k]) ** 2)) for k in want)))


def test_ten_sites_equal_plain_fedavg(tmp_path: Path) -> None:
    deltas = updates(10)
    eng = engine(tmp_path, sites=10, threshold=0, timeout_s=30.0)
    report, seen = asyncio.run(run(eng, deltas, {}))
    assert report.completed, report.failure
    params = seen[0]["params"]
    assert (params.threshold, params.neighbours, params.ring_bits) == (6, 9, 64)
    assert relative_error(eng.model.arrays(), fedavg(deltas, list(deltas))) <= 1e-5
    assert all(s["survivors"] == tuple(deltas) for s in seen)


def test_dropouts_before_and_after_upload(tmp_path: Path) -> None:
    deltas = updates(10)
    names = list(deltas)
    dies = {names[0]: "before", names[1]: "before"} | {n: "after" for n in names[2:5]}
    eng = engine(tmp_path, sites=10, threshold=5, timeout_s=6.0)
    report, seen = asyncio.run(run(eng, deltas, dies))
    assert report.completed, report.failure
    uploaded = names[2:]
    assert sorted(s.site for s in report.sites if s.status == "accepted") == uploaded
    assert relative_error(eng.model.arrays(), fedavg(deltas, uploaded)) <= 1e-5
    alive = [s for s in seen if "survivors" in s]
    assert alive and all(s["survivors"] == tuple(uploaded) for s in alive)
    assert all(s["dropped"] == tuple(names[:2]) for s in alive)


def test_too_few_survivors_fail_and_export_nothing(tmp_path: Path) -> None:
    deltas = updates(6)
    names = list(deltas)
    dies = {n: "before" for n in names[:3]}  # 3 uploads, threshold 4
    eng = engine(tmp_path, sites=6, threshold=4, timeout_s=5.0)
    start = eng.model.sha256
    report, _ = asyncio.run(run(eng, deltas, dies))
    assert not report.completed
    assert "3 sites uploaded a masked update, the threshold is 4" in report.failure
    assert eng.model.sha256 == start  # nothing new, nothing to export


def test_survivors_that_do_not_reveal_fail_the_round(tmp_path: Path) -> None:
    deltas = updates(6)
    names = list(deltas)
    dies = {n: "after" for n in names[:3]}  # 6 uploads, 3 reveal: threshold 4 not met
    eng = engine(tmp_path, sites=6, threshold=4, timeout_s=5.0)
    report, _ = asyncio.run(run(eng, deltas, dies))
    assert not report.completed
    assert "shares needed; the round cannot be unmasked" in report.failure
