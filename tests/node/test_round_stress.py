"""Many concurrent uploads into one round of the real engine: the aggregate is exactly
the FedAvg of the uploads that completed before the deadline, and the round resolves once.

Bounded by count, not by time. The event loop's clock is a test seam: it moves only
when the test moves it, so the round's deadline timer fires when the test says the
deadline passed, never because the machine was slow. No assertion depends on the
order in which asyncio happens to run the participants.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from test_rounds import make_round

from fedsov.audit import AuditLedger, Signer
from fedsov.audit.record import AuditEvent
from fedsov.audit.trail import AuditTrail
from fedsov.codec import encode, iter_chunks
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import DuplicateUpdate, LateUpdate
from fedsov.messages import PrivacyReport, TrainingPlan, TrainTask, UpdateHeader, UploadReceipt
from fedsov.node.engine import Engine, EngineSettings, RoundReport
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.node.rounds import Round, TaskRecord, TaskStatus
from fedsov.node.state_sqlite import SqliteStateStore
from fedsov.pki import NodeIdentity, Role
from fedsov.pki._keys import generate_key
from fedsov.strategy import FedAvg

BASE = {"w": np.zeros((8, 8), dtype=np.float32), "b": np.ones(8, dtype=np.float32)}
CHUNK = 16  # bytes: 18 chunks an update, so the uploads interleave
TIMEOUT_S = 3600.0  # virtual seconds (and, for the wall-clock checks, far away)

# How many participants do what, in one round of 50.
ON_TIME = 24  # the whole update arrives before the deadline
DUPLICATED = 2  # the same update sent twice at once: counted once
CANCELLED = 4  # the peer goes away mid-upload and never comes back
RETRIED = 4  # the peer goes away mid-upload, then sends its update again in time
IN_FLIGHT = 8  # still arriving when the deadline closes the round
LATE = 6  # starts only after the round closed
DECLINED = 2  # refuses its task


class ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when ``advance`` is called."""

    def __init__(self) -> None:
        super().__init__()
        self._now = 0.0

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds


@dataclass
class Participant:
    site: str
    kind: str
    value: float  # every element of its update
    num_examples: int
    events: AsyncIterator[object] | None = None
    task: TrainTask | None = None
    held: asyncio.Event = field(default_factory=asyncio.Event)  # part of it is in
    release: asyncio.Event = field(default_factory=asyncio.Event)  # send the rest

    @property
    def identity(self) -> NodeIdentity:
        return NodeIdentity(self.site, Role.site, "EU", "stress")


def population() -> list[Participant]:
    kinds = (
        ["on-time"] * ON_TIME
        + ["duplicated"] * DUPLICATED
        + ["cancelled"] * CANCELLED
        + ["retried"] * RETRIED
        + ["in-flight"] * IN_FLIGHT
        + ["late"] * LATE
        + ["declined"] * DECLINED
    )
    return [
        Participant(
            site=f"site-{i:02d}",
            kind=kind,
            value=float((i * 7) % 13 - 6) + i / 64,
            num_examples=1 + (i * 37) % 97,
        )
        for i, kind in enumerate(kinds)
    ]


