"""Tiny Flower apps for tests/site/test_flower_trainer.py (imported through [trainer] app)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.compat.client.numpy_client import NumPyClient
from torch.utils.data import DataLoader, TensorDataset

from fedsov.site.flower_privacy import make_private

SEEN: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = []
"""(config, node_config, state counter) of every call to ``shift``."""

STEP = 0.5


def _reply(msg: Message, arrays: ArrayRecord, **metrics: float) -> Message:
    content = RecordDict({"arrays": arrays, "metrics": MetricRecord(metrics)})
    return Message(content, reply_to=msg)


shift = ClientApp()


@shift.train()
def shift_train(msg: Message, context: Context) -> Message:
    """Adds STEP to every array; counts its calls in the Context's state."""
    calls = context.state.config_records.get("calls")
    count = int(calls["n"]) + 1 if calls is not None else 1
    context.state["calls"] = ConfigRecord({"n": count})
    SEEN.append((dict(msg.content["config"]), dict(context.node_config), {"n": count}))
    state = msg.content["arrays"].to_torch_state_dict()
    trained = {k: v + STEP for k, v in state.items()}
    return _reply(msg, ArrayRecord(trained), **{"num-examples": 40, "train_loss": 0.25})


@shift.evaluate()
def shift_evaluate(msg: Message, context: Context) -> Message:
    """Scores 1.5 on a metric in [0, 1] (clipped by the site) and the sum of the weights."""
    state = msg.content["arrays"].to_torch_state_dict()
    total = float(sum(float(v.sum()) for v in state.values()))
    metrics = {"num-examples": 25, "eval_acc": 1.5, "weight_sum": total}
    return Message(RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)


failing = ClientApp()


@failing.train()
def failing_train(msg: Message, context: Context) -> Message:
    raise RuntimeError("the hospital's disk is full")


erring = ClientApp()


@erring.train()
def erring_train(msg: Message, context: Context) -> Message:
    return Message(Error(code=7, reason="no data today"), reply_to=msg)


misshapen = ClientApp()


@misshapen.train()
def misshapen_train(msg: Message, context: Context) -> Message:
    state = msg.content["arrays"].to_torch_state_dict()
    first = next(iter(state))
    state[first] = torch.zeros(3)
    return _reply(msg, ArrayRecord(state), **{"num-examples": 40})


def _loader() -> DataLoader[Any]:
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((64, 4)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 2, 64))
    return DataLoader(TensorDataset(x, y), batch_size=16)


def _train_with(msg: Message, context: Context, *, private: bool) -> Message:
    from fedsov.simulation.models import mlp

    model = mlp(in_features=4, hidden=3, num_classes=2)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    optimizer = torch.optim.SGD(
        model.parameters(), lr=float(msg.content["config"]["learning-rate"])
    )
    loader = _loader()
    if private:
        model_, optimizer, loader = make_private(context, model, optimizer, loader)
    else:
        model_ = model
    for x, y in loader:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model_(x), y).backward()
        optimizer.step()
    return _reply(msg, ArrayRecord(model.state_dict()), **{"num-examples": 999})


private = ClientApp()


@private.train()
def private_train(msg: Message, context: Context) -> Message:
    return _train_with(msg, context, private=True)


forgetful = ClientApp()


@forgetful.train()
def forgetful_train(msg: Message, context: Context) -> Message:
    return _train_with(msg, context, private=False)


class ShiftClient(NumPyClient):
    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        SEEN.append((dict(config), {}, {}))
        return [p + STEP for p in parameters], 30, {"loss": 0.5}

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> Any:
        return 0.75, 12, {"accuracy": 0.25}


def client_fn(context: Context) -> Any:
    return ShiftClient().to_client()


not_an_app = 42
