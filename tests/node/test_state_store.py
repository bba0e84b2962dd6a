"""One contract, every backend: what the round engine relies on to resume after a crash."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fedsov.exceptions import ConfigError, DuplicateUpdate, StateError
from fedsov.node.state import (
    ModelRow,
    Receipt,
    RoundRow,
    RoundState,
    StateStore,
    TaskRow,
)
from fedsov.node.state_sqlite import SqliteStateStore

PLAN = {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.1, "momentum": 0.0}


@pytest.fixture
def store(make: Callable[[Path], StateStore], tmp_path: Path) -> Iterator[StateStore]:
    s = make(tmp_path)
    s.bind("fed", "f" * 64)
    yield s
    s.close()


def model(sha: str, round: int, parent: str | None = None) -> ModelRow:
    return ModelRow(sha, round, parent, f"blobs/{sha}.safetensors", {"contributors": []})


def open_round(store: StateStore, number: int = 1, attempt: int = 1, sites: int = 2) -> None:
    population = tuple(f"site-{i}" for i in range(sites + 1))  # one connected, not asked
    store.open_round(
        RoundRow(number, attempt, "a" * 64, 7, PLAN, 1.0, population=population),
        [TaskRow(f"t{number}.{attempt}.{i}", number, attempt, f"site-{i}") for i in range(sites)],
    )


def receipt(task: str, site: str, number: int = 1, attempt: int = 1) -> Receipt:
    return Receipt(number, attempt, task, site, "c" * 64, {"k": [1, 2]}, f"{task}.update", 2.0)


def test_bind_claims_once_then_checks(make: Callable[[Path], StateStore], tmp_path: Path) -> None:
    s = make(tmp_path)
    assert s.bind("fed", "f" * 64) is False
    assert s.bind("fed", "f" * 64) is True
    with pytest.raises(ConfigError, match="federation 'fed', not 'other'"):
        s.bind("other", "f" * 64)
    with pytest.raises(ConfigError, match="another model, seed or strategy"):
        s.bind("fed", "e" * 64)


def test_a_round_opens_with_its_tasks_and_only_one_at_a_time(store: StateStore) -> None:
    assert store.open_round_row() is None
    open_round(store)
    row = store.open_round_row()
    assert row is not None and (row.number, row.attempt, row.round_seed) == (1, 1, 7)
    assert row.plan == PLAN and row.state is RoundState.OPEN
    assert row.population == ("site-0", "site-1", "site-2")  # what the sample was drawn from
    assert [(t.task_id, t.site, t.status) for t in store.tasks(1, 1)] == [
        ("t1.1.0", "site-0", "pending"),
        ("t1.1.1", "site-1", "pending"),
    ]
    with pytest.raises(StateError, match="another round is open"):
        open_round(store, number=2)
    assert store.tasks(2, 1) == []  # nothing of the refused round was kept


def test_refusals_and_receipts_are_kept_per_task(store: StateStore) -> None:
    open_round(store, sites=3)
    store.resolve_task("t1.1.2", "declined", "budget-exhausted: no")
    store.accept(receipt("t1.1.0", "site-0"))
    statuses = {t.site: (t.status, t.reason) for t in store.tasks(1, 1)}
    assert statuses == {
        "site-0": ("accepted", ""),
        "site-1": ("pending", ""),
        "site-2": ("declined", "budget-exhausted: no"),
    }
    (kept,) = store.receipts(1, 1)
    assert kept == receipt("t1.1.0", "site-0")
    with pytest.raises(StateError, match="no task 'nope'"):
        store.resolve_task("nope", "declined")
    with pytest.raises(StateError, match="no task 'nope'"):
        store.accept(receipt("nope", "site-0"))


def test_an_update_is_never_counted_twice(store: StateStore) -> None:
    open_round(store)
    store.accept(receipt("t1.1.0", "site-0"))
    with pytest.raises(DuplicateUpdate, match="site 'site-0' already has an accepted update"):
        store.accept(receipt("t1.1.0", "site-0"))
    assert len(store.receipts(1, 1)) == 1


def test_closing_a_round_stores_report_model_and_strategy_together(store: StateStore) -> None:
    store.add_model(model("0" * 64, 0))
    open_round(store)
    store.accept(receipt("t1.1.0", "site-0"))
    store.close_round(
        1,
        1,
        report={"round": 1, "completed": True},
        model=model("1" * 64, 1, "0" * 64),
        strategy_state={"clip": 0.5},
    )
    assert store.open_round_row() is None
    assert store.reports() == [{"round": 1, "completed": True}]
    latest = store.latest_model()
    assert latest is not None and (latest.sha256, latest.parent) == ("1" * 64, "0" * 64)
    assert store.model("0" * 64) == model("0" * 64, 0)
    assert store.model("9" * 64) is None
    assert store.strategy_state() == {"clip": 0.5}
    with pytest.raises(StateError, match="round 1 attempt 1 is not open"):
        store.close_round(1, 1, report={}, model=None, strategy_state={})
    with pytest.raises(StateError, match="already opened"):
        open_round(store)


def test_a_failed_attempt_keeps_the_model_and_the_next_attempt_opens(store: StateStore) -> None:
    store.add_model(model("0" * 64, 0))
    open_round(store)
    store.close_round(1, 1, report={"round": 1, "attempt": 1}, model=None, strategy_state={})
    latest = store.latest_model()
    assert latest is not None and latest.round == 0
    open_round(store, attempt=2)
    row = store.open_round_row()
    assert row is not None and row.attempt == 2
    store.accept(receipt("t1.2.0", "site-0", attempt=2))  # a new attempt counts anew
    assert [r.attempt for r in store.receipts(1, 2)] == [2]
    assert store.receipts(1, 1) == []


def test_stored_data_are_copies(store: StateStore) -> None:
    store.add_model(model("0" * 64, 0))
    got = store.model("0" * 64)
    assert got is not None
    got.metadata["contributors"].append("intruder")
    again = store.model("0" * 64)
    assert again is not None and again.metadata == {"contributors": []}


def test_sqlite_state_survives_the_process(tmp_path: Path) -> None:
    first = SqliteStateStore(tmp_path / "state" / "fedsov.db")
    first.bind("fed", "f" * 64)
    first.add_model(model("0" * 64, 0))
    open_round(first)
    first.accept(receipt("t1.1.0", "site-0"))
    first.close()  # what a crash leaves: every call that returned is committed

    again = SqliteStateStore(tmp_path / "state" / "fedsov.db")
    assert again.bind("fed", "f" * 64) is True
    row = again.open_round_row()
    assert row is not None and row.number == 1
    assert row.population == ("site-0", "site-1", "site-2")
    assert [r.site for r in again.receipts(1, 1)] == ["site-0"]
    again.close()


def test_sqlite_brings_a_version_1_state_up_to_date(tmp_path: Path) -> None:
    """A state written before populations were stored: its open round has none."""
    path = tmp_path / "state" / "fedsov.db"
    path.parent.mkdir()
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE rounds (
            number INTEGER NOT NULL, attempt INTEGER NOT NULL, base_sha256 TEXT NOT NULL,
            round_seed INTEGER NOT NULL, plan TEXT NOT NULL, opened_unix REAL NOT NULL,
            state TEXT NOT NULL, PRIMARY KEY (number, attempt));
        INSERT INTO rounds VALUES (3, 1, 'aa', 7, '{}', 1.0, 'open');
        """
    )
    db.commit()
    db.close()
    store = SqliteStateStore(path)
    row = store.open_round_row()
    assert row is not None and (row.number, row.population) == (3, ())
    store.close()
    again = SqliteStateStore(path)  # migrated once, then read as it is
    assert again.open_round_row() == row
    again.close()


def test_sqlite_refuses_a_newer_state(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state" / "fedsov.db")
    store._set_meta("schema_version", "99")
    store.close()
    with pytest.raises(StateError, match="state schema version 99, this fedsov reads 2 and older"):
        SqliteStateStore(tmp_path / "state" / "fedsov.db")


def test_sqlite_refuses_a_damaged_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "fedsov.db"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match=r"fedsov\.db: cannot open the state database"):
        SqliteStateStore(path)