def engine(tmp_path: Path) -> ScheduledEngine:
    settings = EngineSettings(
        federation="stress",
        min_sites=0,
        min_updates=1,
        sites_per_round=0,  # every connected site gets a task
        round_timeout_s=TIMEOUT_S,
        start_timeout_s=5.0,
        seed=0,
        heartbeat_s=TIMEOUT_S,
    )
    ledger = AuditLedger.open(
        tmp_path / "audit" / "ledger.jsonl",
        signer=Signer(generate_key()),
        node="coordinator",
        jurisdiction="EU",
    )
    return ScheduledEngine(
        settings,
        Schedule(num_rounds=1, max_attempts=1, training=TrainingPlan(1, 8, 0.1)),
        initial=GlobalModel.from_arrays(BASE, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
        state=SqliteStateStore(tmp_path / "state" / "fedsov.db"),
        admission=lambda identity: None,
        audit=AuditTrail(ledger),
    )


def update(p: Participant, model: GlobalModel, value: float) -> tuple[UpdateHeader, bytes]:
    assert p.task is not None
    enc = encode({k: np.full(v.shape, value, dtype=v.dtype) for k, v in model.arrays().items()})
    header = UpdateHeader(
        task_id=p.task.task_id,
        round=p.task.round,
        manifest=enc.manifest,
        num_examples=p.num_examples,
        payload_size=enc.size,
        payload_sha256=enc.sha256,
        base_model_sha256=model.sha256,
        privacy=PrivacyReport(enabled=True, epsilon=1.0, delta=1e-5),
    )
    return header, bytes(enc.payload)


async def stream(
    payload: bytes, *, hold_after: int | None = None, p: Participant | None = None
) -> AsyncIterator[bytes]:
    """The payload in chunks, yielding to the loop after each; with ``hold_after``,
    signal ``p.held`` after that many chunks and wait for ``p.release``."""
    for i, chunk in enumerate(iter_chunks(payload, CHUNK)):
        if hold_after is not None and i == hold_after:
            assert p is not None
            p.held.set()
            await p.release.wait()
        yield bytes(chunk)
        await asyncio.sleep(0)


def hold_point(p: Participant, payload: bytes) -> int:
    """Somewhere strictly inside the upload, different for each site."""
    n = -(-len(payload) // CHUNK)
    return 1 + int(p.site[-2:]) % (n - 1)


async def send(
    eng: Engine, rnd: Round, p: Participant, value: float, *, hold: bool = False
) -> UploadReceipt:
    header, payload = update(p, rnd.model, value)
    chunks = stream(payload, hold_after=hold_point(p, payload) if hold else None, p=p)
    return await eng.receive_update(p.identity, header, chunks)


def count_resolutions(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """A spy on Round._resolve: how often each task was resolved."""
    seen: Counter[str] = Counter()
    original: Callable[..., None] = Round._resolve

    def resolve(self: Round, record: TaskRecord, status: TaskStatus, reason: str = "") -> None:
        seen[record.task.task_id] += 1
        original(self, record, status, reason)

    monkeypatch.setattr(Round, "_resolve", resolve)
    return seen


@dataclass
class Crowd:
    """One round of the real engine, every participant connected and holding its task."""

    eng: Engine
    rnd: Round
    run: asyncio.Future[RoundReport]
    everyone: list[Participant]
    uploads: list[tuple[Participant, asyncio.Future[object]]] = field(default_factory=list)

    def of(self, *kinds: str) -> list[Participant]:
        return [p for p in self.everyone if p.kind in kinds]

    def uploads_of(self, *kinds: str) -> list[asyncio.Future[object]]:
        return [upload for p, upload in self.uploads if p.kind in kinds]

    async def act(self, p: Participant) -> object:
        if p.kind == "declined":
            assert p.task is not None
            self.eng.decline(
                p.identity, task_id=p.task.task_id, round=1, code="budget", reason="no"
            )
            return None
        hold = p.kind in ("cancelled", "retried", "in-flight")
        return await send(self.eng, self.rnd, p, p.value, hold=hold)


async def open_round(eng: Engine) -> Crowd:
    everyone = population()
    for p in everyone:
        p.events = await eng.subscribe(p.identity)
    run = asyncio.ensure_future(eng.run_round(1, training=eng.schedule.training))
    for p in everyone:  # each site learns its task from its own task stream
        assert p.events is not None
        event = await anext(p.events)
        assert isinstance(event, TrainTask)
        p.task = event
    assert eng.current is not None and len(eng.current.tasks) == len(everyone)
    return Crowd(eng, eng.current, run, everyone)


async def before_the_deadline(crowd: Crowd, order: random.Random) -> None:
    """Everyone but the late starts at once, in a shuffled order; some peers go away
    part-way and some of those send again; the in-flight ones stay part-way in."""
    started = crowd.of("on-time", "duplicated", "cancelled", "retried", "in-flight", "declined")
    started += crowd.of("duplicated")  # their second, simultaneous copy
    order.shuffle(started)
    crowd.uploads = [(p, asyncio.ensure_future(crowd.act(p))) for p in started]
    held = crowd.of("cancelled", "retried", "in-flight")
    await asyncio.gather(*(p.held.wait() for p in held))  # each is part-way in
    gone = crowd.uploads_of("cancelled", "retried")
    for upload in gone:  # the peers that go away mid-upload
        upload.cancel()
    for upload in gone:
        with pytest.raises(asyncio.CancelledError):
            await upload
    retries = [send(crowd.eng, crowd.rnd, p, -p.value) for p in crowd.of("retried")]
    await asyncio.gather(*retries, *crowd.uploads_of("on-time", "declined"))
    for upload in crowd.uploads_of("duplicated"):  # one copy accepted, the other refused
        try:  # or, if the first was in before the second began, replayed
            await upload
        except DuplicateUpdate as exc:
            assert "already" in str(exc)
    assert not crowd.rnd.done.is_set()  # the in-flight and late sites hold it open


async def after_the_deadline(crowd: Crowd) -> None:
    """The rest of the in-flight updates arrive, then the late ones: all too late."""
    for p in crowd.of("in-flight"):
        p.release.set()
    for upload in crowd.uploads_of("in-flight"):
        with pytest.raises(LateUpdate, match="closed while this update was arriving"):
            await upload
    for p in crowd.of("late"):
        with pytest.raises(LateUpdate, match="round 1 is closed"):
            await send(crowd.eng, crowd.rnd, p, p.value)
    for p in crowd.everyone:
        assert isinstance(p.events, AsyncGenerator)
        await p.events.aclose()


async def scenario(tmp_path: Path, order: random.Random) -> tuple[Crowd, RoundReport]:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ManualClockLoop)
    crowd = await open_round(engine(tmp_path))
    await before_the_deadline(crowd, order)
    loop.advance(2 * TIMEOUT_S)  # the deadline passes
    report = await crowd.run
    await after_the_deadline(crowd)
    return crowd, report


@pytest.mark.timeout(120)  # a hang guard: a broken engine would wait forever
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_crowded_round_folds_exactly_the_updates_in_before_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    resolutions = count_resolutions(monkeypatch)
    with asyncio.Runner(loop_factory=ManualClockLoop) as runner:
        crowd, report = runner.run(scenario(tmp_path, random.Random(seed)))
    eng, everyone, rnd = crowd.eng, crowd.everyone, crowd.rnd
    eng.state.close()
    assert eng.audit is not None
    eng.audit.close()

    # What counted: the value each site's accepted update carried.
    counted = {
        p.site: (p.value, p.num_examples) for p in everyone if p.kind in ("on-time", "duplicated")
    }
    counted |= {p.site: (-p.value, p.num_examples) for p in everyone if p.kind == "retried"}
    total = sum(n for _, n in counted.values())
    mean = sum(v * n for v, n in counted.values()) / total
    for name, value in eng.model.arrays().items():
        np.testing.assert_allclose(value, BASE[name] + mean, rtol=1e-5, atol=1e-5)

    # Each task resolved exactly once, as its participant's fate says.
    want = {
        "on-time": "accepted",
        "duplicated": "accepted",
        "retried": "accepted",
        "cancelled": "late",
        "in-flight": "late",
        "late": "late",
        "declined": "declined",
    }
    status = {s.site: s.status for s in report.sites}
    assert status == {p.site: want[p.kind] for p in everyone}
    assert sorted(resolutions.values()) == [1] * len(everyone)
    assert set(resolutions) == set(rnd.tasks)
    reasons = {s.site: s.reason for s in report.sites}
    for p in everyone:
        if p.kind == "in-flight":
            assert reasons[p.site] == "upload still arriving at the deadline"
        elif p.kind == "cancelled":
            assert reasons[p.site] == "no update before the deadline (upload aborted by the peer)"
        elif p.kind == "late":
            assert reasons[p.site] == "no update before the deadline"
    examples = {s.site: s.num_examples for s in report.sites if s.status == "accepted"}
    assert examples == {site: n for site, (_, n) in counted.items()}

    # The round resolved once: one report, one commit, one model, one receipt a site.
    assert report.completed and report.round == 1 and report.attempt == 1
    assert eng.reports == [report]
    assert eng.current is None and rnd.closed and rnd.done.is_set()
    assert report.model_sha256 == eng.model.sha256 != rnd.model.sha256
    state = SqliteStateStore(tmp_path / "state" / "fedsov.db")
    assert [r["round"] for r in state.reports()] == [1]
    assert state.open_round_row() is None
    assert sorted(r.site for r in state.receipts(1, 1)) == sorted(counted)
    stored = {t.site: t.status for t in state.tasks(1, 1)}
    assert {s for s, v in stored.items() if v == "declined"} == {
        p.site for p in everyone if p.kind == "declined"
    }
    state.close()
    assert not (tmp_path / "work" / "spool" / "round-0001-1").exists()
    blobs = sorted((tmp_path / "models" / "blobs").iterdir())
    assert [b.name.split(".")[0] for b in blobs] == [eng.model.sha256]

    # The audit trail received exactly the accepted updates, once each.
    received = [r.peer for r in eng.audit.ledger.records if r.event == AuditEvent.update_received]
    assert sorted(str(peer) for peer in received) == sorted(counted)


@pytest.mark.timeout(60)
def test_an_upload_that_outlives_its_round_is_late_or_cancelled(tmp_path: Path) -> None:
    """The regression under the crowd: an upload still arriving when the deadline closed
    a round that then produced its model used to fail with RuntimeError (the aggregate
    was gone) instead of LateUpdate, and a cancelled one with it instead of
    CancelledError. close() now ends them itself: LateUpdate, unless cancelled too."""

    async def scenario() -> None:
        rnd = make_round(tmp_path)
        done = Participant("site-c", "on-time", 3.0, 5)
        done.task = rnd.tasks["t-site-c"].task
        await rnd.receive("site-c", *_header_and_stream(done, rnd))
        late, gone = Participant("site-a", "in-flight", 1.0, 5), Participant("site-b", "", 2.0, 5)
        uploads = []
        for p in (late, gone):
            p.task = rnd.tasks[f"t-{p.site}"].task
            header, payload = update(p, rnd.model, p.value)
            chunks = stream(payload, hold_after=1, p=p)
            uploads.append(asyncio.ensure_future(rnd.receive(p.site, header, chunks)))
            await p.held.wait()
        rnd.close()  # ends both calls at once (LateUpdate), silent or not...
        uploads[1].cancel()  # ...but a cancellation on top of it (SIGTERM) stays one
        rnd.next_model()
        late.release.set()
        with pytest.raises(LateUpdate, match="closed while this update was arriving"):
            await uploads[0]
        with pytest.raises(asyncio.CancelledError):
            await uploads[1]
        assert [rnd.tasks[f"t-{s}"].status for s in ("site-a", "site-b")] == ["late", "late"]
        assert list(rnd.spool_dir.iterdir()) == []

    asyncio.run(scenario())


def _header_and_stream(p: Participant, rnd: Round) -> tuple[UpdateHeader, AsyncIterator[bytes]]:
    header, payload = update(p, rnd.model, p.value)
    return header, stream(payload)
