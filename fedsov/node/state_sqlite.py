"""The state store in SQLite: WAL journal, ``synchronous=FULL``, one transaction per call.

A commit is on disk when the call returns, so a process killed at any moment
restarts from the last call that returned. Rows hold JSON text, never pickles.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fedsov.exceptions import DuplicateUpdate, StateError
from fedsov.node.state import (
    ModelRow,
    Receipt,
    RoundRow,
    RoundState,
    StateStore,
    TaskRow,
    check_binding,
)

__all__ = ["STATE_FILE", "SqliteStateStore", "check_schema_version"]

SCHEMA_VERSION = 2
STATE_FILE = "state/fedsov.db"  # in a coordinator's or aggregator's output folder

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    number INTEGER NOT NULL, attempt INTEGER NOT NULL, base_sha256 TEXT NOT NULL,
    round_seed INTEGER NOT NULL, plan TEXT NOT NULL, opened_unix REAL NOT NULL,
    state TEXT NOT NULL, population TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (number, attempt));
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, round INTEGER NOT NULL, attempt INTEGER NOT NULL,
    site TEXT NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    round INTEGER NOT NULL, attempt INTEGER NOT NULL, task_id TEXT NOT NULL,
    site TEXT NOT NULL, payload_sha256 TEXT NOT NULL, header TEXT NOT NULL,
    spool TEXT NOT NULL, received_unix REAL NOT NULL, UNIQUE (round, attempt, site));
CREATE TABLE IF NOT EXISTS models (
    sha256 TEXT PRIMARY KEY, round INTEGER NOT NULL, parent TEXT, file TEXT NOT NULL,
    metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, round INTEGER NOT NULL, attempt INTEGER NOT NULL,
    report TEXT NOT NULL);
"""

# How to bring a state of version N to N + 1 (a database written by an older fedsov).
_MIGRATIONS = {
    1: "ALTER TABLE rounds ADD COLUMN population TEXT NOT NULL DEFAULT '[]'",  # v2: population
}


def check_schema_version(path: Path, version: str) -> int:
    """The schema version ``path`` is stamped with, if this fedsov reads it (1 to
    ``SCHEMA_VERSION``); StateError naming the version and what to do if not."""
    known = version.isascii() and version.isdigit()
    if known and int(version) > SCHEMA_VERSION:
        raise StateError(
            f"{path}: state schema version {version}, this fedsov reads {SCHEMA_VERSION} "
            "and older: it was written by a newer fedsov; use that version (or a later one)"
        )
    if not known or int(version) < 1:
        raise StateError(
            f"{path}: unknown state schema version {version!r} (this fedsov reads 1 to "
            f"{SCHEMA_VERSION}): fedsov did not write this state; give the output folder "
            "of a coordinator or regional aggregator"
        )
    return int(version)


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


