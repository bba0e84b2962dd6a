"""What an aggregator must remember to resume after a crash, behind one small interface.

The round engine writes here at the moments that matter: a round opens (with its
tasks) before any task is pushed; an update is acknowledged only once its receipt
is stored; a round closes in one call that stores its report, the new model's row
and the strategy's state together. Model blobs live on disk (``ModelStore``), written
and fsynced before the row that names them.

Two backends share one contract (``tests/node/test_state_store.py``):
``SqliteStateStore`` (fedsov.node.state_sqlite), what coordinators and
aggregators use, and ``MemoryStateStore``, for in-process engines that need not
survive their process.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from fedsov.exceptions import ConfigError, DuplicateUpdate, StateError

__all__ = [
    "MemoryStateStore",
    "ModelRow",
    "Receipt",
    "RoundRow",
    "RoundState",
    "StateStore",
    "TaskRow",
]


class RoundState(StrEnum):
    OPEN = "open"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True)
class RoundRow:
    number: int
    attempt: int
    base_sha256: str
    round_seed: int
    plan: dict[str, Any]  # the TrainingPlan pushed with its tasks
    opened_unix: float
    state: RoundState = RoundState.OPEN
    # The connected sites (sorted) the round's tasks were drawn from: the n of its
    # m-of-n sample, for site-level accounting.
    population: tuple[str, ...] = ()


@dataclass(frozen=True)
class TaskRow:
    task_id: str
    round: int
    attempt: int
    site: str
    status: str = "pending"
    reason: str = ""


@dataclass(frozen=True)
class Receipt:
    """An acknowledged update: its bytes are in ``spool`` (fsynced) until its round commits."""

    round: int
    attempt: int
    task_id: str
    site: str
    payload_sha256: str
    header: dict[str, Any]  # fedsov.messages.header_to_json
    spool: str
    received_unix: float


@dataclass(frozen=True)
class ModelRow:
    sha256: str
    round: int
    parent: str | None
    file: str  # the blob, relative to the model directory
    metadata: dict[str, Any]  # contributors, metrics


class StateStore(ABC):
    """The contract every backend meets; each call is atomic and durable when it returns."""

    @abstractmethod
    def bind(self, federation: str, fingerprint: str) -> bool:
        """Claim the store for this federation; True when it already held its state.

        Raises ConfigError when the store belongs to another federation or config.
        """

    @abstractmethod
    def open_round(self, row: RoundRow, tasks: Sequence[TaskRow]) -> None:
        """Record a round and its tasks; StateError while another round is open."""

    @abstractmethod
    def open_round_row(self) -> RoundRow | None:
        """The round that was open when the process stopped, if any."""

    @abstractmethod
    def tasks(self, number: int, attempt: int) -> list[TaskRow]: ...

    @abstractmethod
    def resolve_task(self, task_id: str, status: str, reason: str = "") -> None: ...

    @abstractmethod
    def accept(self, receipt: Receipt) -> None:
        """Store a receipt and mark its task accepted.

        DuplicateUpdate when the site already has an accepted update in that round
        attempt: an update is never counted twice.
        """

    @abstractmethod
    def receipts(self, number: int, attempt: int) -> list[Receipt]: ...

    @abstractmethod
    def close_round(
        self,
        number: int,
        attempt: int,
        *,
        report: dict[str, Any],
        model: ModelRow | None,
        strategy_state: dict[str, Any],
    ) -> None:
        """Close the open round in one transaction: report, model row, strategy state."""

    @abstractmethod
    def add_model(self, model: ModelRow) -> None:
        """Record a model outside a round (the initial one); idempotent by SHA-256."""

    @abstractmethod
    def model(self, sha256: str) -> ModelRow | None: ...

    @abstractmethod
    def latest_model(self) -> ModelRow | None:
        """The model of the highest round."""

    @abstractmethod
    def reports(self) -> list[dict[str, Any]]:
        """Reports of every closed round attempt, in the order they closed."""

    @abstractmethod
    def strategy_state(self) -> dict[str, Any]: ...

    def close(self) -> None:  # noqa: B027 - most backends hold nothing to release
        """Release the backend's resources."""


