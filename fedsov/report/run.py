"""A run folder as the report reads it: the plan, the summary and each tier's round records.

A run folder is what ``fedsov simulate`` writes (or a coordinator's output folder):

- ``rounds.jsonl``: the coordinator's records, one line per closed round attempt
  (``RoundReport.to_json`` of fedsov.node.engine), each site entry with its status
  and the ε it reported;
- ``summary.json``: written when the federation ends (absent while it runs);
- ``plan.toml``: the federation plan of a hierarchical run (absent in a flat one);
- ``nodes/<aggregator>/``: each regional aggregator's own output folder: its round
  records (the same format) in its state database, ``state/fedsov.db``, and its
  ``summary.json``, whose ``history`` holds the regional metrics alone.

Nothing here writes to the folder: the state database is opened read-only (and
immutable unless a write-ahead log shows its node may still be writing), and a torn
last line of ``rounds.jsonl`` (a coordinator killed mid-append) is skipped, not cut.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedsov.exceptions import FedsovError
from fedsov.policy.plan import Plan, Tier, load_plan

__all__ = ["STATE_DB", "NodeRecords", "RoundRecord", "Run", "SiteEntry", "load_run"]

# fedsov.node.state_sqlite.STATE_FILE, not imported from there: fedsov.node loads torch.
STATE_DB = Path("state") / "fedsov.db"
ROUNDS_FILE = "rounds.jsonl"
DEFAULT_COORDINATOR = "coordinator"


@dataclass(frozen=True)
class SiteEntry:
    """One participant's outcome in one round attempt, as the node it sends to recorded it."""

    site: str
    status: str  # accepted, declined, late, rejected (fedsov.node.rounds.TaskStatus)
    reason: str = ""
    epsilon: float | None = None  # the ε it reported: its total so far (ε composes)
    level: str | None = None  # what that ε protects: "sample" (a record), "update", "none"
    num_examples: int = 0
    contributors: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoundRecord:
    """One closed round attempt of one node."""

    round: int
    attempt: int
    completed: bool
    metrics: Mapping[str, float] = field(default_factory=dict)
    sites: tuple[SiteEntry, ...] = ()


@dataclass(frozen=True)
class NodeRecords:
    """The round records of one aggregating node, and where they were read from."""

    node: str
    rounds: tuple[RoundRecord, ...]
    source: str  # the file, relative to the run folder; "" when there was none
    has_sites: bool = True  # False: only metrics were found (a summary's history)


@dataclass(frozen=True)
class Run:
    """Everything the report shows, read from one run folder."""

    path: Path
    summary: Mapping[str, Any]  # {} while the run has not ended
    plan: Plan | None  # None: a flat run (no plan.toml)
    coordinator: NodeRecords
    regions: Mapping[str, NodeRecords]  # every regional aggregator with records, by name
    notes: tuple[str, ...] = ()  # what could not be found, for the reader

    @property
    def flat(self) -> bool:
        return self.plan is None

    def records_of(self, node: str) -> NodeRecords | None:
        """The records of the aggregating node ``node`` (coordinator or region)."""
        if node == self.coordinator.node:
            return self.coordinator
        return self.regions.get(node)


def load_run(path: Path) -> Run:
    """Read the run folder ``path``; FedsovError (ConfigError for a bad plan) naming the
    file and what to give instead when it is not one, or a record cannot be read."""
    if not path.is_dir():
        raise FedsovError(f"{path}: no such folder; give a run folder, e.g. runs/quickstart")
    rounds_file = path / ROUNDS_FILE
    if not rounds_file.is_file():
        raise FedsovError(
            f"{path}: not a fedsov run folder (no {ROUNDS_FILE}); give the --out folder of "
            "`fedsov simulate` (e.g. runs/consortium) or a coordinator's output folder"
        )
    plan_file = path / "plan.toml"
    plan = load_plan(plan_file) if plan_file.is_file() else None
    summary = _read_json(path / "summary.json")
    coordinator = plan.global_node.name if plan is not None else DEFAULT_COORDINATOR
    records = NodeRecords(coordinator, _read_rounds_file(rounds_file), ROUNDS_FILE)
    notes: list[str] = []
    if not summary:
        notes.append("no summary.json: the run has not ended (or was stopped)")
    regions: dict[str, NodeRecords] = {}
    for name in _region_names(path, plan):
        found = _read_region(path, name)
        if found is None:
            notes.append(f"no records of {name} (looked for nodes/{name}/{STATE_DB})")
        else:
            regions[name] = found
            if not found.has_sites:
                notes.append(f"{name}: only its summary's metrics (no {STATE_DB})")
    return Run(path, summary, plan, records, regions, tuple(notes))


