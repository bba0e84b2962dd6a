"""Issue 13, item 2: no single upload can corrupt a round's aggregate.

Round-level (no socket): refused and aborted uploads never touch the sums, the
weight cap and the norm bound refuse with their reasons (the cap before a spool file
opens, the bound as soon as the running norm passes it), and no sequence of uploads
leaves a model that is non-finite or differs from the FedAvg of the accepted ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsov.codec import encode, iter_chunks
from fedsov.config import MAX_EXAMPLES, MAX_UPDATE_NORM
from fedsov.exceptions import (
    NonFiniteTensor,
    PayloadHashError,
    PayloadSizeError,
    UpdateOutOfBounds,
)
from fedsov.messages import PrivacyReport, TaskEvent, TrainingPlan, TrainTask, UpdateHeader
from fedsov.node.model import GlobalModel
from fedsov.node.rounds import Round, TaskRecord, TaskStatus
from fedsov.pki import NodeIdentity, Role
from fedsov.strategy import FedAvg
from fedsov.testing import make_engine
from fedsov.transport.errors import status_for

BASE = {
    "w": np.linspace(-1.0, 1.0, 12, dtype=np.float32).reshape(3, 4),
    "b": np.ones(4, np.float32),
}
PATTERN = np.linspace(0.5, 1.5, 16)  # an update is value x PATTERN (flattened)
CHUNK = 8  # bytes: an upload of 64 bytes comes in 8 chunks


def make_round(
    tmp: Path,
    sites: int,
    *,
    max_update_norm: float = MAX_UPDATE_NORM,
    max_examples: int = MAX_EXAMPLES,
) -> Round:
    model = GlobalModel.from_arrays(BASE, round=0, parent=None)
    tasks = {}
    for i in range(sites):
        task = TrainTask(
            task_id=f"t-{i}",
            round=1,
            model_sha256=model.sha256,
            model_size=model.encoded.size,
            manifest=model.manifest,
            plan=TrainingPlan(1, 8, 0.1),
            deadline_unix=0.0,
            round_seed=1,
        )
        tasks[task.task_id] = TaskRecord(task=task, site=f"site-{i}")
    return Round(
        number=1,
        model=model,
        tasks=tasks,
        deadline=time.time() + 600,
        _aggregate=FedAvg().start_round(model.manifest),
        spool_dir=tmp / "spool",
        max_update_norm=max_update_norm,
        max_examples=max_examples,
    )


def update(value: float) -> dict[str, np.ndarray]:
    flat = (value * PATTERN).astype(np.float32)
    return {"w": flat[:12].reshape(3, 4), "b": flat[12:]}


def header_for(rnd: Round, i: int, values: dict[str, np.ndarray], n: int) -> UpdateHeader:
    enc = encode(values)
    return UpdateHeader(
        task_id=f"t-{i}",
        round=1,
        manifest=enc.manifest,
        num_examples=n,
        payload_size=enc.size,
        payload_sha256=enc.sha256,
        base_model_sha256=rnd.model.sha256,
        privacy=PrivacyReport(enabled=False, epsilon=0.0, delta=0.0),
    )


class Stream:
    """An upload's chunks; counts those pulled, and fails after ``abort_after``."""

    def __init__(self, payload: bytes, *, stop_after: int | None = None) -> None:
        self.pieces = [bytes(c) for c in iter_chunks(payload, CHUNK)]
        self.stop_after = stop_after
        self.abort_after: int | None = None
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, piece in enumerate(self.pieces):
            if i == self.stop_after:
                return
            if i == self.abort_after:
                raise ConnectionResetError("the peer went away")
            self.pulled += 1
            yield piece
            await asyncio.sleep(0)


async def send(
    rnd: Round,
    i: int,
    value: float,
    n: int,
    *,
    wrong_hash: bool = False,
    nan: bool = False,
    stop_after: int | None = None,
    abort_after: int | None = None,
) -> Stream:
    """Upload ``value x PATTERN`` with weight ``n`` for task ``i``, as told to go wrong."""
    values = update(value)
    if nan:
        values["b"][1] = np.nan
    header = header_for(rnd, i, values, n)
    if wrong_hash:
        header = dataclasses.replace(header, payload_sha256="0" * 64)
    stream = Stream(encode(values).payload, stop_after=stop_after)
    stream.abort_after = abort_after
    await rnd.receive(f"site-{i}", header, stream.__aiter__())
    return stream


