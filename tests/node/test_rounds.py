"""The round's upload handling, without sockets: folding, refusal and dropping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import numpy as np
import pytest

from fedsov.codec import encode, iter_chunks
from fedsov.coordinator.schedule import Schedule, ScheduledEngine
from fedsov.exceptions import (
    DuplicateUpdate,
    LateUpdate,
    ManifestMismatch,
    NonFiniteTensor,
    PayloadHashError,
    PayloadSizeError,
    ProtocolError,
    UnknownTask,
)
from fedsov.messages import PrivacyReport, TrainingPlan, TrainTask, UpdateHeader
from fedsov.node.engine import EngineSettings
from fedsov.node.model import GlobalModel, ModelStore
from fedsov.node.rounds import Round, TaskRecord, TaskStatus, UpdateJudge
from fedsov.node.state import StateStore
from fedsov.strategy import FedAvg, FedAvgAggregate

BASE = {"w": np.zeros((3, 4), dtype=np.float32), "b": np.ones(4, dtype=np.float32)}
SITES = ("site-a", "site-b", "site-c")


def make_engine(
    tmp_path: Path,
    *,
    num_rounds: int,
    min_updates: int,
    sites_per_round: int = 0,
    seed: int = 0,
    state: StateStore | None = None,
    judge: UpdateJudge | None = None,
) -> ScheduledEngine:
    """An engine over BASE that admits anyone, for the engine tests of this folder."""
    settings = EngineSettings(
        federation="fed",
        min_sites=0,
        min_updates=min_updates,
        sites_per_round=sites_per_round,
        round_timeout_s=30.0,
        start_timeout_s=5.0,
        seed=seed,
        heartbeat_s=1.0,
    )
    return ScheduledEngine(
        settings,
        Schedule(num_rounds=num_rounds, max_attempts=1, training=TrainingPlan(1, 8, 0.1)),
        initial=GlobalModel.from_arrays(BASE, round=0, parent=None),
        strategy=FedAvg(),
        store=ModelStore(tmp_path / "models"),
        work_dir=tmp_path / "work",
        state=state,
        admission=lambda identity: None,
        judge=judge,
    )


def make_round(tmp_path: Path, deadline_in: float = 60.0) -> Round:
    model = GlobalModel.from_arrays(BASE, round=0, parent=None)
    tasks = {}
    for site in SITES:
        task = TrainTask(
            task_id=f"t-{site}",
            round=1,
            model_sha256=model.sha256,
            model_size=model.encoded.size,
            manifest=model.manifest,
            plan=TrainingPlan(1, 8, 0.1),
            deadline_unix=0.0,
            round_seed=1,
        )
        tasks[task.task_id] = TaskRecord(task=task, site=site)
    return Round(
        number=1,
        model=model,
        tasks=tasks,
        deadline=time.time() + deadline_in,
        _aggregate=FedAvg().start_round(model.manifest),
        spool_dir=tmp_path / "spool",
    )


def header_for(
    rnd: Round, site: str, delta: dict[str, np.ndarray], n: int, **over: object
) -> tuple[UpdateHeader, bytes]:
    enc = encode(delta)
    fields: dict[str, object] = dict(
        task_id=f"t-{site}",
        round=1,
        manifest=enc.manifest,
        num_examples=n,
        payload_size=enc.size,
        payload_sha256=enc.sha256,
        base_model_sha256=rnd.model.sha256,
        privacy=PrivacyReport(enabled=True, epsilon=1.0, delta=1e-5),
    )
    fields.update(over)
    return UpdateHeader(**fields), enc.payload  # type: ignore[arg-type]


async def chunks(
    payload: bytes, size: int = 7, *, stop_after: int | None = None
) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(iter_chunks(payload, size)):
        if stop_after is not None and i >= stop_after:
            return
        yield bytes(chunk)
        await asyncio.sleep(0)


def delta(value: float) -> dict[str, np.ndarray]:
    return {k: np.full(v.shape, value, dtype=np.float32) for k, v in BASE.items()}


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def expected(pairs: Iterable[tuple[float, int]]) -> dict[str, np.ndarray]:
    pairs = list(pairs)
    total = sum(n for _, n in pairs)
    mean = sum(v * n for v, n in pairs) / total
    return {k: v + np.float32(mean) for k, v in BASE.items()}


def test_accepted_updates_fold_into_fedavg(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        for site, value, n in (("site-a", 1.0, 10), ("site-b", 4.0, 30), ("site-c", -2.0, 60)):
            h, p = header_for(rnd, site, delta(value), n)
            receipt = await rnd.receive(site, h, chunks(p))
            assert receipt.payload_sha256 == h.payload_sha256
            assert receipt.bytes_received == h.payload_size
        assert rnd.done.is_set()
        out = rnd.aggregate.result(rnd.model.arrays())
        want = expected([(1.0, 10), (4.0, 30), (-2.0, 60)])
        for k in BASE:
            np.testing.assert_allclose(out[k], want[k], atol=1e-6)
        assert list(rnd.spool_dir.iterdir()) == []

    run(scenario())


@pytest.mark.parametrize(
    ("make_bad", "error", "message"),
    [
        (lambda p: p[:-8], PayloadSizeError, "truncated payload: received"),
        (lambda p: p[:-1] + bytes([p[-1] ^ 1]), PayloadHashError, "SHA-256"),
        (lambda p: p + b"\0\0\0\0", PayloadSizeError, "oversized payload"),
    ],
)
def test_broken_upload_is_refused_and_dropped(
    tmp_path: Path, make_bad: object, error: type[Exception], message: str
) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        await rnd.receive("site-a", h, chunks(p))
        h, p = header_for(rnd, "site-b", delta(50.0), 90)
        bad_payload = make_bad(p)  # type: ignore[operator]
        with pytest.raises(error, match=message):
            await rnd.receive("site-b", h, chunks(bad_payload))
        record = rnd.tasks["t-site-b"]
        truncated = message.startswith("truncated")  # cut short: it may come again
        assert record.status is (TaskStatus.PENDING if truncated else TaskStatus.REJECTED)
        assert message.split(":", maxsplit=1)[0] in record.reason
        out = rnd.aggregate.result(rnd.model.arrays())
        np.testing.assert_array_equal(out["w"], expected([(1.0, 10)])["w"])
        assert list(rnd.spool_dir.iterdir()) == []

    run(scenario())


def test_nan_is_refused_naming_tensor_and_round_goes_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        bad = delta(3.0)
        bad["b"][2] = np.nan
        h, p = header_for(rnd, "site-a", bad, 10)
        with pytest.raises(NonFiniteTensor, match="tensor 'b' holds nan at element 2"):
            await rnd.receive("site-a", h, chunks(p))
        h, p = header_for(rnd, "site-b", delta(2.0), 5)
        await rnd.receive("site-b", h, chunks(p))
        out = rnd.aggregate.result(rnd.model.arrays())
        np.testing.assert_array_equal(out["b"], expected([(2.0, 5)])["b"])

    run(scenario())


def test_cancelled_upload_is_dropped(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(9.0), 10)
        task = asyncio.ensure_future(rnd.receive("site-a", h, chunks(p, 4)))
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rnd.tasks["t-site-a"].status is TaskStatus.PENDING  # may try again
        h, p = header_for(rnd, "site-b", delta(1.0), 1)
        await rnd.receive("site-b", h, chunks(p))
        np.testing.assert_array_equal(
            rnd.aggregate.result(rnd.model.arrays())["w"], expected([(1.0, 1)])["w"]
        )

    run(scenario())


def test_close_at_deadline_removes_upload_in_flight(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(2.0), 4)
        await rnd.receive("site-a", h, chunks(p))
        h, p = header_for(rnd, "site-b", delta(100.0), 4)
        gate = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            async for c in chunks(p, 8, stop_after=2):
                yield c
            await gate.wait()
            async for c in chunks(p[16:], 8):
                yield c

        task = asyncio.ensure_future(rnd.receive("site-b", h, slow()))
        await asyncio.sleep(0.05)
        rnd.close()
        gate.set()
        with pytest.raises(LateUpdate, match="closed while this update was arriving"):
            await task
        assert rnd.tasks["t-site-b"].status is TaskStatus.LATE
        assert rnd.tasks["t-site-c"].status is TaskStatus.LATE
        np.testing.assert_array_equal(
            rnd.aggregate.result(rnd.model.arrays())["w"], expected([(2.0, 4)])["w"]
        )

    run(scenario())


def test_header_checks(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        with pytest.raises(UnknownTask, match="for site 'site-b'"):
            await rnd.receive("site-b", h, chunks(p))
        assert rnd.tasks["t-site-a"].status is TaskStatus.PENDING  # not the sender's task
        await rnd.receive("site-a", h, chunks(p))
        with pytest.raises(DuplicateUpdate, match="already has an accepted update"):
            await rnd.receive("site-a", h, chunks(p))

        wrong = {"w": np.zeros((4, 3), dtype=np.float32), "b": np.zeros(4, dtype=np.float32)}
        hw, pw = header_for(rnd, "site-b", wrong, 10)
        with pytest.raises(ManifestMismatch, match=r"'w' has shape \[4, 3\], expected \[3, 4\]"):
            await rnd.receive("site-b", hw, chunks(pw))
        assert rnd.tasks["t-site-b"].status is TaskStatus.REJECTED
        hb, pb = header_for(rnd, "site-b", delta(1.0), 10)
        with pytest.raises(DuplicateUpdate, match="was rejected: update from 'site-b'"):
            await rnd.receive("site-b", hb, chunks(pb))

        hs, ps = header_for(rnd, "site-c", delta(1.0), 10, base_model_sha256="0" * 64)
        with pytest.raises(ProtocolError, match="computed against model 000000000000"):
            await rnd.receive("site-c", hs, chunks(ps))
        assert rnd.done.is_set()  # every task resolved: the round need not wait
        np.testing.assert_array_equal(
            rnd.aggregate.result(rnd.model.arrays())["w"], expected([(1.0, 10)])["w"]
        )

    run(scenario())


def test_zero_examples_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        hz, pz = header_for(rnd, "site-a", delta(1.0), 0)
        with pytest.raises(ProtocolError, match="num_examples must be positive"):
            await rnd.receive("site-a", hz, chunks(pz))

    run(scenario())


def test_update_after_deadline_is_late(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path, deadline_in=-1.0)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        with pytest.raises(LateUpdate, match="answered too late"):
            await rnd.receive("site-a", h, chunks(p))

    run(scenario())


def test_decline_resolves_the_task_with_its_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        rnd.decline("site-a", "t-site-a", round=1, reason="budget-exhausted: ε would be 3.2 > 3")
        record = rnd.tasks["t-site-a"]
        assert record.status is TaskStatus.DECLINED
        assert "budget-exhausted" in record.reason
        with pytest.raises(UnknownTask):
            rnd.decline("site-b", "t-site-a", round=1, reason="not mine")
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        with pytest.raises(DuplicateUpdate, match="was declined"):
            await rnd.receive("site-a", h, chunks(p))

    run(scenario())


class _ClipToUnitNorm(FedAvgAggregate):
    """A test seam: every update counts once and is clipped to L2 norm 1."""

    def fold_weight(self, num_examples: int) -> float:
        return 1.0

    def correction(self, *, norm: float, weight: float) -> float:
        return weight * (min(1.0, 1.0 / norm) - 1.0)


def test_norm_correction_is_replayed_from_the_spool(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        rnd._aggregate = _ClipToUnitNorm(rnd.model.manifest)
        big = delta(2.0)  # 16 elements of 2.0: norm 8
        h, p = header_for(rnd, "site-a", big, 1000)
        await rnd.receive("site-a", h, chunks(p, 12))
        out = rnd.aggregate.result(rnd.model.arrays())
        moved = np.concatenate([(out[k] - BASE[k]).ravel() for k in BASE])
        assert float(np.linalg.norm(moved)) == pytest.approx(1.0, rel=1e-6)
        np.testing.assert_allclose(moved, np.full(16, 0.25), rtol=1e-6)

    run(scenario())


def test_a_huge_update_cannot_swallow_the_others_before_it_is_clipped(tmp_path: Path) -> None:
    async def scenario() -> np.ndarray:
        rnd = make_round(tmp_path)
        rnd.max_update_norm = 1e12  # past the default bound: clipped, not refused
        rnd._aggregate = _ClipToUnitNorm(rnd.model.manifest)
        for site, value in (("site-a", 0.25), ("site-b", 0.25)):  # norm 1 each
            h, p = header_for(rnd, site, delta(value), 1)
            await rnd.receive(site, h, chunks(p))
        h, p = header_for(rnd, "site-c", delta(1e9), 1)  # norm 4e9, clipped to 1
        await rnd.receive("site-c", h, chunks(p))
        out = rnd.aggregate.result(rnd.model.arrays())
        return np.concatenate([(out[k] - BASE[k]).ravel() for k in BASE])

    moved = asyncio.run(scenario())
    # (0.25 + 0.25 + 0.25) / 3 sites: the small updates survive intact.
    np.testing.assert_allclose(moved, np.full(16, 0.25), rtol=1e-6)


def test_an_update_sent_again_is_acknowledged_and_counted_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        first = await rnd.receive("site-a", h, chunks(p))
        again = rnd.replay("site-a", h)
        assert again == first
        other, _ = header_for(rnd, "site-a", delta(2.0), 10)
        assert rnd.replay("site-a", other) is None  # another payload: not a replay
        assert rnd.replay("site-b", h) is None
        with pytest.raises(DuplicateUpdate, match="already has an accepted update"):
            await rnd.receive("site-a", other, chunks(encode(delta(2.0)).payload))
        assert rnd.aggregate.total_weight == 10

    run(scenario())


def test_over_selection_closes_once_enough_updates_are_in(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path)
        rnd.target_updates = 2
        for site in ("site-a", "site-b"):
            h, p = header_for(rnd, site, delta(1.0), 10)
            await rnd.receive(site, h, chunks(p))
        assert rnd.done.is_set()
        rnd.close()
        late = rnd.tasks["t-site-c"]
        assert late.status is TaskStatus.LATE
        assert late.reason == "no update before the round closed with enough updates"
        h, p = header_for(rnd, "site-c", delta(1.0), 10)
        with pytest.raises(LateUpdate, match=r"answered too late \(no update before the round"):
            await rnd.receive("site-c", h, chunks(p))

    run(scenario())


def test_a_round_stays_open_while_an_upload_is_still_arriving(tmp_path: Path) -> None:
    """Every other task answered (declined) while site-a's upload is half in: the round
    is not done until that upload ends, and then it counts."""

    async def scenario() -> None:
        rnd = make_round(tmp_path)
        h, p = header_for(rnd, "site-a", delta(1.0), 10)
        half_in, go_on = asyncio.Event(), asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            pieces = [bytes(c) for c in iter_chunks(p, 7)]
            yield pieces[0]
            half_in.set()
            await go_on.wait()
            for piece in pieces[1:]:
                yield piece

        upload = asyncio.ensure_future(rnd.receive("site-a", h, slow()))
        await half_in.wait()
        await asyncio.sleep(0)
        assert rnd.tasks["t-site-a"].status is TaskStatus.RECEIVING
        for site in ("site-b", "site-c"):
            rnd.decline(site, f"t-{site}", round=1, reason="budget-exhausted: no")
        assert not rnd.done.is_set()
        go_on.set()
        await upload
        assert rnd.done.is_set()
        assert rnd.tasks["t-site-a"].status is TaskStatus.ACCEPTED

    run(scenario())