def _region_names(path: Path, plan: Plan | None) -> list[str]:
    if plan is not None:
        return [n.name for n in plan.nodes if n.tier is Tier.REGIONAL]
    nodes = path / "nodes"
    return sorted(p.name for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []


def _read_region(path: Path, name: str) -> NodeRecords | None:
    folder = path / "nodes" / name
    db = folder / STATE_DB
    if db.is_file():
        source = f"nodes/{name}/{STATE_DB}"
        return NodeRecords(name, tuple(_record(r, source) for r in _read_state(db)), source)
    history = _read_json(folder / "summary.json").get("history")
    if not isinstance(history, list):
        return None
    source = f"nodes/{name}/summary.json"
    return NodeRecords(name, tuple(_history_record(h, source) for h in history), source, False)


def _read_state(db: Path) -> list[dict[str, Any]]:
    """The ``reports`` rows of a node's state database, oldest first, opened read-only."""
    wal = db.with_name(db.name + "-wal")
    # immutable: no lock, no -shm file left behind; a live node's log must be read, though.
    mode = "mode=ro" if wal.exists() and wal.stat().st_size else "immutable=1"
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?{mode}", uri=True)) as c:
            rows = c.execute("SELECT report FROM reports ORDER BY seq").fetchall()
    except sqlite3.DatabaseError as exc:
        raise FedsovError(f"{db}: cannot read its round records: {exc}") from exc
    out = []
    for (text,) in rows:
        try:
            out.append(json.loads(text))
        except ValueError as exc:
            raise FedsovError(f"{db}: a round record is not JSON: {exc}") from exc
    return out


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FedsovError(f"{path}: cannot read it: {exc}") from exc
    if not isinstance(data, dict):
        raise FedsovError(f"{path}: not a JSON object")
    return data


def _read_rounds_file(path: Path) -> tuple[RoundRecord, ...]:
    """Every complete line; a torn last line (no newline yet) is left alone."""
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    out = []
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise FedsovError(f"{where}: not JSON: {exc}") from exc
        out.append(_record(data, where))
    return tuple(out)


def _record(data: Any, where: str) -> RoundRecord:
    try:
        return RoundRecord(
            round=int(data["round"]),
            attempt=int(data.get("attempt", 1)),
            completed=bool(data["completed"]),
            metrics=_numbers(data.get("metrics") or {}),
            sites=tuple(_site(s) for s in data.get("sites") or ()),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FedsovError(f"{where}: not a round record ({type(exc).__name__}: {exc})") from exc


def _history_record(data: Any, where: str) -> RoundRecord:
    """A summary's ``history`` entry: the round, its completion and its metrics."""
    try:
        metrics = {k: v for k, v in data.items() if k not in ("round", "attempt", "completed")}
        return RoundRecord(
            round=int(data["round"]),
            attempt=int(data.get("attempt", 1)),
            completed=bool(data.get("completed", True)),
            metrics=_numbers(metrics),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FedsovError(f"{where}: not a history entry ({type(exc).__name__}: {exc})") from exc


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric metrics (a nested ``federated`` table or a string is not one)."""
    return {
        str(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _site(data: Mapping[str, Any]) -> SiteEntry:
    epsilon = data.get("epsilon")
    return SiteEntry(
        site=str(data["site"]),
        status=str(data["status"]),
        reason=str(data.get("reason") or ""),
        epsilon=float(epsilon) if isinstance(epsilon, int | float) else None,
        level=data.get("level"),
        num_examples=int(data.get("num_examples") or 0),
        contributors=tuple(str(c) for c in data.get("contributors") or ()),
    )
