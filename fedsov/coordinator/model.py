"""The global model: weights, their canonical payload and its content hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedsov.codec import EncodedTensors, Manifest, allocate, encode, sha256_hex, views_of
from fedsov.codec.safetensors_file import write_safetensors
from fedsov.fileio import write_atomic
from fedsov.strategy import RoundAggregate

__all__ = ["GlobalModel", "ModelStore", "state_to_numpy"]


def state_to_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """A module's state_dict as float CPU numpy arrays, in state_dict order."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


@dataclass(frozen=True)
class GlobalModel:
    """One version of the global model. ``sha256`` addresses it: the hash of its payload."""

    round: int
    encoded: EncodedTensors
    parent: str | None

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], *, round: int, parent: str | None
    ) -> GlobalModel:
        return cls(round=round, encoded=encode(arrays), parent=parent)

    @property
    def sha256(self) -> str:
        return self.encoded.sha256

    @property
    def manifest(self) -> Manifest:
        return self.encoded.manifest

    @classmethod
    def from_aggregate(
        cls, aggregate: RoundAggregate, *, base: GlobalModel, round: int
    ) -> GlobalModel:
        """The next model, written by the aggregate straight into its payload buffer."""
        payload = aggregate.result_buffer()
        if payload is None:
            payload, views = allocate(base.manifest)
        else:
            views = views_of(base.manifest, payload)
        aggregate.write_result(base.arrays(), views)
        encoded = EncodedTensors(base.manifest, payload, sha256_hex(payload))
        return cls(round=round, encoded=encoded, parent=base.sha256)

    def arrays(self) -> dict[str, np.ndarray]:
        """Views into the payload (no copy); do not modify them."""
        return views_of(self.manifest, self.encoded.payload)


class ModelStore:
    """Writes each global model as ``round-NNNN.safetensors`` plus JSON metadata.

    Files are written to a temporary name, fsynced and renamed: a reader never
    sees a half-written model. ``<file>.sha256`` is in ``sha256sum -c`` format.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def save(self, model: GlobalModel, metadata: Mapping[str, Any]) -> Path:
        path = self.directory / f"round-{model.round:04d}.safetensors"
        write_safetensors(
            path,
            model.manifest,
            model.encoded.payload,
            metadata={"fedsov_model_sha256": model.sha256, "round": str(model.round)},
        )
        with open(path, "rb") as f:
            file_sha = hashlib.file_digest(f, "sha256").hexdigest()
        write_atomic(path.with_suffix(".safetensors.sha256"), f"{file_sha}  {path.name}\n".encode())
        meta = {
            "round": model.round,
            "model_sha256": model.sha256,
            "parent_sha256": model.parent,
            "file": path.name,
            "file_sha256": file_sha,
            **metadata,
        }
        write_atomic(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())
        return path
