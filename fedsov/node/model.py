"""The global model: weights, their canonical payload and its content hash."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy
import torch

from fedsov.codec import EncodedTensors, Manifest, allocate, encode, sha256_hex, views_of
from fedsov.codec.safetensors_file import write_safetensors
from fedsov.exceptions import NonFiniteTensor, StateError
from fedsov.fileio import write_atomic
from fedsov.strategy import RoundAggregate

__all__ = ["GlobalModel", "ModelStore", "state_to_numpy"]

_SLICE = 1 << 20  # elements per finiteness check (bounded temporaries)


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
        """The next model, written by the aggregate straight into its payload buffer.

        NonFiniteTensor if it holds NaN or Inf (a float16 model can overflow even
        with bounded updates): no such model is ever made.
        """
        payload = aggregate.result_buffer()
        if payload is None:
            payload, views = allocate(base.manifest)
        else:
            views = views_of(base.manifest, payload)
        aggregate.write_result(base.arrays(), views)
        _require_finite(views, round)
        encoded = EncodedTensors(base.manifest, payload, sha256_hex(payload))
        return cls(round=round, encoded=encoded, parent=base.sha256)

    def arrays(self) -> dict[str, np.ndarray]:
        """Views into the payload (no copy); do not modify them."""
        return views_of(self.manifest, self.encoded.payload)


class ModelStore:
    """Model blobs, content-addressed: ``blobs/<sha256>.safetensors``, plus a name per round.

    A blob is written to a temporary name, fsynced and renamed before anything names
    it, so a reader (or a restarted coordinator) never sees a half-written model.
    ``round-NNNN.safetensors`` is a hard link to the round's blob, beside
    ``round-NNNN.json`` (metadata) and ``round-NNNN.safetensors.sha256`` (``sha256sum
    -c`` format).
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.blobs = directory / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._file_sha: dict[str, str] = {}  # blob's model SHA-256 -> the file's

    def blob_name(self, sha256: str) -> str:
        return f"blobs/{sha256}.safetensors"

    def save(self, model: GlobalModel, metadata: Mapping[str, Any]) -> Path:
        blob = self.directory / self.blob_name(model.sha256)
        file_sha = self._file_sha.get(model.sha256)
        if file_sha is not None and blob.exists():
            pass  # this process wrote it (a model made again): hashed as it was written
        elif blob.exists():  # written before a restart
            with open(blob, "rb") as f:
                file_sha = hashlib.file_digest(f, "sha256").hexdigest()
        else:
            file_sha = write_safetensors(
                blob,
                model.manifest,
                model.encoded.payload,
                metadata={"fedsov_model_sha256": model.sha256, "round": str(model.round)},
            )
        self._file_sha = {model.sha256: file_sha}  # the latest blob only (memory)
        path = self.directory / f"round-{model.round:04d}.safetensors"
        _link_atomic(blob, path)
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

    def save_strategy_arrays(
        self, model: GlobalModel, arrays: Mapping[str, np.ndarray]
    ) -> dict[str, str]:
        """Write a strategy's model-sized state (moments) that goes with ``model``,
        atomically, before the commit that names it; what names it: file and SHA-256."""
        encoded = encode(arrays)
        name = f"blobs/{model.sha256}.strategy.safetensors"
        file_sha = write_safetensors(
            self.directory / name,
            encoded.manifest,
            encoded.payload,
            metadata={"fedsov_model_sha256": model.sha256, "round": str(model.round)},
        )
        return {"file": name, "sha256": file_sha}

    def load_strategy_arrays(self, ref: Mapping[str, str]) -> dict[str, np.ndarray]:
        """The arrays ``save_strategy_arrays`` wrote; StateError if missing or damaged."""
        path = self.directory / ref["file"]
        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != ref["sha256"]:
                raise StateError(f"{path}: does not hash to {ref['sha256'][:16]} (damaged?)")
            return dict(safetensors.numpy.load(data))
        except (OSError, safetensors.SafetensorError) as exc:
            raise StateError(f"{path}: cannot read the strategy's stored state: {exc}") from exc

    def remove_strategy_arrays(self, ref: Mapping[str, str]) -> None:
        """Delete a state file no commit names any more."""
        (self.directory / ref["file"]).unlink(missing_ok=True)

    def load(
        self, sha256: str, *, round: int, parent: str | None, manifest: Manifest
    ) -> GlobalModel:
        """The model whose payload hashes to ``sha256``; StateError if its blob is damaged."""
        blob = self.directory / self.blob_name(sha256)
        try:
            arrays = safetensors.numpy.load_file(str(blob))
            model = GlobalModel.from_arrays(
                {name: arrays[name] for name in manifest.names}, round=round, parent=parent
            )
        except (OSError, KeyError, safetensors.SafetensorError) as exc:
            raise StateError(f"{blob}: cannot read the model of round {round}: {exc}") from exc
        if model.sha256 != sha256:
            raise StateError(f"{blob}: holds model {model.sha256[:16]}, expected {sha256[:16]}")
        model.manifest.require_equal(manifest, what=str(blob))
        return model


def _require_finite(arrays: Mapping[str, np.ndarray], round: int) -> None:
    for name, array in arrays.items():
        flat = array.reshape(-1)
        if not np.issubdtype(flat.dtype, np.floating):
            continue
        for start in range(0, flat.size, _SLICE):
            finite = np.isfinite(flat[start : start + _SLICE])
            if not finite.all():
                bad = start + int(np.argmin(finite))
                raise NonFiniteTensor(
                    f"the aggregate of round {round} is not finite: tensor {name!r} holds "
                    f"{flat[bad]} at element {bad} ({flat.dtype} overflow?); no model is stored"
                )


def _link_atomic(target: Path, link: Path) -> None:
    """Make ``link`` name the same file as ``target``, replacing it atomically."""
    tmp = link.with_name(f".{link.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:  # no hard links here: a copy, written the same safe way
        write_atomic(tmp, target.read_bytes())
    os.replace(tmp, link)
