"""Edges of the state-store contract, every backend: what a fresh store holds, the exact
binding refusals, defaults, and that nothing a caller holds aliases what was stored.
Then what only SQLite promises: the file it leaves, deep paths, and worker threads."""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fedsov.exceptions import ConfigError, StateError
from fedsov.node.state import (
    ModelRow,
    Receipt,
    RoundRow,
    RoundState,
    StateStore,
    TaskRow,
)
from fedsov.node.state_sqlite import SCHEMA_VERSION, SqliteStateStore, check_schema_version

PLAN = {"local_epochs": 1, "batch_size": 8, "learning_rate": 0.1}
FED, PRINT = "fed", "0123456789abcdef" + "f" * 48


@pytest.fixture
def store(make: Callable[[Path], StateStore], tmp_path: Path) -> Iterator[StateStore]:
    s = make(tmp_path)
    s.bind(FED, PRINT)
    yield s
    s.close()


def row(number: int = 1, attempt: int = 1, **over: object) -> RoundRow:
    fields: dict[str, object] = dict(
        number=number,
        attempt=attempt,
        base_sha256="a" * 64,
        round_seed=7,
        plan=PLAN,
        opened_unix=1234.5,
        population=("site-0", "site-1"),
    )
    fields.update(over)
    return RoundRow(**fields)  # type: ignore[arg-type]


def open_one(store: StateStore, state: RoundState = RoundState.OPEN) -> None:
    store.open_round(
        row(state=state), [TaskRow("t0", 1, 1, "site-0"), TaskRow("t1", 1, 1, "site-1")]
    )


def receipt(task: str = "t0", site: str = "site-0") -> Receipt:
    return Receipt(1, 1, task, site, "c" * 64, {"metrics": {"loss": [1.0]}}, f"{task}.update", 2.0)


def model(sha: str, round: int) -> ModelRow:
    return ModelRow(sha, round, None, f"blobs/{sha}.safetensors", {"contributors": ["site-0"]})


def where(store: StateStore, tmp_path: Path) -> str:
    """How a refusal names the store: the file it was opened at, or "memory"."""
    return (
        str(tmp_path / "state" / "fedsov.db") if isinstance(store, SqliteStateStore) else "memory"
    )


def test_a_fresh_store_has_no_strategy_state(store: StateStore) -> None:
    assert store.strategy_state() == {}
    assert store.reports() == []
    assert store.latest_model() is None


def test_binding_refusals_name_the_store_and_what_differs(
    store: StateStore, tmp_path: Path
) -> None:
    prefix = re.escape(where(store, tmp_path))
    with pytest.raises(ConfigError) as other_federation:
        store.bind("other", PRINT)
    assert re.fullmatch(
        f"{prefix}: this state belongs to federation 'fed', not 'other'; use another output folder",
        str(other_federation.value),
    )
    with pytest.raises(ConfigError) as other_config:
        store.bind(FED, "fedcba9876543210" + "e" * 48)
    assert re.fullmatch(
        f"{prefix}: this state was written with another model, seed or strategy "
        r"\(fingerprint 0123456789abcdef, now fedcba9876543210\); a coordinator resumes "
        r"only with the config it started with \(use another output folder to start anew\)",
        str(other_config.value),
    )


def test_a_round_is_stored_open_whatever_state_its_row_says(store: StateStore) -> None:
    open_one(store, state=RoundState.FAILED)
    assert store.open_round_row() == row(state=RoundState.OPEN)  # opened_unix too


def test_a_refusal_without_a_reason_stores_an_empty_one(store: StateStore) -> None:
    open_one(store)
    store.resolve_task("t1", "declined")
    assert [(t.status, t.reason) for t in store.tasks(1, 1)] == [
        ("pending", ""),
        ("declined", ""),
    ]


def test_accepting_clears_the_reason_an_earlier_try_left(store: StateStore) -> None:
    open_one(store)
    store.resolve_task("t0", "pending", "upload cut short: truncated payload")
    store.accept(receipt())
    assert store.tasks(1, 1)[0] == TaskRow("t0", 1, 1, "site-0", "accepted", "")


def test_what_was_stored_does_not_change_with_what_the_caller_holds(store: StateStore) -> None:
    """Arguments mutated after the call, results mutated after they were read: the
    store still holds what it was given (nested values included)."""
    store.add_model(model("0" * 64, 0))
    given = model("1" * 64, 1)
    open_one(store)
    kept = receipt()
    store.accept(kept)
    kept.header["metrics"]["loss"].append(99.0)
    report: dict[str, Any] = {"round": 1, "sites": [{"site": "site-0"}]}
    strategy = {"clip": {"norm": 0.5}}
    store.close_round(1, 1, report=report, model=given, strategy_state=strategy)
    given.metadata["contributors"].append("intruder")
    report["sites"].append({"site": "intruder"})
    strategy["clip"]["norm"] = 99.0

    store.receipts(1, 1)[0].header["metrics"]["loss"].append(98.0)
    store.reports()[0]["sites"].append({"site": "intruder"})
    store.strategy_state()["clip"]["norm"] = 98.0
    latest = store.latest_model()
    assert latest is not None
    latest.metadata["contributors"].append("intruder")

    assert store.receipts(1, 1) == [receipt()]
    assert store.reports() == [{"round": 1, "sites": [{"site": "site-0"}]}]
    assert store.strategy_state() == {"clip": {"norm": 0.5}}
    assert store.latest_model() == model("1" * 64, 1)
    assert store.model("1" * 64) == model("1" * 64, 1)


