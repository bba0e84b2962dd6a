"""One federated round: its tasks, and the receipt of updates, each folded once accepted."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from fedsov.codec import DEFAULT_CHUNK_SIZE, Manifest, PayloadReader, Segment
from fedsov.config import MAX_EXAMPLES, MAX_UPDATE_NORM
from fedsov.exceptions import (
    DuplicateUpdate,
    FedsovError,
    LateUpdate,
    PayloadSizeError,
    ProtocolError,
    StreamStalled,
    UnknownTask,
    UpdateOutOfBounds,
)
from fedsov.faults import crash_point
from fedsov.fileio import fsync_dir
from fedsov.messages import TrainTask, UpdateHeader, UploadReceipt, header_to_json
from fedsov.node.model import GlobalModel
from fedsov.node.secure import SecureStages
from fedsov.node.state import Receipt, StateStore
from fedsov.strategy import RoundAggregate, UpdateFold

__all__ = ["Round", "TaskRecord", "TaskStatus", "UpdateJudge"]

UpdateJudge = Callable[[str, UpdateHeader], None]
"""Judges an update header of a sender by a policy (the plan's): raises FedsovError."""

log = logging.getLogger("fedsov.node")

# Checks each upload chunk off the event loop (hashlib and numpy release the GIL).
_CHUNK_WORKERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="fedsov-chunks")


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
    """Tasks of one round and the aggregate their updates are folded into.

    An upload is kept apart (in its spool) while it arrives and folded once, when it
    is complete, validated, within ``max_examples`` and ``max_update_norm`` and (with
    a state store) acknowledged: nothing refused or aborted ever touches the sums.
    With a state store, refusals are stored as they happen and an update is
    acknowledged only once its spool is fsynced and its receipt stored: a restarted
    aggregator re-opens the round and folds the acknowledged updates again. An
    aggregate that ``keeps_updates`` (a median, Krum) is handed each accepted update's
    spool file instead, kept (one copy, with or without a state store) until the
    round's spool folder is removed after its commit.
    """

    number: int
    model: GlobalModel
    tasks: dict[str, TaskRecord]  # by task id
    deadline: float
    _aggregate: RoundAggregate | None
    spool_dir: Path
    attempt: int = 1
    state: StateStore | None = None
    target_updates: int = 0  # close as soon as this many are accepted (0: wait for all)
    population: tuple[str, ...] = ()  # the connected sites the tasks were drawn from
    max_update_norm: float = MAX_UPDATE_NORM  # L2 norm past which an update is refused
    max_examples: int = MAX_EXAMPLES  # num_examples past which an update is refused
    judge: UpdateJudge | None = None  # the plan's say on each header (its DP)
    # A secure round: its key stages, and what a masked upload looks like.
    secure: SecureStages | None = None
    upload_manifest: Manifest | None = None
    final_deadline: float = 0.0  # the round's own end (uploads close earlier when secure)
    opened_at: float = field(default_factory=time.time)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    # The tasks receiving uploads (by task id), and those close() cancelled.
    _receivers: dict[str, asyncio.Task[object]] = field(default_factory=dict)
    _closed_on: set[str] = field(default_factory=set)
    _commits: set[asyncio.Future[UploadReceipt]] = field(default_factory=set)
    _folding: asyncio.Lock = field(default_factory=asyncio.Lock)
    _acknowledging: threading.Lock = field(default_factory=threading.Lock)

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
        if self.state is not None and status in (TaskStatus.DECLINED, TaskStatus.REJECTED):
            self.state.resolve_task(record.task.task_id, str(status), reason)
        record.status, record.reason, record.finished_at = status, reason, time.time()
        accepted = len(self.by_status(TaskStatus.ACCEPTED))
        if (self.target_updates and accepted >= self.target_updates) or all(
            r.status not in (TaskStatus.PENDING, TaskStatus.RECEIVING) for r in self.tasks.values()
        ):
            self.done.set()

    def close(self) -> None:
        """Close the round at its deadline: no more uploads, none half-counted.

        Tasks that never delivered become late; uploads still arriving (never
        folded) are dropped with their spool and become late too, their calls ended
        at once (LateUpdate), however silent their peers.
        """
        self.closed = True
        enough = bool(self.target_updates) and (
            len(self.by_status(TaskStatus.ACCEPTED)) >= self.target_updates
        )
        why = "the round closed with enough updates" if enough else "the deadline"
        for record in self.tasks.values():
            if record.status is TaskStatus.RECEIVING and record.upload is not None:
                record.upload.discard()
                self._resolve(record, TaskStatus.LATE, f"upload still arriving at {why}")
                self._cut_off(record.task.task_id)
            elif record.status is TaskStatus.PENDING:
                earlier = f" ({record.reason})" if record.reason else ""
                self._resolve(record, TaskStatus.LATE, f"no update before {why}{earlier}")

    def _cut_off(self, task_id: str) -> None:
        """End the upload of ``task_id`` now: its receive() turns this into LateUpdate."""
        receiver = self._receivers.pop(task_id, None)
        if receiver is not None:
            self._closed_on.add(task_id)
            receiver.cancel()

    def _ended_by_close(self, task_id: str) -> bool:
        """Whether the cancellation being handled is close()'s, and only close()'s (a
        SIGTERM or a cancel by the peer on top of it stays a cancellation)."""
        if task_id not in self._closed_on:
            return False
        self._closed_on.discard(task_id)
        receiver = asyncio.current_task()
        return receiver is not None and receiver.uncancel() == 0

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
                f"round {self.number} closed; task {task_id!r} answered too late"
                + (f" ({record.reason})" if record.reason else "")
            )
        return record

    def replay(self, site: str, header: UpdateHeader) -> UploadReceipt | None:
        """The receipt of an update already accepted, when its site sends it again.

        Uploads are idempotent by (round, site, payload hash): a site that lost the
        acknowledgement (a crash, a cut connection) gets its receipt, and the update
        counts once.
        """
        record = self.tasks.get(header.task_id)
        if (
            record is None
            or record.site != site
            or record.status is not TaskStatus.ACCEPTED
            or record.header is None
            or record.header.payload_sha256 != header.payload_sha256
            or header.round != self.number
        ):
            return None
        return UploadReceipt(
            header.task_id, self.number, header.payload_sha256, header.payload_size
        )

    def check_upload(
        self, site: str, header: UpdateHeader, *, restoring: bool = False
    ) -> TaskRecord:
        """The task an upload with ``header`` answers; a bad header rejects it."""
        record = self._task_of(site, header.task_id, header.round)
        try:
            self._check_header(site, header, restoring=restoring)
        except FedsovError as exc:
            self._resolve(record, TaskStatus.REJECTED, str(exc))
            raise
        return record

    def drop(self, site: str, reason: str) -> None:
        """End ``site``'s open task (it missed a secure round's key stage): late."""
        record = self.task_for_site(site)
        if record is not None and record.status is TaskStatus.PENDING:
            self._resolve(record, TaskStatus.LATE, reason)

    def _check_header(self, site: str, header: UpdateHeader, *, restoring: bool) -> None:
        expected = self.upload_manifest or self.model.manifest
        header.manifest.require_equal(expected, what=f"update from {site!r}")
        if self.secure is not None:
            self.secure.protocol.may_upload(site)
        if header.base_model_sha256 != self.model.sha256:
            raise ProtocolError(
                f"update was computed against model {header.base_model_sha256[:12]}, "
                f"round {self.number} is on {self.model.sha256[:12]}"
            )
        if header.num_examples <= 0:
            raise ProtocolError("update header: num_examples must be positive")
        if header.num_examples > self.max_examples and not restoring:
            raise UpdateOutOfBounds(
                f"update header: num_examples = {header.num_examples} is above this "
                f"round's max_examples = {self.max_examples} ([rounds] max_examples)"
            )
        if self.judge is not None and not restoring:
            self.judge(site, header)

    async def receive(
        self,
        site: str,
        header: UpdateHeader,
        chunks: AsyncIterator[bytes | memoryview],
        *,
        restoring: bool = False,
    ) -> UploadReceipt:
        """Validate an upload as its chunks arrive, then fold it once.

        Each chunk is checked (size, finiteness, the running L2 norm against
        ``max_update_norm``) and written to a spool file; only a complete upload whose
        hash matches, once its receipt is stored, is folded, replayed from the spool.
        One that fails part-way (bad chunk, too large, truncation, hash mismatch,
        cancellation, deadline) is dropped with its spool: it never touched the sums.
        A refused update rejects the task; an upload aborted by the peer leaves it
        pending so the site may try again before the deadline. ``restoring``: an
        update acknowledged before a restart, accepted under the bounds of then.
        """
        record = self.check_upload(site, header, restoring=restoring)
        upload = _Upload(
            header,
            self.spool_dir / f"{header.task_id}.part",
            fold=self.aggregate.begin(header.num_examples),
            # a masked update's norm means nothing: the sites clipped before masking
            max_norm=None if restoring or self.secure else self.max_update_norm,
        )
        record.status, record.upload = TaskStatus.RECEIVING, upload
        receiver = asyncio.current_task()
        if receiver is not None:  # close() cancels it: the call ends with the round
            self._receivers[header.task_id] = receiver
        try:
            await self._take_chunks(upload, chunks)
            upload.finish()
        except FedsovError as exc:
            self._refuse(record, upload, exc)
            raise
        except BaseException as exc:
            # Aborted by the peer or the network, not refused: the site may upload again.
            upload.discard()
            if isinstance(exc, asyncio.CancelledError) and self._ended_by_close(header.task_id):
                raise LateUpdate(
                    f"round {self.number} closed while this update was arriving ({record.reason})"
                ) from None
            if record.status is TaskStatus.RECEIVING:
                record.status, record.reason = TaskStatus.PENDING, "upload aborted by the peer"
            raise
        finally:
            record.upload = None  # close() leaves a complete upload to its commit
            self._receivers.pop(header.task_id, None)
        # Complete and valid: stored and folded to the end even if this call is cancelled
        # now (the peer gone, a stop), so nothing acknowledged is half-counted.
        commit = asyncio.ensure_future(self._commit(record, upload, restoring=restoring))
        self._commits.add(commit)
        commit.add_done_callback(self._commits.discard)
        return await asyncio.shield(commit)

    async def _take_chunks(
        self, upload: _Upload, chunks: AsyncIterator[bytes | memoryview]
    ) -> None:
        """Check and spool each chunk on a worker thread (hash, finiteness, norm, write)
        while the event loop takes the next one from the network: one in flight."""
        pending: Future[None] | None = None
        try:
            async for chunk in chunks:
                if pending is not None:
                    await asyncio.wrap_future(pending)
                pending = _CHUNK_WORKERS.submit(upload.add, chunk)
                crash_point("upload-folding", self.number)
            if pending is not None:
                await asyncio.wrap_future(pending)
        finally:
            if pending is not None and not pending.done():
                wait((pending,))  # at most one chunk's work: then the spool may go

    async def _commit(
        self, record: TaskRecord, upload: _Upload, *, restoring: bool
    ) -> UploadReceipt:
        """Store the receipt (off the event loop), then fold the update once."""
        header = upload.header
        keeps = upload.fold.aggregate.keeps_updates  # read again when the model is made
        try:
            if self.state is not None and not restoring:
                await self._store_receipt(record.site, header, upload)
            elif keeps and restoring:  # over its identical kept copy: one file, not two
                await asyncio.to_thread(upload.keep, self._kept_name(header))
            async with self._folding:  # one fold at a time into the shared sums
                await asyncio.to_thread(upload.fold.finish, upload.replay, upload.spool)
        except FedsovError as exc:
            self._refuse(record, upload, exc)
            raise
        except BaseException:
            upload.discard()
            record.status, record.reason = TaskStatus.PENDING, "upload aborted by the peer"
            raise
        if keeps or (self.state is not None and not restoring):
            upload.close()  # kept until the round commits (rmtree'd with the spool dir)
        else:
            upload.discard()  # (restoring: its kept copy stays where it was)
        record.header = header
        self._resolve(record, TaskStatus.ACCEPTED)
        log.debug(  # what honest updates measure, to set the bounds by
            "round %d: update of %s: %d examples, L2 norm %.4g",
            self.number,
            record.site,
            header.num_examples,
            upload.fold.norm,
        )
        return UploadReceipt(
            header.task_id, self.number, upload.reader.sha256, upload.reader.received
        )

    async def settled(self) -> None:
        """Wait for the commits of complete uploads still being stored and folded."""
        while self._commits:
            await asyncio.wait(set(self._commits))

    def _refuse(self, record: TaskRecord, upload: _Upload, exc: FedsovError) -> None:
        upload.discard()
        if record.status is not TaskStatus.RECEIVING:
            return
        if isinstance(exc, PayloadSizeError) and upload.ended and upload.short:
            # The stream ended early: a peer that died or lost its network looks like
            # this. Not refused: the site may send the update again.
            record.status, record.reason = TaskStatus.PENDING, f"upload cut short: {exc}"
        elif isinstance(exc, StreamStalled):  # a slow link, maybe: it may try again
            record.status, record.reason = TaskStatus.PENDING, f"upload stalled: {exc}"
        else:
            self._resolve(record, TaskStatus.REJECTED, str(exc))

    async def _store_receipt(self, site: str, header: UpdateHeader, upload: _Upload) -> None:
        """Spool on disk, then the receipt (off the event loop): only then may the
        update be acknowledged."""
        state = self.state
        assert state is not None
        await asyncio.to_thread(upload.keep, self._kept_name(header))
        crash_point("upload-spooled", self.number)
        receipt = Receipt(
            round=self.number,
            attempt=self.attempt,
            task_id=header.task_id,
            site=site,
            payload_sha256=header.payload_sha256,
            header=header_to_json(header),
            spool=upload.spool.name,
            received_unix=time.time(),
        )
        await asyncio.to_thread(self._acknowledge, state, receipt)

    def _kept_name(self, header: UpdateHeader) -> Path:
        """Where an accepted update's spool is kept until the round commits."""
        return self.spool_dir / f"{header.task_id}.update"

    def _acknowledge(self, state: StateStore, receipt: Receipt) -> None:
        """Store one receipt (a worker thread); the next waits until this one's crash
        point passed, so a crash there leaves exactly one answer untold, as before."""
        with self._acknowledging:
            state.accept(receipt)
            crash_point("upload-acknowledged", self.number)


