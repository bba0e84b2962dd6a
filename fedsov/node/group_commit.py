"""Receipts stored in groups: the uploads that complete while one commit is on its way
to disk share the next one, so N uploads completing together cost about two fsyncs of
the state store, not N. Each upload still waits until its own receipt is on disk."""

from __future__ import annotations

import asyncio

from fedsov.exceptions import StateError
from fedsov.node.state import Receipt, StateStore

__all__ = ["GroupCommit"]


class GroupCommit:
    def __init__(self, state: StateStore) -> None:
        self.state = state
        self._queue: list[tuple[Receipt, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def accept(self, receipt: Receipt) -> None:
        """Return once ``receipt`` is stored (a worker thread commits); raise its error
        (DuplicateUpdate, StateError) as ``StateStore.accept`` would."""
        stored = asyncio.get_running_loop().create_future()
        self._queue.append((receipt, stored))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        await stored

    async def _write(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                errors = await asyncio.to_thread(
                    self.state.accept_all, [receipt for receipt, _ in batch]
                )
            except BaseException as exc:  # the transaction itself failed, or a stop
                waiting, self._queue = batch + self._queue, []
                for _, stored in waiting:  # each waiter raises it: none is left waiting
                    _settle(stored, _own_copy(exc))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            for (_, stored), error in zip(batch, errors, strict=True):
                _settle(stored, error)


def _settle(stored: asyncio.Future[None], error: BaseException | None) -> None:
    if stored.done():
        return
    if error is None:
        stored.set_result(None)
    elif isinstance(error, asyncio.CancelledError):
        stored.cancel()
    else:
        stored.set_exception(error)


def _own_copy(exc: BaseException) -> BaseException:
    """An error of its own for each waiter (one instance raised in many tasks would
    chain their tracebacks together)."""
    if isinstance(exc, asyncio.CancelledError):
        return exc
    own = StateError(f"the state store could not store the receipt: {exc}")
    own.__cause__ = exc
    return own
