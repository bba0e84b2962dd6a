"""A site's persistent privacy ledger: every release, recorded before the update leaves.

One JSON object a line, appended with a single write and fsynced. A process killed
mid-write leaves at most a torn last line: that release never completed (the update
is sent only after its entry is on disk), so the torn line is cut off when the ledger
is next opened. A damaged line anywhere else is corruption and stops the site.
Entries are keyed by a fingerprint of the site's dataset (and the privacy unit, one
record): ε composes over every release made from the same data, across rounds, runs,
restarts and federations. Entries written before fingerprints existed are counted
against every dataset (never under-counted).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fedsov.exceptions import ConfigError, DataError
from fedsov.fileio import append_record, read_records
from fedsov.privacy.accountant import MechanismStep, compute_epsilon

__all__ = ["DATASET_UNIT", "PRIVACY_UNIT", "LedgerEntry", "PrivacyLedger"]

PRIVACY_UNIT = "record"
"""What one ε protects: one record of one site (replace-one neighbours, N public)."""
DATASET_UNIT = "dataset"
"""What an update-level release protects: the site's whole dataset (replaced by any
other of the same, public, size); its ε bounds the record-level one too."""


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
    dataset: str = ""  # sha256 fingerprint of the data released from ("" = unknown: any)
    unit: str = PRIVACY_UNIT

    def about(self, dataset: str) -> bool:
        """Whether this release was made from ``dataset`` (or may have been)."""
        return self.dataset in ("", dataset)

    @property
    def step(self) -> MechanismStep:
        return MechanismStep(self.noise_multiplier, self.sample_rate, self.steps)


def _check(entry: LedgerEntry) -> None:
    """TypeError or ConfigError unless every field has its type (numbers finite) and the
    release is a valid mechanism step: a damaged entry must not be silently left out of ε
    (a non-string ``dataset`` matches no dataset)."""
    for f in fields(LedgerEntry):
        value = getattr(entry, f.name)
        if isinstance(value, bool) or not isinstance(value, _TYPES[str(f.type)]):
            raise TypeError(f"field {f.name!r}: expected {f.type}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise TypeError(f"field {f.name!r}: expected a finite number, got {value!r}")
    entry.step  # noqa: B018 - MechanismStep validates the release's parameters


_TYPES: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "float": (int, float)}


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
                entry = LedgerEntry(**record)
                _check(entry)
            except (TypeError, ConfigError) as exc:
                raise DataError(f"{self.path}, line {number}: corrupt ledger entry: {exc}") from exc
            entries.append(entry)
        return entries

    def history(self, dataset: str) -> list[MechanismStep]:
        """Every release made from ``dataset``, in any federation."""
        return [e.step for e in self.entries if e.about(dataset)]

    def epsilon(
        self,
        dataset: str,
        *,
        delta: float,
        accountant: str = "pld",
        extra: Sequence[MechanismStep] = (),
    ) -> float:
        return compute_epsilon(
            history=[*self.history(dataset), *extra], delta=delta, accountant=accountant
        )

    def record(
        self,
        *,
        dataset: str,
        federation: str,
        round: int,
        task_id: str,
        step: MechanismStep,
        delta: float,
        accountant: str = "pld",
        unit: str = PRIVACY_UNIT,
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
            dataset=dataset,
            unit=unit,
        )
        append_record(self.path, asdict(entry))
        self.entries.append(entry)
        return entry