class _Upload:
    """One update being received: its validator, its spool, and its fold into the
    round's aggregate (the strategy's: how it is weighted is not the round's concern)."""

    def __init__(
        self, header: UpdateHeader, spool: Path, *, fold: UpdateFold, max_norm: float | None
    ) -> None:
        self.header = header
        self.fold = fold
        self.max_norm = max_norm
        self.ended = False  # the peer's stream ended (complete or not)
        self.reader = PayloadReader(
            header.manifest, size=header.payload_size, sha256=header.payload_sha256
        )
        self.spool = spool
        self._file: io.BufferedRandom | None = open(spool, "w+b")  # noqa: SIM115 - closed in discard

    def add(self, chunk: bytes | memoryview) -> None:
        """Validate and measure ``chunk``, then spool it; refused as soon as the
        running norm passes ``max_norm``."""
        for segment in self.reader.feed(chunk):
            self.fold.add(segment)
        if self.max_norm is not None and self.fold.norm > self.max_norm:
            raise UpdateOutOfBounds(
                f"update L2 norm is above this round's max_update_norm = {self.max_norm:g} "
                f"([rounds] max_update_norm): {self.fold.norm:.4g} after "
                f"{self.reader.received} of {self.reader.size} bytes"
            )
        assert self._file is not None
        self._file.write(chunk)

    @property
    def short(self) -> bool:
        return self.reader.received < self.reader.size

    def finish(self) -> None:
        """Check the upload is complete, its spool written through."""
        self.ended = True
        self.reader.finish()
        assert self._file is not None
        self._file.flush()

    def keep(self, path: Path) -> None:
        """fsync the spool and give it its final name (the bytes of an accepted update)."""
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        os.replace(self.spool, path)
        self.spool = path
        fsync_dir(path.parent)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self.close()
        self.spool.unlink(missing_ok=True)

    def replay(self) -> Iterator[Segment]:
        """The spooled update's segments, in order, read back through the open file
        (whatever its name has become, or a tmp cleaner did to it)."""
        assert self._file is not None
        self._file.flush()
        self._file.seek(0)
        reader = PayloadReader(
            self.header.manifest, size=self.header.payload_size, allow_nonfinite=True, hashed=False
        )
        buffer = memoryview(bytearray(DEFAULT_CHUNK_SIZE))  # reused: each segment is
        while n := self._file.readinto(buffer):  # folded before the next read
            yield from reader.feed(buffer[:n])
