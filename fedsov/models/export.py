"""Write a verified model out of the registry: its safetensors blob, or a torch state dict."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import IO

import numpy as np
import torch

from fedsov.exceptions import ConfigError
from fedsov.fileio import atomic_writer
from fedsov.models.registry import ModelRegistry

__all__ = ["ExportFormat", "export_model"]

_TORCH_SUFFIXES = (".pt", ".pth")


class ExportFormat(StrEnum):
    SAFETENSORS = "safetensors"  # the blob itself, byte for byte
    TORCH = "torch"  # {name: tensor} for torch.load(weights_only=True) + load_state_dict

    @classmethod
    def for_path(cls, path: Path) -> ExportFormat:
        """torch for ``.pt``/``.pth`` files, safetensors otherwise."""
        return cls.TORCH if path.suffix.lower() in _TORCH_SUFFIXES else cls.SAFETENSORS


def export_model(
    registry: ModelRegistry, sha256: str, dest: Path, fmt: ExportFormat | None = None
) -> ExportFormat:
    """Write model ``sha256`` to ``dest`` atomically, only after its blob is verified."""
    fmt = fmt or ExportFormat.for_path(dest)
    if dest.is_dir():
        raise ConfigError(f"{dest}: is a folder; give the file to write")
    if fmt is ExportFormat.SAFETENSORS:
        blob = registry.read_blob(sha256)
        _write(dest, lambda f: f.write(blob))
    else:
        arrays = registry.load(sha256)
        state = {k: torch.from_numpy(np.array(a, copy=True)) for k, a in arrays.items()}
        _write(dest, lambda f: torch.save(state, f))
    return fmt


def _write(dest: Path, write: Callable[[IO[bytes]], object]) -> None:
    try:
        with atomic_writer(dest) as f:
            write(f)
    except OSError as exc:
        raise ConfigError(f"{dest}: cannot write the model: {exc}") from exc
