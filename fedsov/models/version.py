"""One global model version as the registry shows it: its row, metadata filled in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fedsov.exceptions import StateError
from fedsov.node.state import ModelRow

__all__ = ["ModelVersion"]

_LISTS = ("contributors", "sites", "regions")
_OBJECTS = ("epsilon", "site_level_epsilon", "metrics")
_STRINGS = ("plan_sha256", "created")


@dataclass(frozen=True)
class ModelVersion:
    """A model row; metadata keys an older coordinator did not write read as empty or None."""

    sha256: str
    round: int
    parent: str | None
    file: str  # the blob, relative to the output folder's models/
    contributors: tuple[str, ...] = ()  # sites, or regional aggregators in a hierarchy
    sites: tuple[str, ...] = ()  # every site behind it, through regions
    regions: tuple[str, ...] = ()  # regional aggregators among the contributors
    epsilon: Mapping[str, float] = field(default_factory=dict)  # site -> sample-level ε
    site_level_epsilon: Mapping[str, float] = field(default_factory=dict)  # region -> ε
    metrics: Mapping[str, Any] = field(default_factory=dict)
    plan_sha256: str | None = None
    created: str | None = None  # ISO time
    extra: Mapping[str, Any] = field(default_factory=dict)  # metadata keys not named above

    @classmethod
    def from_row(cls, row: ModelRow) -> ModelVersion:
        """StateError naming the model and key when a metadata value has the wrong type."""
        meta = dict(row.metadata)
        where = f"model {row.sha256[:16]} (round {row.round})"
        values: dict[str, Any] = {}
        for key in _LISTS:
            value = meta.pop(key, None) or []
            if not isinstance(value, list):
                raise StateError(f"{where}: metadata {key!r} is not a list: {value!r}")
            values[key] = tuple(str(v) for v in value)
        for key in _OBJECTS:
            value = meta.pop(key, None) or {}
            if not isinstance(value, dict):
                raise StateError(f"{where}: metadata {key!r} is not an object: {value!r}")
            values[key] = value
        for key in _STRINGS:
            value = meta.pop(key, None)
            if value is not None and not isinstance(value, str):
                raise StateError(f"{where}: metadata {key!r} is not a string: {value!r}")
            values[key] = value
        return cls(row.sha256, row.round, row.parent, row.file, **values, extra=meta)

    @property
    def accuracy(self) -> float | None:
        value = self.metrics.get("accuracy")
        return float(value) if isinstance(value, int | float) else None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: every field, lists for tuples."""
        return {
            "sha256": self.sha256,
            "round": self.round,
            "parent": self.parent,
            "file": self.file,
            **{key: list(getattr(self, key)) for key in _LISTS},
            **{key: dict(getattr(self, key)) for key in _OBJECTS},
            **{key: getattr(self, key) for key in _STRINGS},
            "extra": dict(self.extra),
        }
