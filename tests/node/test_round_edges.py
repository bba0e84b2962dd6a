"""Edges of one round: what a task's record says when it ends, the exact refusals a
site hears, the crash points an upload passes, and what is left when folding,
spooling or storing the receipt fails part-way."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_rounds import _ClipToUnitNorm, chunks, delta, expected, header_for, make_round

from fedsov.codec import Segment, iter_chunks
from fedsov.exceptions import DuplicateUpdate, LateUpdate, ProtocolError, StateError
from fedsov.faults import POINTS
from fedsov.messages import UpdateHeader, UploadReceipt
from fedsov.node import rounds as rounds_module
from fedsov.node.rounds import Round, TaskStatus
from fedsov.node.state import MemoryStateStore, Receipt, RoundRow, TaskRow
from fedsov.strategy import FedAvgAggregate


def with_state(rnd: Round, store: MemoryStateStore | None = None) -> MemoryStateStore:
    """Give ``rnd`` a state store that holds its round and tasks."""
    store = store or MemoryStateStore()
    store.open_round(
        RoundRow(rnd.number, rnd.attempt, rnd.model.sha256, 1, {}, 0.0),
        [TaskRow(tid, rnd.number, rnd.attempt, r.site) for tid, r in rnd.tasks.items()],
    )
    rnd.state = store
    return store


class _Gate:
    """An upload that sends its first chunk, then waits for ``go`` before the rest."""

    def __init__(self, payload: bytes, size: int = 8) -> None:
        self.pieces = [bytes(c) for c in iter_chunks(payload, size)]
        self.half_in, self.go = asyncio.Event(), asyncio.Event()

    async def stream(self) -> AsyncIterator[bytes]:
        yield self.pieces[0]
        self.half_in.set()
        await self.go.wait()
        for piece in self.pieces[1:]:
            yield piece


async def half_in(
    rnd: Round, site: str, value: float, n: int
) -> tuple[_Gate, asyncio.Task[UploadReceipt], UpdateHeader, bytes]:
    """Start ``site``'s upload of ``delta(value)`` (weight ``n``) through a ``_Gate``;
    return once its first chunk is in."""
    header, payload = header_for(rnd, site, delta(value), n)
    gate = _Gate(payload)
    upload = asyncio.ensure_future(rnd.receive(site, header, gate.stream()))
    await gate.half_in.wait()
    return gate, upload, header, payload


def moved(rnd: Round) -> np.ndarray:
    out = rnd.aggregate.result(rnd.model.arrays())
    return np.concatenate([(out[k] - rnd.model.arrays()[k]).ravel() for k in out])


def test_task_for_site_is_that_site_task_or_none(tmp_path: Path) -> None:
    rnd = make_round(tmp_path)
    record = rnd.task_for_site("site-b")
    assert record is not None and record.task.task_id == "t-site-b"
    assert rnd.task_for_site("site-z") is None


def test_a_task_accepted_after_an_aborted_try_carries_no_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        _, upload, h, p = await half_in(rnd, "site-a", 1.0, 10)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        record = rnd.tasks["t-site-a"]
        assert (record.status, record.reason) == (TaskStatus.PENDING, "upload aborted by the peer")
        assert record.upload is None
        await rnd.receive("site-a", h, chunks(p))
        assert (record.status, record.reason) == (TaskStatus.ACCEPTED, "")
        assert record.upload is None and record.header == h

    asyncio.run(scenario())


def test_closing_at_the_deadline_says_so_for_each_unfinished_task(tmp_path: Path) -> None:
    """No update target (0): the deadline closed it, whatever was accepted."""

    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        await rnd.receive("site-a", h, chunks(p))
        gate, in_flight, h, p = await half_in(rnd, "site-b", 5.0, 10)
        rnd.tasks["t-site-c"].reason = "upload cut short: truncated payload"
        rnd.close()
        gate.go.set()
        with pytest.raises(LateUpdate):
            await in_flight
        reasons = {r.site: (r.status, r.reason) for r in rnd.tasks.values()}
        assert reasons == {
            "site-a": (TaskStatus.ACCEPTED, ""),
            "site-b": (TaskStatus.LATE, "upload still arriving at the deadline"),
            "site-c": (
                TaskStatus.LATE,
                "no update before the deadline (upload cut short: truncated payload)",
            ),
        }
        np.testing.assert_allclose(moved(rnd), np.ones(16), rtol=1e-6)

    asyncio.run(scenario())


def test_a_pending_task_without_history_is_late_for_the_deadline_only(tmp_path: Path) -> None:
    rnd = make_round(tmp_path)
    rnd.close()
    assert {r.reason for r in rnd.tasks.values()} == {"no update before the deadline"}


def test_closing_again_after_the_model_was_produced_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(2.0), 4)
        await rnd.receive("site-a", h, chunks(p))
        gate, in_flight, h, p = await half_in(rnd, "site-b", 9.0, 4)
        rnd.close()
        late = rnd.tasks["t-site-b"]
        before = (late.status, late.reason, late.finished_at)
        new = rnd.next_model()
        rnd.close()  # the upload still in flight was already dropped: left alone
        assert (late.status, late.reason, late.finished_at) == before
        gate.go.set()
        with pytest.raises(LateUpdate, match="closed while this update was arriving"):
            await in_flight
        np.testing.assert_allclose(new.arrays()["w"], expected([(2.0, 4)])["w"], rtol=1e-6)

    asyncio.run(scenario())


def test_a_second_upload_for_a_task_in_progress_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        gate, first, h, p = await half_in(rnd, "site-a", 1.0, 10)
        with pytest.raises(
            DuplicateUpdate, match=r"^an upload for task 't-site-a' is already in progress$"
        ):
            await rnd.receive("site-a", h, chunks(p))
        gate.go.set()
        await first
        assert rnd.tasks["t-site-a"].status is TaskStatus.ACCEPTED
        assert rnd.aggregate.total_weight == 10

    asyncio.run(scenario())


def test_an_answer_at_the_deadline_itself_is_on_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rnd = make_round(tmp_path)
    monkeypatch.setattr(rounds_module, "time", SimpleNamespace(time=lambda: rnd.deadline))
    rnd.decline("site-a", "t-site-a", round=1, reason="policy: no")
    assert rnd.tasks["t-site-a"].status is TaskStatus.DECLINED
    monkeypatch.setattr(rounds_module, "time", SimpleNamespace(time=lambda: rnd.deadline + 1e-3))
    with pytest.raises(LateUpdate, match=r"^round 1 closed; task 't-site-b' answered too late$"):
        rnd.decline("site-b", "t-site-b", round=1, reason="policy: no")
    assert rnd.tasks["t-site-b"].status is TaskStatus.PENDING


def test_header_refusals_say_exactly_what_differs(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(1.0), 10, base_model_sha256="ab" * 32)
        want = (
            f"update was computed against model {'ab' * 6}, round 1 is on {rnd.model.sha256[:12]}"
        )
        with pytest.raises(ProtocolError, match=f"^{re.escape(want)}$"):
            await rnd.receive("site-a", h, chunks(p))
        h, p = header_for(rnd, "site-b", delta(1.0), -3)
        with pytest.raises(ProtocolError, match=r"^update header: num_examples must be positive$"):
            await rnd.receive("site-b", h, chunks(p))
        assert rnd.tasks["t-site-b"].reason == "update header: num_examples must be positive"

    asyncio.run(scenario())


def test_an_acknowledged_upload_passes_its_crash_points_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passed: list[tuple[str, int]] = []
    monkeypatch.setattr(
        rounds_module, "crash_point", lambda point, round: passed.append((point, round))
    )

    async def scenario() -> None:
        rnd = make_round(tmp_path)
        with_state(rnd)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        await rnd.receive("site-a", h, chunks(p, 16))

    asyncio.run(scenario())
    assert {point for point, _ in passed} <= set(POINTS)
    assert {r for _, r in passed} == {1}
    folding = [p for p, _ in passed if p == "upload-folding"]
    assert len(folding) == 4  # one per chunk: 64 bytes in chunks of 16
    assert [p for p, _ in passed if p != "upload-folding"] == [
        "upload-spooled",
        "upload-acknowledged",
    ]
    assert passed[-2:] == [("upload-spooled", 1), ("upload-acknowledged", 1)]


class _FoldFailsOnce(FedAvgAggregate):
    """A test seam: the first fold fails before it touches the sums (out of memory)."""

    failures = 1

    def fold(self, segment: Segment, *, weight: float) -> None:
        if self.failures:
            self.failures -= 1
            raise MemoryError("cannot allocate")
        super().fold(segment, weight=weight)


def test_an_upload_whose_first_fold_fails_leaves_the_sums_as_they_were(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        rnd._aggregate = _FoldFailsOnce(rnd.model.manifest)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        with pytest.raises(MemoryError):
            await rnd.receive("site-a", h, chunks(p, len(p)))
        assert rnd.tasks["t-site-a"].status is TaskStatus.PENDING  # it may come again
        assert list(rnd.spool_dir.iterdir()) == []
        await rnd.receive("site-a", h, chunks(p, len(p)))
        np.testing.assert_allclose(moved(rnd), np.ones(16), rtol=1e-6)

    asyncio.run(scenario())


def test_a_clipped_upload_cut_off_mid_way_leaves_no_trace(tmp_path: Path) -> None:
    """Folding waits for the end: nothing to undo when the peer goes away."""

    async def scenario() -> None:
        rnd = make_round(tmp_path)
        rnd._aggregate = _ClipToUnitNorm(rnd.model.manifest)
        h, p = header_for(rnd, "site-a", delta(0.25), 1)  # norm 1: not clipped
        await rnd.receive("site-a", h, chunks(p))
        h, p = header_for(rnd, "site-b", delta(3.0), 1)
        gate = _Gate(p, 16)
        upload = asyncio.ensure_future(rnd.receive("site-b", h, gate.stream()))
        await gate.half_in.wait()
        await asyncio.sleep(0)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload
        assert rnd.tasks["t-site-b"].status is TaskStatus.PENDING
        assert rnd.aggregate.total_weight == 1
        np.testing.assert_allclose(moved(rnd), np.full(16, 0.25), rtol=1e-6)

    asyncio.run(scenario())


class _StoreRefusingReceipts(MemoryStateStore):
    def accept(self, receipt: Receipt) -> None:
        raise StateError("state/fedsov.db: database or disk is full")


@pytest.mark.parametrize("clipped", [False, True], ids=["fedavg", "clipped"])
def test_an_update_whose_receipt_cannot_be_stored_is_not_counted(
    tmp_path: Path, clipped: bool
) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        if clipped:
            rnd._aggregate = _ClipToUnitNorm(rnd.model.manifest)
        h, p = header_for(rnd, "site-a", delta(0.25), 1)
        await rnd.receive("site-a", h, chunks(p))  # no store yet: counted
        with_state(rnd, _StoreRefusingReceipts())
        h, p = header_for(rnd, "site-b", delta(2.0), 1)
        with pytest.raises(StateError, match="database or disk is full"):
            await rnd.receive("site-b", h, chunks(p))
        assert rnd.tasks["t-site-b"].status is not TaskStatus.ACCEPTED
        assert list(rnd.spool_dir.iterdir()) == []  # neither .part nor .update is left
        assert rnd.aggregate.total_weight == 1
        np.testing.assert_allclose(moved(rnd), np.full(16, 0.25), rtol=1e-6)

    asyncio.run(scenario())


def test_without_a_store_an_upload_does_not_need_its_spool_to_count(tmp_path: Path) -> None:
    """The spool of a round without state is scratch: a tmp cleaner may take it."""

    async def scenario() -> None:
        rnd = make_round(tmp_path)
        gate, upload, _, p = await half_in(rnd, "site-a", 1.0, 10)
        (rnd.spool_dir / "t-site-a.part").unlink()
        gate.go.set()
        receipt = await upload
        assert receipt.bytes_received == len(p)
        assert rnd.tasks["t-site-a"].status is TaskStatus.ACCEPTED
        np.testing.assert_allclose(moved(rnd), np.ones(16), rtol=1e-6)

    asyncio.run(scenario())