def fedavg(accepted: list[tuple[float, int]]) -> dict[str, np.ndarray]:
    """The exact FedAvg of ``accepted`` (value, weight) pairs, in float64."""
    total = sum(n for _, n in accepted)
    mean = sum(v * n for v, n in accepted) / total * PATTERN
    return {"w": BASE["w"] + mean[:12].reshape(3, 4), "b": BASE["b"] + mean[12:]}


def assert_model_is(rnd: Round, accepted: list[tuple[float, int]]) -> None:
    model = rnd.next_model().arrays()
    want = fedavg(accepted)
    for name in BASE:
        assert np.isfinite(model[name]).all()
        np.testing.assert_allclose(model[name], want[name], rtol=1e-5, atol=1e-6)


def test_a_refused_and_an_aborted_upload_of_1e30_leave_exactly_the_honest_fedavg(
    tmp_path: Path,
) -> None:
    """The issue's case: +0.5, then 1e30 with a wrong hash, then 1e30 aborted halfway,
    then another honest update. The bound is lifted so the removal itself is shown."""

    async def scenario() -> Round:
        rnd = make_round(tmp_path, 4, max_update_norm=1e38, max_examples=10**12)
        await send(rnd, 0, 0.5, 10)
        with pytest.raises(PayloadHashError):
            await send(rnd, 1, 1e30, 10**9, wrong_hash=True)
        with pytest.raises(ConnectionResetError):
            await send(rnd, 2, 1e30, 10**9, abort_after=4)
        await send(rnd, 3, -0.25, 30)
        assert rnd.tasks["t-1"].status is TaskStatus.REJECTED
        assert rnd.tasks["t-2"].status is TaskStatus.PENDING  # aborted: it may come again
        assert list(rnd.spool_dir.iterdir()) == []
        return rnd

    rnd = asyncio.run(scenario())
    model = rnd.next_model().arrays()
    want = fedavg([(0.5, 10), (-0.25, 30)])
    for name in BASE:
        np.testing.assert_allclose(model[name], want[name], atol=1e-6)


def test_a_weight_past_the_cap_is_refused_before_a_spool_file_opens(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path, 2, max_examples=1000)
        stream = Stream(encode(update(1.0)).payload)
        header = header_for(rnd, 0, update(1.0), 1001)
        with pytest.raises(
            UpdateOutOfBounds,
            match=r"^update header: num_examples = 1001 is above this round's "
            r"max_examples = 1000 \(\[rounds\] max_examples\)$",
        ):
            await rnd.receive("site-0", header, stream.__aiter__())
        assert stream.pulled == 0
        assert list(rnd.spool_dir.iterdir()) == []
        record = rnd.tasks["t-0"]
        assert record.status is TaskStatus.REJECTED
        assert "max_examples = 1000" in record.reason
        await send(rnd, 1, 1.0, 1000)  # at the cap: accepted
        assert_model_is(rnd, [(1.0, 1000)])

    asyncio.run(scenario())


def test_a_norm_past_the_bound_is_refused_as_soon_as_it_passes(tmp_path: Path) -> None:
    async def scenario() -> None:
        rnd = make_round(tmp_path, 2, max_update_norm=100.0)
        with pytest.raises(
            UpdateOutOfBounds,
            match=r"^update L2 norm is above this round's max_update_norm = 100 "
            r"\(\[rounds\] max_update_norm\): [\d.]+ after 8 of 64 bytes$",
        ):
            await send(rnd, 0, 1000.0, 10)  # the first two elements pass the bound
        record = rnd.tasks["t-0"]
        assert record.status is TaskStatus.REJECTED
        assert "max_update_norm = 100" in record.reason
        assert list(rnd.spool_dir.iterdir()) == []
        await send(rnd, 1, 20.0, 10)  # norm 85: accepted
        assert_model_is(rnd, [(20.0, 10)])

    asyncio.run(scenario())


def test_the_bound_stops_reading_the_stream() -> None:
    async def scenario(tmp: Path) -> Stream:
        rnd = make_round(tmp, 1, max_update_norm=100.0)
        header = header_for(rnd, 0, update(1000.0), 1)
        stream = Stream(encode(update(1000.0)).payload)
        with pytest.raises(UpdateOutOfBounds):
            await rnd.receive("site-0", header, stream.__aiter__())
        return stream

    with tempfile.TemporaryDirectory() as tmp:
        stream = asyncio.run(scenario(Path(tmp)))
    # The first chunk passes the bound; it is checked off the event loop while the
    # next is taken from the network (one chunk in flight), then reading stops.
    assert stream.pulled == 2 < len(stream.pieces)