# What only SQLite promises.


def _round_states(path: Path) -> list[tuple[int, int, str]]:
    db = sqlite3.connect(path)
    try:
        found = db.execute("SELECT number, attempt, state FROM rounds ORDER BY number, attempt")
        return [(int(n), int(a), str(s)) for n, a, s in found.fetchall()]
    finally:
        db.close()


def test_sqlite_file_records_how_each_round_ended(tmp_path: Path) -> None:
    """Operators (and the crash tests) read the file: completed rounds vs failed ones."""
    path = tmp_path / "state" / "fedsov.db"
    s = SqliteStateStore(path)
    s.bind(FED, PRINT)
    open_one(s)
    s.close_round(1, 1, report={}, model=None, strategy_state={})
    s.open_round(row(attempt=2), [TaskRow("t2", 1, 2, "site-0")])
    s.close_round(1, 2, report={}, model=model("1" * 64, 1), strategy_state={})
    s.close()
    assert _round_states(path) == [(1, 1, "failed"), (1, 2, "completed")]


def test_sqlite_stamps_a_new_state_with_its_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "state" / "fedsov.db"
    SqliteStateStore(path).close()
    db = sqlite3.connect(path)
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    finally:
        db.close()
    assert meta == {"schema_version": str(SCHEMA_VERSION)}


def test_sqlite_refuses_a_state_stamped_with_a_version_it_never_wrote_by_its_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "fedsov.db"
    SqliteStateStore(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(StateError, match=rf"^{re.escape(str(path))}: unknown state schema"):
        SqliteStateStore(path)


def test_sqlite_creates_the_folders_above_its_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "run-1" / "state" / "fedsov.db"
    s = SqliteStateStore(path)
    assert s.bind(FED, PRINT) is False
    s.close()
    assert path.is_file()


def test_sqlite_answers_from_worker_threads(tmp_path: Path) -> None:
    """The engine calls the store from its event loop and from asyncio.to_thread."""
    s = SqliteStateStore(tmp_path / "state" / "fedsov.db")
    s.bind(FED, PRINT)

    async def from_threads() -> RoundRow | None:
        await asyncio.to_thread(open_one, s)
        return await asyncio.to_thread(s.open_round_row)

    assert asyncio.run(from_threads()) == row()
    s.close()


def test_sqlite_claims_a_state_that_holds_only_half_a_binding(tmp_path: Path) -> None:
    s = SqliteStateStore(tmp_path / "state" / "fedsov.db")
    s._set_meta("federation", FED)  # a fingerprint was never written
    assert s.bind(FED, PRINT) is False
    assert s.bind(FED, PRINT) is True
    s.close()


def test_sqlite_refuses_a_non_finite_report_and_stores_nothing_of_it(tmp_path: Path) -> None:
    """Rows hold strict JSON: NaN is refused, and the round stays open as it was."""
    s = SqliteStateStore(tmp_path / "state" / "fedsov.db")
    s.bind(FED, PRINT)
    open_one(s)
    with pytest.raises((ValueError, StateError)):
        s.close_round(1, 1, report={"metrics": {"loss": math.nan}}, model=None, strategy_state={})
    assert s.open_round_row() == row()
    assert s.reports() == []
    s.close_round(1, 1, report={"metrics": {}}, model=None, strategy_state={"k": 1})
    assert s.reports() == [{"metrics": {}}]
    s.close()


@pytest.mark.parametrize("version", ["1", str(SCHEMA_VERSION)])
def test_a_schema_version_this_fedsov_reads_is_returned(version: str) -> None:
    assert check_schema_version(Path("state.sqlite"), version) == int(version)


@pytest.mark.parametrize("version", ["0", "-1", "abc", "2.0", "²", "\u0661", ""])
def test_a_schema_version_fedsov_never_wrote_is_named_with_what_to_give(version: str) -> None:
    """Not ASCII digits (a superscript or Arabic-Indic digit passes str.isdigit) or < 1."""
    with pytest.raises(StateError) as caught:
        check_schema_version(Path("/x/state.sqlite"), version)
    assert str(caught.value) == (
        f"/x/state.sqlite: unknown state schema version {version!r} (this fedsov reads 1 to "
        f"{SCHEMA_VERSION}): fedsov did not write this state; give the output folder of a "
        "coordinator or regional aggregator"
    )
