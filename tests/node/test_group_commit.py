"""A group commit stores each receipt of the group, or says which one failed and why."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from test_state_store import open_round, receipt

from fedsov.exceptions import DuplicateUpdate, FedsovError, StateError
from fedsov.node.group_commit import GroupCommit
from fedsov.node.state import Receipt, StateStore


def test_one_transaction_keeps_the_good_receipts_and_names_each_bad_one(
    make: Callable[[Path], StateStore], tmp_path: Path
) -> None:
    store = make(tmp_path)
    store.bind("fed", "f" * 64)
    open_round(store, sites=3)
    errors = store.accept_all(
        [
            receipt("t1.1.0", "site-0"),
            receipt("t1.1.1", "site-0"),  # a second update of site-0 this round
            receipt("nope", "site-9"),  # no such task
            receipt("t1.1.2", "site-2"),
        ]
    )
    assert errors[0] is None and errors[3] is None
    assert isinstance(errors[1], DuplicateUpdate) and isinstance(errors[2], StateError)
    assert [r.task_id for r in store.receipts(1, 1)] == ["t1.1.0", "t1.1.2"]
    statuses = {t.task_id: t.status for t in store.tasks(1, 1)}
    assert statuses == {"t1.1.0": "accepted", "t1.1.1": "pending", "t1.1.2": "accepted"}
    store.close()


class CountingStore:
    """A state store's accept_all, counted (the transactions a group commit makes)."""

    def __init__(self, store: StateStore) -> None:
        self.store, self.groups = store, [0][:0]

    def accept_all(self, receipts: Sequence[Receipt]) -> list[FedsovError | None]:
        self.groups.append(len(receipts))
        return self.store.accept_all(receipts)


def test_uploads_completing_together_are_stored_with_their_own_outcome(
    make: Callable[[Path], StateStore], tmp_path: Path
) -> None:
    store = make(tmp_path)
    store.bind("fed", "f" * 64)
    open_round(store, sites=4)
    counting = CountingStore(store)

    async def scenario() -> list[BaseException | None]:
        group = GroupCommit(counting)  # type: ignore[arg-type]
        receipts = [receipt(f"t1.1.{i}", f"site-{i}") for i in range(4)]
        receipts.append(receipt("t1.1.3", "site-3"))  # the same update, again
        results = await asyncio.gather(*(group.accept(r) for r in receipts), return_exceptions=True)
        return list(results)

    results = asyncio.run(scenario())
    assert results[:4] == [None] * 4
    assert isinstance(results[4], DuplicateUpdate | StateError)
    assert sum(counting.groups) == 5  # each receipt committed once, in one or more groups
    assert len(store.receipts(1, 1)) == 4
    store.close()


def test_a_failed_transaction_fails_every_receipt_waiting_for_it(tmp_path: Path) -> None:
    class Broken:
        def accept_all(self, receipts: Sequence[Receipt]) -> list[FedsovError | None]:
            raise StateError("disk full")

    async def scenario() -> list[BaseException | None]:
        group = GroupCommit(Broken())  # type: ignore[arg-type]
        results = await asyncio.gather(
            *(group.accept(receipt(f"t{i}", f"s{i}")) for i in range(3)),
            return_exceptions=True,
        )
        return list(results)

    results = asyncio.run(scenario())
    assert all(isinstance(r, StateError) and "disk full" in str(r) for r in results)
    with pytest.raises(StateError):
        raise results[0]  # type: ignore[misc]
