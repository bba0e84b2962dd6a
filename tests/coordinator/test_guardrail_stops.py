"""The schedule stops cleanly on a guardrail or a requested stop (in process, no sockets):
the rounds so far stay committed, the ledger records why, every site hears Finished."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedsov.audit.trail import NullAuditTrail
from fedsov.codec import encode, iter_chunks
from fedsov.config import GuardrailSettings
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import LateUpdate
from fedsov.messages import Finished, PrivacyReport, TaskEvent, TrainingPlan, UpdateHeader
from fedsov.node.engine import EngineSettings
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.node.state import StateStore
from fedsov.node.state_sqlite import SqliteStateStore
from fedsov.pki import NodeIdentity, Role
from fedsov.strategy import FedAvg

BASE = {"w": np.zeros((2, 3), dtype=np.float32), "b": np.zeros(3, dtype=np.float32)}
SITES = ("site-a", "site-b")
NO_DP = PrivacyReport(enabled=False, epsilon=0.0, delta=0.0)


class RecordingTrail(NullAuditTrail):
    """A trail that keeps what ``stopped`` was told (and writes nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.stops: list[dict[str, Any]] = []

    def stopped(self, **fields: Any) -> None:
        self.stops.append(fields)


def engine(
    tmp_path: Path,
    guardrails: GuardrailSettings | None,
    *,
    num_rounds: int = 10,
    min_sites: int = len(SITES),
    state: StateStore | None = None,
    round_timeout_s: float = 30.0,
) -> ScheduledEngine:
    return ScheduledEngine(
        EngineSettings(
            federation="fed",
            min_sites=min_sites,
            min_updates=1,
            sites_per_round=0,
            round_timeout_s=round_timeout_s,
            start_timeout_s=30.0,
            seed=0,
            heartbeat_s=1.0,
        ),
        Schedule(num_rounds=num_rounds, max_attempts=1, training=TrainingPlan()),
        initial=GlobalModel.from_arrays(BASE, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
        state=state,
        admission=lambda identity: None,
        audit=RecordingTrail(),
        guardrails=guardrails,
    )


def identity(site: str, jurisdiction: str = "EU") -> NodeIdentity:
    return NodeIdentity(site, Role.site, jurisdiction, "fed")


async def chunks(payload: bytes) -> AsyncIterator[bytes]:
    for chunk in iter_chunks(payload, 64):
        yield bytes(chunk)


async def upload(
    eng: ScheduledEngine, site: str, *, epsilon: float = 1.0, seconds: float = 0.0
) -> None:
    assert eng.current is not None
    record = eng.current.task_for_site(site)
    assert record is not None
    enc = encode({k: np.full(v.shape, 0.1, v.dtype) for k, v in BASE.items()})
    header = UpdateHeader.answering(
        record.task,
        enc,
        num_examples=10,
        privacy=PrivacyReport(enabled=True, epsilon=epsilon, delta=1e-5),
        metrics={"training_seconds": seconds, "train_loss": 0.3},
    )
    await eng.receive_update(identity(site), header, chunks(bytes(enc.payload)))


async def round_open(eng: ScheduledEngine, number: int) -> None:
    while eng.current is None or eng.current.number != number:
        await asyncio.sleep(0.01)


async def finished(stream: AsyncIterator[TaskEvent]) -> Finished:
    async for event in stream:
        if isinstance(event, Finished):
            return event
    raise AssertionError("the stream ended without Finished")


def trail(eng: ScheduledEngine) -> RecordingTrail:
    assert isinstance(eng.audit, RecordingTrail)
    return eng.audit


def test_a_tripped_rule_finishes_the_federation_and_tells_every_site(tmp_path: Path) -> None:
    async def scenario() -> tuple[ScheduledEngine, list[Finished]]:
        eng = engine(tmp_path, GuardrailSettings(max_site_training_s=0.5))
        streams = [await eng.subscribe(identity(s)) for s in SITES]
        told = [asyncio.ensure_future(finished(s)) for s in streams]
        run = asyncio.ensure_future(eng.run())
        for number in (1, 2, 3):  # 0.2 s each: 0.6 s > 0.5 s after round 3
            await round_open(eng, number)
            await asyncio.sleep(0.25)  # no claim counts more than its round lasted
            for site in SITES:
                await upload(eng, site, seconds=0.2)
        await run
        return eng, list(await asyncio.gather(*told))

    eng, told = asyncio.run(scenario())
    assert eng.stop is not None and eng.stop.kind == "compute-budget"
    assert eng.stop.detail == (
        "site site-a reported 0.6 training seconds, past max_site_training_s = 0.5 after round 3"
    )
    assert [r.round for r in eng.reports if r.completed] == [1, 2, 3]
    assert eng.model.round == 3  # the last round's model is committed
    assert {f.reason for f in told} == {eng.stop.status}
    assert told[0].rounds == 3 and told[0].model_sha256 == eng.model.sha256
    assert trail(eng).stops == [
        {
            "kind": "compute-budget",
            "detail": eng.stop.detail,
            "exit_code": 4,
            "round": 3,
            "operator": False,
        }
    ]
    # training_seconds is public metadata; other metrics a site sends are not kept
    assert all(s.metrics == {"training_seconds": 0.2} for r in eng.reports for s in r.sites)


def test_jurisdictions_come_from_the_certificates_seen(tmp_path: Path) -> None:
    async def scenario() -> ScheduledEngine:
        eng = engine(tmp_path, GuardrailSettings(epsilon_ceiling={"IN": 1.5}))
        await eng.subscribe(identity("site-a", "EU"))
        await eng.subscribe(identity("site-b", "IN"))
        run = asyncio.ensure_future(eng.run())
        for number, epsilon in ((1, 1.0), (2, 2.0)):
            await round_open(eng, number)
            await upload(eng, "site-a", epsilon=epsilon * 10)  # EU has no ceiling
            await upload(eng, "site-b", epsilon=epsilon)
        await run
        return eng

    eng = asyncio.run(scenario())
    assert eng.stop is not None and eng.stop.kind == "privacy-ceiling"
    assert eng.stop.detail == "IN's worst site ε 2 (site-b) passed its ceiling 1.5 after round 2"


def test_wall_time_cuts_the_open_round_short(tmp_path: Path) -> None:
    """The limit passes while a round waits for updates: it closes now with the one it
    has (committed, as at its deadline) and the federation stops."""

    async def scenario() -> tuple[ScheduledEngine, Finished]:
        eng = engine(tmp_path, GuardrailSettings(max_wall_time_s=2.0), round_timeout_s=600.0)
        await eng.subscribe(identity("site-a"))
        told = asyncio.ensure_future(finished(await eng.subscribe(identity("site-b"))))
        run = asyncio.ensure_future(eng.run())
        await round_open(eng, 1)
        await upload(eng, "site-a")
        assert eng.current is not None
        task = eng.current.task_for_site("site-b")
        assert task is not None
        while eng.stop is None:  # site-b still trains when the limit cuts the round
            await asyncio.sleep(0.01)
        assert not run.done()  # the coordinator serves site-b until it comes back
        late = UpdateHeader.answering(task.task, encode(BASE), num_examples=10, privacy=NO_DP)
        with pytest.raises(LateUpdate, match="round 1 is closed"):
            eng.check_upload(identity("site-b"), late)
        async with asyncio.timeout(10):  # less than the grace a cut site gets
            await run
        return eng, await told

    eng, told = asyncio.run(scenario())
    assert eng.finished is not None and told.reason == eng.finished.reason
    assert eng.stop is not None and eng.stop.kind == "wall-time"
    assert eng.stop.detail.endswith("its limit max_wall_time_s is 2 s (round 1 cut short)")
    (report,) = eng.reports
    assert report.completed and eng.model.round == 1
    assert {s.site: s.status for s in report.sites} == {"site-a": "accepted", "site-b": "late"}
    assert trail(eng).stops[0]["exit_code"] == 3


def test_wall_time_ends_a_wait_for_sites(tmp_path: Path) -> None:
    async def scenario() -> ScheduledEngine:
        eng = engine(tmp_path, GuardrailSettings(max_wall_time_s=0.5))
        await eng.subscribe(identity("site-a"))  # min_sites is 2
        async with asyncio.timeout(30):
            await eng.run()
        return eng

    eng = asyncio.run(scenario())
    assert eng.stop is not None and eng.stop.kind == "wall-time"
    assert eng.stop.detail.endswith("(while waiting for sites)")
    assert eng.reports == [] and eng.finished is not None


def test_an_operator_stop_ends_the_schedule_after_the_open_round(tmp_path: Path) -> None:
    async def scenario() -> tuple[ScheduledEngine, bool, bool]:
        eng = engine(tmp_path, None)
        for site in SITES:
            await eng.subscribe(identity(site))
        run = asyncio.ensure_future(eng.run())
        await round_open(eng, 1)
        for site in SITES:
            await upload(eng, site)
        await round_open(eng, 2)
        first = eng.request_stop("operator", "maintenance (operator ops)")
        again = eng.request_stop("operator", "twice")
        assert eng.current is not None and not eng.current.closed  # the round goes on
        for site in SITES:
            await upload(eng, site)
        await run
        return eng, first, again

    eng, first, again = asyncio.run(scenario())
    assert (first, again) == (True, False)
    assert eng.stop is not None and eng.stop.exit_code == 8
    assert eng.stop.status == "stopped by operator: maintenance (operator ops)"
    assert [r.round for r in eng.reports] == [1, 2] and all(r.completed for r in eng.reports)
    assert trail(eng).stops[0]["operator"] is True
    assert eng.finished is not None and eng.finished.reason == eng.stop.status


def test_an_operator_stop_while_waiting_for_sites_stops_at_once(tmp_path: Path) -> None:
    async def scenario() -> ScheduledEngine:
        eng = engine(tmp_path, None)
        run = asyncio.ensure_future(eng.run())
        await asyncio.sleep(0.05)  # waiting for 2 sites, none connected
        eng.request_stop("operator", "not today")
        async with asyncio.timeout(10):
            await run
        return eng

    eng = asyncio.run(scenario())
    assert eng.stop is not None and eng.stop.kind == "operator" and eng.reports == []
    with pytest.raises(ValueError, match="no stop of kind"):
        eng.request_stop("whim", "x")
    assert eng.request_stop("operator", "again") is False  # finished already


def test_a_restarted_coordinator_past_a_limit_stops_before_round_one_more(tmp_path: Path) -> None:
    """The reports are committed: a restart with a ceiling they pass stops at once."""

    async def first_life() -> None:
        eng = engine(tmp_path, None, num_rounds=2, state=SqliteStateStore(tmp_path / "s.db"))
        for site in SITES:
            await eng.subscribe(identity(site))
        run = asyncio.ensure_future(eng.run())
        await round_open(eng, 1)
        for site in SITES:
            await upload(eng, site, epsilon=3.0)
        await round_open(eng, 2)
        run.cancel()  # SIGTERM mid-round 2
        with pytest.raises(asyncio.CancelledError):
            await run
        eng.state.close()

    async def second_life() -> ScheduledEngine:
        state = SqliteStateStore(tmp_path / "s.db")
        eng = engine(tmp_path, GuardrailSettings(epsilon_ceiling={"*": 2.0}), state=state)
        for site in SITES:
            await eng.subscribe(identity(site))
        async with asyncio.timeout(10):
            await eng.run()
        state.close()
        return eng

    asyncio.run(first_life())
    eng = asyncio.run(second_life())
    assert eng.stop is not None and eng.stop.detail.endswith("after round 1")
    assert [r.round for r in eng.reports] == [1]
