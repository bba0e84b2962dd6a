"""The ClientApp of the simulation comparison (sim_flower.py): fedsov's local training, in Flower.

Node ``partition-id`` i trains on the NPZ fedsov wrote for ``site-<i+1>`` (the names
``fedsov simulate`` gives its sites), with what fedsov's ``DPTrainer`` does when DP is
off: ``fedsov.simulation.models`` model, shuffled minibatches, plain SGD (no momentum),
cross-entropy, ``local-epochs`` epochs. The settings come in the environment variable
``VS_FLOWER_SIM`` (JSON; Ray's workers inherit the driver's environment).
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedsov.simulation import models

__all__ = ["SETTINGS_ENV", "app", "make_model"]

SETTINGS_ENV = "VS_FLOWER_SIM"

app = ClientApp()


@cache
def _settings() -> dict[str, Any]:
    settings: dict[str, Any] = json.loads(os.environ[SETTINGS_ENV])
    return settings


def make_model(settings: dict[str, Any]) -> nn.Module:
    """The model fedsov's sites train: ``settings["model"]`` names a models factory."""
    factory = getattr(models, settings["model"]["name"])
    model: nn.Module = factory(**settings["model"]["kwargs"])
    return model


def _dataset(partition_id: int) -> TensorDataset:
    path = Path(_settings()["data_dir"]) / f"site-{partition_id + 1}.npz"
    with np.load(path, allow_pickle=False) as npz:
        return TensorDataset(
            torch.from_numpy(np.asarray(npz["x"], dtype=np.float32)),
            torch.from_numpy(np.asarray(npz["y"], dtype=np.int64)),
        )


@app.train()
def train(msg: Message, context: Context) -> Message:
    settings = _settings()
    torch.set_num_threads(1)
    model = make_model(settings)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    data = _dataset(int(context.node_config["partition-id"]))
    loader = DataLoader(data, batch_size=int(settings["batch_size"]), shuffle=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(settings["learning_rate"]))
    criterion = nn.CrossEntropyLoss()
    model.train()
    loss_sum, seen = 0.0, 0
    for _ in range(int(settings["local_epochs"])):
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = criterion(model(xb), yb)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.item()) * len(yb)
            seen += len(yb)
    metrics = MetricRecord({"train_loss": loss_sum / max(seen, 1), "num-examples": len(data)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)