class MemoryStateStore(StateStore):
    """The contract in memory: for engines whose state need not outlive the process."""

    def __init__(self) -> None:
        self._binding: tuple[str, str] | None = None
        self._rounds: dict[tuple[int, int], RoundRow] = {}
        self._tasks: dict[str, TaskRow] = {}
        self._receipts: list[Receipt] = []
        self._models: dict[str, ModelRow] = {}
        self._reports: list[dict[str, Any]] = []
        self._strategy: dict[str, Any] = {}

    def bind(self, federation: str, fingerprint: str) -> bool:
        if self._binding is None:
            self._binding = (federation, fingerprint)
            return False
        check_binding(self._binding, (federation, fingerprint), "memory")
        return True

    def open_round(self, row: RoundRow, tasks: Sequence[TaskRow]) -> None:
        if self.open_round_row() is not None:
            raise StateError(f"round {row.number} cannot open while another round is open")
        if (row.number, row.attempt) in self._rounds:
            raise StateError(f"round {row.number} attempt {row.attempt} was already opened")
        self._rounds[(row.number, row.attempt)] = replace(row, state=RoundState.OPEN)
        for task in tasks:
            self._tasks[task.task_id] = task

    def open_round_row(self) -> RoundRow | None:
        return next((r for r in self._rounds.values() if r.state is RoundState.OPEN), None)

    def tasks(self, number: int, attempt: int) -> list[TaskRow]:
        found = [t for t in self._tasks.values() if (t.round, t.attempt) == (number, attempt)]
        return sorted(found, key=lambda t: t.site)

    def resolve_task(self, task_id: str, status: str, reason: str = "") -> None:
        task = self._tasks.get(task_id)
        if task is None:
            raise StateError(f"no task {task_id!r}")
        self._tasks[task_id] = replace(task, status=status, reason=reason)

    def accept(self, receipt: Receipt) -> None:
        task = self._tasks.get(receipt.task_id)
        if task is None:
            raise StateError(f"no task {receipt.task_id!r}")
        if any(
            (r.round, r.attempt, r.site) == (receipt.round, receipt.attempt, receipt.site)
            for r in self._receipts
        ):
            raise DuplicateUpdate(
                f"site {receipt.site!r} already has an accepted update in round {receipt.round}"
            )
        self._receipts.append(copy.deepcopy(receipt))
        self._tasks[receipt.task_id] = replace(task, status="accepted", reason="")

    def receipts(self, number: int, attempt: int) -> list[Receipt]:
        return [
            copy.deepcopy(r) for r in self._receipts if (r.round, r.attempt) == (number, attempt)
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
        row = self._rounds.get((number, attempt))
        if row is None or row.state is not RoundState.OPEN:
            raise StateError(f"round {number} attempt {attempt} is not open")
        if model is not None:
            self.add_model(model)
        state = RoundState.COMPLETED if model is not None else RoundState.FAILED
        self._rounds[(number, attempt)] = replace(row, state=state)
        self._reports.append(copy.deepcopy(report))
        self._strategy = copy.deepcopy(strategy_state)

    def add_model(self, model: ModelRow) -> None:
        self._models.setdefault(model.sha256, copy.deepcopy(model))

    def model(self, sha256: str) -> ModelRow | None:
        return copy.deepcopy(self._models.get(sha256))

    def latest_model(self) -> ModelRow | None:
        if not self._models:
            return None
        return copy.deepcopy(max(self._models.values(), key=lambda m: m.round))

    def reports(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._reports)

    def strategy_state(self) -> dict[str, Any]:
        return copy.deepcopy(self._strategy)


def check_binding(held: tuple[str, str], asked: tuple[str, str], where: str) -> None:
    """ConfigError naming what differs between the store's owner and this process."""
    if held[0] != asked[0]:
        raise ConfigError(
            f"{where}: this state belongs to federation {held[0]!r}, not {asked[0]!r}; "
            "use another output folder"
        )
    if held[1] != asked[1]:
        raise ConfigError(
            f"{where}: this state was written with another model, seed or strategy "
            f"(fingerprint {held[1][:16]}, now {asked[1][:16]}); a coordinator resumes only "
            "with the config it started with (use another output folder to start anew)"
        )