def test_bound_refusals_are_invalid_argument_on_the_wire() -> None:
    assert status_for(UpdateOutOfBounds("past the bound")) is grpc.StatusCode.INVALID_ARGUMENT


def test_an_acknowledged_update_past_new_bounds_is_restored_all_the_same(tmp_path: Path) -> None:
    """Bounds apply to new uploads; one acknowledged before a restart counts as it did."""

    async def scenario() -> None:
        rnd = make_round(tmp_path, 1, max_update_norm=1.0, max_examples=5)
        values = update(10.0)
        header = header_for(rnd, 0, values, 50)
        stream = Stream(encode(values).payload)
        await rnd.receive("site-0", header, stream.__aiter__(), restoring=True)
        assert_model_is(rnd, [(10.0, 50)])

    asyncio.run(scenario())


KINDS = (
    "honest",
    "huge",
    "nan",
    "wrong-hash",
    "truncated",
    "aborted",
    "over-weight",
    "over-norm",
)
_uploads = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.floats(-10.0, 10.0, allow_nan=False),
        st.integers(1, 1000),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(_uploads)
def test_any_sequence_of_uploads_leaves_the_fedavg_of_the_accepted_ones(
    uploads: list[tuple[str, float, int]],
) -> None:
    async def scenario(tmp: Path) -> list[tuple[float, int]]:
        rnd = make_round(tmp, len(uploads), max_update_norm=100.0, max_examples=1000)
        accepted: list[tuple[float, int]] = []
        for i, (kind, value, n) in enumerate(uploads):
            try:
                await _send_kind(rnd, i, kind, value, n)
            except (ConnectionResetError, NonFiniteTensor, PayloadSizeError) as exc:
                assert kind in ("aborted", "nan", "truncated"), exc
            except (PayloadHashError, UpdateOutOfBounds) as exc:
                assert kind in ("huge", "wrong-hash", "over-weight", "over-norm"), exc
            else:
                assert kind == "honest"
                accepted.append((value, n))
        assert list(rnd.spool_dir.iterdir()) == []
        if accepted:
            assert_model_is(rnd, accepted)
        return accepted

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


async def _send_kind(rnd: Round, i: int, kind: str, value: float, n: int) -> None:
    match kind:
        case "honest":
            await send(rnd, i, value, n)
        case "huge":
            await send(rnd, i, 1e30, n, wrong_hash=True)
        case "nan":
            await send(rnd, i, value, n, nan=True)
        case "wrong-hash":
            await send(rnd, i, value, n, wrong_hash=True)
        case "truncated":
            await send(rnd, i, value, n, stop_after=5)
        case "aborted":
            await send(rnd, i, value, n, abort_after=3)
        case "over-weight":
            await send(rnd, i, value, 1000 + n)
        case "over-norm":
            await send(rnd, i, 30.0 + abs(value), n)  # norm >= 30 x |PATTERN| = 125


def test_a_non_finite_next_model_fails_the_round_and_stores_nothing(tmp_path: Path) -> None:
    """A float16 model overflows with a bounded update: the round fails with the reason."""
    base = {"w": np.full(1, 65400.0, dtype=np.float16)}
    engine = make_engine(tmp_path, base, federation="fed")
    site = NodeIdentity("site-a", Role.site, "EU", "fed")

    async def scenario() -> None:
        events = await engine.subscribe(site)
        round_ = asyncio.ensure_future(engine.run_round(1, training=engine.schedule.training))
        task = await _first_task(events)
        values = {"w": np.full(1, 200.0, dtype=np.float16)}  # within bounds; 65600 is not
        enc = encode(values)
        header = UpdateHeader(
            task_id=task.task_id,
            round=1,
            manifest=enc.manifest,
            num_examples=10,
            payload_size=enc.size,
            payload_sha256=enc.sha256,
            base_model_sha256=task.model_sha256,
            privacy=PrivacyReport(enabled=False, epsilon=0.0, delta=0.0),
        )
        await engine.receive_update(site, header, Stream(enc.payload).__aiter__())
        report = await round_
        assert not report.completed
        assert report.failure.startswith("the aggregate of round 1 is not finite: tensor 'w'")
        assert report.to_json()["failure"] == report.failure
        assert report.model_sha256 == engine.model.sha256  # the model stayed
        assert not (tmp_path / "models" / "round-0001.safetensors").exists()

    asyncio.run(scenario())


async def _first_task(events: AsyncIterator[TaskEvent]) -> TrainTask:
    async for event in events:
        if isinstance(event, TrainTask):
            return event
    raise AssertionError("no task arrived")
