"""A site's persistent privacy ledger: every release, recorded before the update leaves.

One JSON object a line, appended with a single write and fsynced. A process killed
mid-write leaves at most a torn last line: that release never completed (the update
is sent only after its entry is on disk), so the torn line is cut off when the ledger
is next opened. A damaged line anywhere else is corruption and stops the site.
ε composes over every entry of a federation, across rounds, runs and restarts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fedsov.exceptions import DataError
from fedsov.fileio import append_record, read_records
from fedsov.privacy.accountant import MechanismStep, compute_epsilon

__all__ = ["LedgerEntry", "PrivacyLedger"]


@dataclass(frozen=True)
class LedgerEntry:
    site: str
    jurisdiction: str
    federation: str
    accountant: str
    round: int
    task_id: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    recorded_unix: float

    @property
    def step(self) -> MechanismStep:
        return MechanismStep(self.noise_multiplier, self.sample_rate, self.steps)


class PrivacyLedger:
    def __init__(self, path: Path, *, site: str = "", jurisdiction: str = "") -> None:
        self.path = path
        self.site = site
        self.jurisdiction = jurisdiction
        self.entries: list[LedgerEntry] = self._load()

    def _load(self) -> list[LedgerEntry]:
        try:
            records = read_records(self.path)
        except ValueError as exc:
            where, _, why = str(exc).partition(": ")
            raise DataError(f"{self.path}, {where}: corrupt ledger entry: {why}") from exc
        entries = []
        for number, record in enumerate(records, start=1):
            try:
                entries.append(LedgerEntry(**record))
            except TypeError as exc:
                raise DataError(f"{self.path}, line {number}: corrupt ledger entry: {exc}") from exc
        return entries

    def history(self, federation: str) -> list[MechanismStep]:
        return [e.step for e in self.entries if e.federation == federation]

    def epsilon(
        self,
        federation: str,
        *,
        delta: float,
        accountant: str,
        extra: Sequence[MechanismStep] = (),
    ) -> float:
        return compute_epsilon(
            history=[*self.history(federation), *extra], delta=delta, accountant=accountant
        )

    def record(
        self,
        *,
        federation: str,
        round: int,
        task_id: str,
        step: MechanismStep,
        delta: float,
        accountant: str = "prv",
    ) -> LedgerEntry:
        """Append and fsync one release; returns only once it is on disk."""
        entry = LedgerEntry(
            site=self.site,
            jurisdiction=self.jurisdiction,
            federation=federation,
            accountant=accountant,
            round=round,
            task_id=task_id,
            noise_multiplier=step.noise_multiplier,
            sample_rate=step.sample_rate,
            steps=step.steps,
            delta=delta,
            recorded_unix=time.time(),
        )
        append_record(self.path, asdict(entry))
        self.entries.append(entry)
        return entry
