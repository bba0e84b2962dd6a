"""The global model versions in a coordinator's output folder, read-only.

``OUT/state/fedsov.db`` holds one row per model (SHA-256, round, parent, blob,
metadata); ``OUT/models/blobs/<sha256>.safetensors`` holds its tensors. A blob is
trusted only once its tensors hash to the SHA-256 that names it.
"""

from __future__ import annotations

import json
import re
import sqlite3
import struct
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

from fedsov.exceptions import CodecError, ConfigError, StateError
from fedsov.models.version import ModelVersion
from fedsov.node.model import GlobalModel
from fedsov.node.state import ModelRow
from fedsov.node.state_sqlite import STATE_FILE, check_schema_version

__all__ = ["MIN_PREFIX", "ModelRegistry"]

MIN_PREFIX = 6  # hex digits of a SHA-256 that may name a model
_HEX = re.compile(r"[0-9a-f]+")


class ModelRegistry:
    """A snapshot of the model rows, taken when opened; blobs are read when asked for."""

    def __init__(self, out_dir: Path, versions: list[ModelVersion]) -> None:
        self.out_dir = out_dir
        self.models_dir = out_dir / "models"
        self._versions = sorted(versions, key=lambda v: v.round)  # stable: rowid breaks ties
        self._by_sha = {v.sha256: v for v in versions}

    @classmethod
    def open(cls, out_dir: Path) -> ModelRegistry:
        """Read the model rows of ``out_dir``; StateError when it is no fedsov output folder."""
        db_path = out_dir / STATE_FILE
        if not out_dir.is_dir():
            raise StateError(f"{out_dir}: no such folder")
        if not db_path.is_file():
            raise StateError(
                f"{out_dir}: not a fedsov output folder (no {STATE_FILE}); give the "
                "output folder of a coordinator or regional aggregator"
            )
        return cls(out_dir, [ModelVersion.from_row(row) for row in _read_rows(db_path)])

    def versions(self) -> list[ModelVersion]:
        """Every model, round 0 first."""
        return list(self._versions)

    def get(self, sha256: str) -> ModelVersion:
        version = self._by_sha.get(sha256)
        if version is None:
            raise ConfigError(f"{self.out_dir}: no model {sha256}")
        return version

    def resolve(self, ref: str) -> ModelVersion:
        """The model ``ref`` names: "latest", a round number or >= 6 hex digits of its SHA-256."""
        ref = ref.strip().lower()
        if ref == "latest":
            if not self._versions:
                raise ConfigError(f"{self.out_dir}: no models yet")
            return self._versions[-1]
        is_round = ref.isascii() and ref.isdigit()
        is_prefix = len(ref) >= MIN_PREFIX and _HEX.fullmatch(ref) is not None
        if not (is_round or is_prefix):
            raise ConfigError(
                f"{ref!r} names no model: give 'latest', a round number or at least "
                f"{MIN_PREFIX} hex digits of a SHA-256"
            )
        found = [
            v
            for v in self._versions
            if (is_round and v.round == int(ref)) or (is_prefix and v.sha256.startswith(ref))
        ]
        if len(found) == 1:
            return found[0]
        if not found:
            what = "round" if is_round and not is_prefix else "model whose SHA-256 starts with"
            raise ConfigError(f"{self.out_dir}: no {what} {ref} ({self._span()})")
        names = ", ".join(f"{v.sha256[:16]} (round {v.round})" for v in found)
        raise ConfigError(f"{ref!r} is ambiguous: it names {names}; give more hex digits")

    def _span(self) -> str:
        if not self._versions:
            return "no models yet"
        return f"models of rounds {self._versions[0].round} to {self._versions[-1].round}"

    def lineage(self, sha256: str) -> list[ModelVersion]:
        """The model, its parent, and so on back to the initial model."""
        chain = [self.get(sha256)]
        while (parent := chain[-1].parent) is not None:
            version = self._by_sha.get(parent)
            if version is None:
                raise StateError(
                    f"{self.out_dir}: model {chain[-1].sha256[:16]} (round {chain[-1].round}) "
                    f"names parent {parent[:16]}, which has no row"
                )
            if any(v.sha256 == version.sha256 for v in chain):
                raise StateError(f"{self.out_dir}: the lineage of {sha256[:16]} loops")
            chain.append(version)
        return chain

    def blob_path(self, sha256: str) -> Path:
        version = self.get(sha256)
        path = self.models_dir / version.file
        if not path.resolve().is_relative_to(self.models_dir.resolve()):
            raise StateError(f"model {sha256[:16]}: its file {version.file!r} is outside models/")
        return path

    def read_blob(self, sha256: str) -> bytes:
        """The blob's bytes, once its tensors are checked to hash to ``sha256``."""
        return self._verified(sha256)[0]

    def load(self, sha256: str) -> dict[str, np.ndarray]:
        """The model's tensors in their stored order, checked to hash to ``sha256``."""
        return self._verified(sha256)[1]

    def _verified(self, sha256: str) -> tuple[bytes, dict[str, np.ndarray]]:
        """The blob's bytes and tensors; StateError naming the file if they are damaged."""
        version, path = self.get(sha256), self.blob_path(sha256)
        what = f"the model of round {version.round}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise StateError(f"{path}: cannot read {what}: {exc}") from exc
        try:
            loaded = safetensors.numpy.load(data)
            arrays = {name: loaded[name] for name in _tensor_order(data)}
            model = GlobalModel.from_arrays(arrays, round=version.round, parent=version.parent)
        except (ValueError, TypeError, KeyError, CodecError, safetensors.SafetensorError) as exc:
            raise StateError(f"{path}: damaged, cannot read {what}: {exc}") from exc
        if model.sha256 != sha256:
            raise StateError(
                f"{path}: damaged: its tensors hash to {model.sha256[:16]}, not to "
                f"{sha256[:16]} ({what})"
            )
        return data, arrays


def _tensor_order(data: bytes) -> list[str]:
    """Tensor names of a safetensors file in data order: the order the model was hashed in."""
    if len(data) < 8:
        raise ValueError("too short for a safetensors file")
    (size,) = struct.unpack_from("<Q", data)
    if 8 + size > len(data):
        raise ValueError(f"header of {size} bytes runs past the end of the file")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    return sorted(entries, key=lambda name: int(entries[name]["data_offsets"][0]))


def _read_rows(db_path: Path) -> list[ModelRow]:
    uri = f"{db_path.absolute().as_uri()}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"meta", "models"} <= tables:
                raise StateError(f"{db_path}: not a fedsov state database (no models table)")
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is not None:  # the models table is the same in every version so far
                check_schema_version(db_path, str(version[0]))
            rows = db.execute(
                "SELECT sha256, round, parent, file, metadata FROM models ORDER BY round, rowid"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise StateError(f"{db_path}: cannot read the state database: {exc}") from exc
    return [
        ModelRow(sha, rnd, parent, file, _metadata(db_path, sha, meta))
        for sha, rnd, parent, file, meta in rows
    ]


def _metadata(db_path: Path, sha256: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise StateError(f"{db_path}: model {sha256[:16]}: metadata is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise StateError(f"{db_path}: model {sha256[:16]}: metadata is not a JSON object")
    return value
