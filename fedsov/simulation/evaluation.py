"""Evaluation hooks for the coordinator: ``function(model, **kwargs) -> metrics``."""

from __future__ import annotations

from pathlib import Path

import torch

from fedsov.site.data import DataSpec, load_local_data
from fedsov.site.trainer import evaluate

__all__ = ["evaluate_file"]


def evaluate_file(model: torch.nn.Module, *, path: str) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on a held-out CSV/NPZ file."""
    data = load_local_data(DataSpec(path=Path(path)))
    accuracy, loss = evaluate(model, data, device="cpu")
    return {"accuracy": accuracy, "loss": loss, "examples": float(len(data))}
