"""The model, the local data and the training loop of flower-app."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def Net() -> nn.Module:  # noqa: N802 - Flower's examples name the model Net
    """An MLP 64-32-10 for 8x8 digits (the federation's model: fedsov builds it too)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def load_data(
    partition_id: int, num_partitions: int, data_path: str | None = None
) -> TensorDataset:
    """This node's examples: the NPZ at ``data_path`` (x, y), else
    ``$FLOWER_APP_DATA_DIR/part-<partition_id>.npz`` when that is set, else the node's
    share of digits."""
    data_dir = os.environ.get("FLOWER_APP_DATA_DIR")
    if not data_path and data_dir:
        data_path = os.path.join(data_dir, f"part-{partition_id}.npz")
    if data_path:
        with np.load(data_path, allow_pickle=False) as npz:
            x, y = npz["x"], npz["y"]
    else:
        digits = load_digits()
        order = np.random.default_rng(0).permutation(len(digits.target))
        share = np.array_split(order, num_partitions)[partition_id]
        x, y = digits.data[share] / 16.0, digits.target[share]
    return TensorDataset(
        torch.from_numpy(np.asarray(x, dtype=np.float32)),
        torch.from_numpy(np.asarray(y, dtype=np.int64)),
    )


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    epochs: int,
) -> float:
    """SGD over ``loader``; returns the mean training loss."""
    model.train()
    loss_sum, seen = 0.0, 0
    for _ in range(epochs):
        for x, y in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)
            seen += len(y)
    return loss_sum / max(seen, 1)


def test(model: nn.Module, dataset: TensorDataset) -> tuple[float, float]:
    """(loss, accuracy) of ``model`` on ``dataset``."""
    model.eval()
    x, y = dataset.tensors
    with torch.no_grad():
        logits = model(x)
    loss = float(nn.functional.cross_entropy(logits, y))
    return loss, float((logits.argmax(1) == y).float().mean())
