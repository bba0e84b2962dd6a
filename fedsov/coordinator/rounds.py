"""One federated round: its tasks, and the receipt of updates folded chunk by chunk."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import numpy as np

from fedsov.codec import DEFAULT_CHUNK_SIZE, PayloadReader
from fedsov.coordinator.model import GlobalModel
from fedsov.exceptions import (
    DuplicateUpdate,
    FedsovError,
    LateUpdate,
    ProtocolError,
    UnknownTask,
)
from fedsov.messages import TrainTask, UpdateHeader, UploadReceipt
from fedsov.strategy import RoundAggregate

__all__ = ["Round", "TaskRecord", "TaskStatus"]


class TaskStatus(StrEnum):
    PENDING = "pending"
    RECEIVING = "receiving"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    DECLINED = "declined"
    LATE = "late"


@dataclass
class TaskRecord:
    task: TrainTask
    site: str
    status: TaskStatus = TaskStatus.PENDING
    reason: str = ""
    header: UpdateHeader | None = None
    finished_at: float | None = None
    upload: _Upload | None = None


@dataclass
class Round:
    """Tasks of one round and the aggregate their updates are folded into."""

    number: int
    model: GlobalModel
    tasks: dict[str, TaskRecord]  # by task id
    deadline: float
    _aggregate: RoundAggregate | None
    spool_dir: Path
    opened_at: float = field(default_factory=time.time)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def __post_init__(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    @property
    def aggregate(self) -> RoundAggregate:
        if self._aggregate is None:
            raise RuntimeError(f"round {self.number} already produced its model")
        return self._aggregate

    def next_model(self) -> GlobalModel:
        """The aggregated model; frees the running sums first thing after (memory)."""
        aggregate, self._aggregate = self.aggregate, None
        return GlobalModel.from_aggregate(aggregate, base=self.model, round=self.number)

    def by_status(self, status: TaskStatus) -> list[TaskRecord]:
        return [r for r in self.tasks.values() if r.status is status]

    def task_for_site(self, site: str) -> TaskRecord | None:
        return next((r for r in self.tasks.values() if r.site == site), None)

    def _resolve(self, record: TaskRecord, status: TaskStatus, reason: str = "") -> None:
        record.status, record.reason, record.finished_at = status, reason, time.time()
        if all(
            r.status not in (TaskStatus.PENDING, TaskStatus.RECEIVING) for r in self.tasks.values()
        ):
            self.done.set()

    def close(self) -> None:
        """Close the round at its deadline: no more uploads, none half-counted.

        Tasks that never delivered become late; uploads still arriving are removed
        from the aggregate (from their spool) and become late too.
        """
        self.closed = True
        for record in self.tasks.values():
            if record.status is TaskStatus.RECEIVING and record.upload is not None:
                record.upload.rollback(self.aggregate)
                self._resolve(record, TaskStatus.LATE, "upload still arriving at the deadline")
            elif record.status is TaskStatus.PENDING:
                self._resolve(record, TaskStatus.LATE, "no update before the deadline")

    def decline(self, site: str, task_id: str, *, round: int, reason: str) -> None:
        """The participant refuses its task (budget, policy, too few sites below)."""
        record = self._task_of(site, task_id, round)
        self._resolve(record, TaskStatus.DECLINED, reason)

    def _task_of(self, site: str, task_id: str, round: int) -> TaskRecord:
        """The task a participant answers; refusals here leave the task as it was."""
        record = self.tasks.get(task_id)
        if record is None or record.site != site or round != self.number:
            raise UnknownTask(f"no open task {task_id!r} of round {round} for site {site!r}")
        if record.status is TaskStatus.ACCEPTED:
            raise DuplicateUpdate(f"task {task_id!r} already has an accepted update")
        if record.status is TaskStatus.RECEIVING:
            raise DuplicateUpdate(f"an upload for task {task_id!r} is already in progress")
        if record.status in (TaskStatus.REJECTED, TaskStatus.DECLINED):
            raise DuplicateUpdate(f"task {task_id!r} was {record.status}: {record.reason}")
        if self.closed or time.time() > self.deadline:
            raise LateUpdate(
                f"round {self.number} closed at its deadline; task {task_id!r} answered too late"
            )
        return record

    def _check_header(self, site: str, header: UpdateHeader) -> None:
        header.manifest.require_equal(self.model.manifest, what=f"update from {site!r}")
        if header.base_model_sha256 != self.model.sha256:
            raise ProtocolError(
                f"update was computed against model {header.base_model_sha256[:12]}, "
                f"round {self.number} is on {self.model.sha256[:12]}"
            )
        if header.num_examples <= 0:
            raise ProtocolError("update header: num_examples must be positive")

    async def receive(
        self, site: str, header: UpdateHeader, chunks: AsyncIterator[bytes]
    ) -> UploadReceipt:
        """Validate and fold an upload as its chunks arrive.

        Each chunk is written to a spool file before it is folded, so an upload that
        fails part-way (bad chunk, truncation, hash mismatch, cancellation, deadline)
        is removed from the running sum by replaying its spool; the round goes on
        without it. A refused update rejects the task; an upload aborted by the peer
        leaves it pending so the site may try again before the deadline.
        """
        record = self._task_of(site, header.task_id, header.round)
        try:
            self._check_header(site, header)
        except FedsovError as exc:
            self._resolve(record, TaskStatus.REJECTED, str(exc))
            raise
        upload = _Upload(
            header,
            self.spool_dir / f"{header.task_id}.part",
            weight=self.aggregate.fold_weight(header.num_examples),
            measure_norm=self.aggregate.needs_norm,
        )
        record.status, record.upload = TaskStatus.RECEIVING, upload
        try:
            async for chunk in chunks:
                if record.status is not TaskStatus.RECEIVING:
                    break  # closed at the deadline meanwhile
                upload.add(chunk, self.aggregate)
            if record.status is not TaskStatus.RECEIVING:
                raise LateUpdate(f"round {self.number} closed while this update was arriving")
            upload.finish()
            if upload.measure_norm:  # deferred: fold once, already clipped
                extra = self.aggregate.correction(norm=upload.norm, weight=upload.weight)
                upload.fold_deferred(self.aggregate, weight=upload.weight + extra)
        except FedsovError as exc:
            upload.rollback(self.aggregate)
            if record.status is TaskStatus.RECEIVING:
                self._resolve(record, TaskStatus.REJECTED, str(exc))
            raise
        except BaseException:
            # Aborted by the peer or the network, not refused: the site may upload again.
            upload.rollback(self.aggregate)
            if record.status is TaskStatus.RECEIVING:
                record.status, record.reason = TaskStatus.PENDING, "upload aborted by the peer"
            raise
        finally:
            record.upload = None
        upload.discard()
        self.aggregate.commit(weight=upload.weight)
        record.header = header
        self._resolve(record, TaskStatus.ACCEPTED)
        return UploadReceipt(
            header.task_id, self.number, upload.reader.sha256, upload.reader.received
        )


class _Upload:
    """One update being received: its validator and the spool of what was folded.

    Where the aggregate needs the update's norm (clipping), nothing is folded while
    it arrives: it is spooled and measured, then folded once with its final weight.
    Folding first and correcting later is not exact in float32: a huge update would
    swallow the other sites' sums, and clipping it afterwards would not restore them.
    """

    def __init__(
        self, header: UpdateHeader, spool: Path, *, weight: float, measure_norm: bool
    ) -> None:
        self.header = header
        self.weight = weight
        self.measure_norm = measure_norm
        self._squared_norm = 0.0
        self._folded = False  # whether anything of this upload is in the aggregate
        self.reader = PayloadReader(
            header.manifest, size=header.payload_size, sha256=header.payload_sha256
        )
        self.spool = spool
        self._file: BinaryIO | None = open(spool, "wb")  # noqa: SIM115 - closed in discard

    def add(self, chunk: bytes, aggregate: RoundAggregate) -> None:
        segments = list(self.reader.feed(chunk))  # validates the whole chunk first
        assert self._file is not None
        self._file.write(chunk)
        for segment in segments:
            if self.measure_norm:
                values = segment.values.astype(np.float64)
                self._squared_norm += float(np.dot(values, values))
            else:
                aggregate.fold(segment, weight=self.weight)
        self._folded = not self.measure_norm

    @property
    def norm(self) -> float:
        return math.sqrt(self._squared_norm)

    def finish(self) -> None:
        self.reader.finish()
        assert self._file is not None
        self._file.flush()

    def fold_deferred(self, aggregate: RoundAggregate, *, weight: float) -> None:
        """Fold the whole (validated, measured) update once, with ``weight``."""
        self._fold_spool(aggregate, weight)
        self._folded = True

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.spool.unlink(missing_ok=True)

    def rollback(self, aggregate: RoundAggregate) -> None:
        """Unfold everything folded so far (exactly the spooled bytes); idempotent."""
        if self._file is None:
            return
        self._file.flush()
        if self._folded:
            self._fold_spool(aggregate, -self.weight)
        self.discard()

    def _fold_spool(self, aggregate: RoundAggregate, weight: float) -> None:
        replay = PayloadReader(
            self.header.manifest, size=self.header.payload_size, allow_nonfinite=True
        )
        with open(self.spool, "rb") as f:
            while chunk := f.read(DEFAULT_CHUNK_SIZE):
                for segment in replay.feed(chunk):
                    aggregate.fold(segment, weight=weight)