class SqliteStateStore(StateStore):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode; every method runs one explicit transaction. The engine
            # calls from its event loop and from worker threads (``_lock``).
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: cannot open the state database: {exc}") from exc

    def _migrate(self) -> None:
        """Stamp a new database; bring an older one to ``SCHEMA_VERSION``."""
        version = self._meta("schema_version")
        if version is None:
            self._set_meta("schema_version", str(SCHEMA_VERSION))
            return
        for old in range(check_schema_version(self.path, version), SCHEMA_VERSION):
            with self._transaction() as db:
                db.execute(_MIGRATIONS[old])
                self._set_meta("schema_version", str(old + 1), db)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # The event loop and worker threads share the connection: one transaction at a time.
        with self._lock, self._transaction_unlocked() as db:
            yield db

    @contextlib.contextmanager
    def _transaction_unlocked(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: {exc}") from exc

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str, db: sqlite3.Connection | None = None) -> None:
        (db or self._db).execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def bind(self, federation: str, fingerprint: str) -> bool:
        with self._transaction() as db:
            held_federation = self._meta("federation")
            held_fingerprint = self._meta("fingerprint")
            if held_federation is None or held_fingerprint is None:
                self._set_meta("federation", federation, db)
                self._set_meta("fingerprint", fingerprint, db)
                return False
        check_binding(
            (held_federation, held_fingerprint), (federation, fingerprint), str(self.path)
        )
        return True

    def open_round(self, row: RoundRow, tasks: Sequence[TaskRow]) -> None:
        with self._transaction() as db:
            if self._open_round_row(db) is not None:
                raise StateError(f"round {row.number} cannot open while another round is open")
            try:
                db.execute(
                    "INSERT INTO rounds (number, attempt, base_sha256, round_seed, plan, "
                    "opened_unix, state, population) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        row.number,
                        row.attempt,
                        row.base_sha256,
                        row.round_seed,
                        _dump(row.plan),
                        row.opened_unix,
                        str(RoundState.OPEN),
                        _dump(list(row.population)),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise StateError(
                    f"round {row.number} attempt {row.attempt} was already opened"
                ) from exc
            db.executemany(
                "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                [(t.task_id, t.round, t.attempt, t.site, t.status, t.reason) for t in tasks],
            )

    def _open_round_row(self, db: sqlite3.Connection) -> RoundRow | None:
        row = db.execute(
            "SELECT number, attempt, base_sha256, round_seed, plan, opened_unix, state, "
            "population FROM rounds WHERE state = ?",
            (str(RoundState.OPEN),),
        ).fetchone()
        if row is None:
            return None
        number, attempt, base, seed, plan, opened, state, population = row
        return RoundRow(
            number,
            attempt,
            base,
            seed,
            json.loads(plan),
            opened,
            RoundState(state),
            population=tuple(json.loads(population)),
        )

    def open_round_row(self) -> RoundRow | None:
        return self._open_round_row(self._db)

    def tasks(self, number: int, attempt: int) -> list[TaskRow]:
        rows = self._db.execute(
            "SELECT task_id, round, attempt, site, status, reason FROM tasks "
            "WHERE round = ? AND attempt = ? ORDER BY site",
            (number, attempt),
        ).fetchall()
        return [TaskRow(*r) for r in rows]

    def resolve_task(self, task_id: str, status: str, reason: str = "") -> None:
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE tasks SET status = ?, reason = ? WHERE task_id = ?",
                (status, reason, task_id),
            )
            if cursor.rowcount != 1:
                raise StateError(f"no task {task_id!r}")

    def accept(self, receipt: Receipt) -> None:
        r = receipt
        try:
            with self._transaction() as db:
                cursor = db.execute(
                    "UPDATE tasks SET status = 'accepted', reason = '' WHERE task_id = ?",
                    (r.task_id,),
                )
                if cursor.rowcount != 1:
                    raise StateError(f"no task {r.task_id!r}")
                db.execute(
                    "INSERT INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        r.round,
                        r.attempt,
                        r.task_id,
                        r.site,
                        r.payload_sha256,
                        _dump(r.header),
                        r.spool,
                        r.received_unix,
                    ),
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateUpdate(
                f"site {r.site!r} already has an accepted update in round {r.round}"
            ) from exc

    def receipts(self, number: int, attempt: int) -> list[Receipt]:
        rows = self._db.execute(
            "SELECT round, attempt, task_id, site, payload_sha256, header, spool, received_unix "
            "FROM receipts WHERE round = ? AND attempt = ? ORDER BY rowid",
            (number, attempt),
        ).fetchall()
        return [
            Receipt(rnd, att, task, site, sha, json.loads(header), spool, received)
            for rnd, att, task, site, sha, header, spool, received in rows
        ]

    def close_round(
        self,
        number: int,
        attempt: int,
        *,
        report: dict[str, Any],
        model: ModelRow | None,
        strategy_state: dict[str, Any],
    ) -> None:
        state = RoundState.COMPLETED if model is not None else RoundState.FAILED
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE rounds SET state = ? WHERE number = ? AND attempt = ? AND state = ?",
                (str(state), number, attempt, str(RoundState.OPEN)),
            )
            if cursor.rowcount != 1:
                raise StateError(f"round {number} attempt {attempt} is not open")
            if model is not None:
                self._insert_model(db, model)
            db.execute(
                "INSERT INTO reports (round, attempt, report) VALUES (?, ?, ?)",
                (number, attempt, _dump(report)),
            )
            self._set_meta("strategy_state", _dump(strategy_state), db)

    @staticmethod
    def _insert_model(db: sqlite3.Connection, m: ModelRow) -> None:
        db.execute(
            "INSERT INTO models VALUES (?, ?, ?, ?, ?) ON CONFLICT(sha256) DO NOTHING",
            (m.sha256, m.round, m.parent, m.file, _dump(m.metadata)),
        )

    def add_model(self, model: ModelRow) -> None:
        with self._transaction() as db:
            self._insert_model(db, model)

    def _models(self, where: str, args: tuple[Any, ...]) -> ModelRow | None:
        row = self._db.execute(
            f"SELECT sha256, round, parent, file, metadata FROM models {where}", args
        ).fetchone()
        if row is None:
            return None
        sha, rnd, parent, file, metadata = row
        return ModelRow(sha, rnd, parent, file, json.loads(metadata))

    def model(self, sha256: str) -> ModelRow | None:
        return self._models("WHERE sha256 = ?", (sha256,))

    def latest_model(self) -> ModelRow | None:
        return self._models("ORDER BY round DESC, rowid DESC LIMIT 1", ())

    def reports(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT report FROM reports ORDER BY seq").fetchall()
        return [json.loads(r[0]) for r in rows]

    def strategy_state(self) -> dict[str, Any]:
        raw = self._meta("strategy_state")
        state: dict[str, Any] = json.loads(raw) if raw else {}
        return state

    def close(self) -> None:
        self._db.close()
