"""Each Flower aggregation rule, run by fedsov through a real Round (spools, folds), gives
what Flower's own new-API strategy's aggregate_train gives on the same replies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp import strategy as flwr_strategies

from fedsov.codec import iter_chunks
from fedsov.messages import TrainingPlan, TrainTask
from fedsov.node.model import GlobalModel
from fedsov.node.rounds import Round, TaskRecord
from fedsov.strategy import SpooledAggregate, Strategy, create_strategy
from fedsov.testing import update_for

SHAPES = {"conv.weight": (4, 3, 3), "fc.weight": (5, 7), "fc.bias": (7,)}
NUM_EXAMPLES = (12, 40, 7, 25, 33, 18, 50, 9, 21)  # 9 sites: Bulyan with f = 1 needs 7
Arrays = dict[str, np.ndarray]


def initial_model() -> Arrays:
    rng = np.random.default_rng(1)
    return {k: rng.normal(0.0, 0.5, s).astype(np.float32) for k, s in SHAPES.items()}


def round_updates(number: int) -> list[Arrays]:
    """The sites' updates of round ``number``: spread differently, the last one far off."""
    rng = np.random.default_rng(100 + number)
    updates = []
    for i in range(len(NUM_EXAMPLES)):
        scale = 0.05 * (1 + i % 3) * (20.0 if i == len(NUM_EXAMPLES) - 1 else 1.0)
        updates.append(
            {k: rng.normal(0.01 * i, scale, s).astype(np.float32) for k, s in SHAPES.items()}
        )
    return updates


async def _chunks(payload: bytes) -> AsyncIterator[bytes]:
    for chunk in iter_chunks(payload, 37):  # misaligned with the tensors on purpose
        yield bytes(chunk)


async def fedsov_round(
    spool: Path, strategy: Strategy, base: GlobalModel, number: int, updates: list[Arrays]
) -> GlobalModel:
    """One round through fedsov's Round: each update spooled, checked, then handed over."""
    tasks = {}
    for i in range(len(updates)):
        task = TrainTask(
            task_id=f"t{number}-{i}",
            round=number,
            model_sha256=base.sha256,
            model_size=base.encoded.size,
            manifest=base.manifest,
            plan=TrainingPlan(),
            deadline_unix=0.0,
            round_seed=number,
        )
        tasks[task.task_id] = TaskRecord(task=task, site=f"site-{i}")
    rnd = Round(
        number=number,
        model=base,
        tasks=tasks,
        deadline=time.time() + 60,
        _aggregate=strategy.start_round(base.manifest),
        spool_dir=spool / f"round-{number}",
    )
    for record, update, n in zip(tasks.values(), updates, NUM_EXAMPLES, strict=True):
        header, payload = update_for(record.task, update, n)
        await rnd.receive(record.site, header, _chunks(payload))
    return rnd.next_model()


def reply(arrays: Arrays, num_examples: int) -> Message:
    metadata = Metadata(
        run_id=1,
        message_id="",
        src_node_id=2,
        dst_node_id=0,
        reply_to_message_id="m",
        group_id="",
        created_at=0.0,
        ttl=3600.0,
        message_type="train",
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord({"num-examples": num_examples}),
        }
    )
    return Message(content, metadata=metadata)


def flower_round(strategy: Any, current: Arrays, number: int, updates: list[Arrays]) -> Arrays:
    """One round of Flower's strategy: sites reply with their local models."""
    if isinstance(strategy, flwr_strategies.FedAvgM):
        if strategy.current_arrays is None:  # as its configure_train does
            strategy.current_arrays = ArrayRecord({k: Array(v) for k, v in current.items()})
    elif hasattr(strategy, "current_arrays"):  # FedOpt's configure_train, every round
        strategy.current_arrays = {k: v.copy() for k, v in current.items()}
    replies = [
        reply({k: current[k] + u[k] for k in current}, n)
        for u, n in zip(updates, NUM_EXAMPLES, strict=True)
    ]
    arrays, _ = strategy.aggregate_train(number, replies)
    assert arrays is not None
    return {k: arrays[k].numpy() for k in current}


CASES: list[tuple[str, dict[str, Any], Callable[[], Any], int]] = [
    ("fedadam", {}, flwr_strategies.FedAdam, 3),
    (
        "fedadam",
        {"eta": 0.03, "beta_1": 0.5, "tau": 0.01},
        lambda: flwr_strategies.FedAdam(eta=0.03, beta_1=0.5, tau=0.01),
        3,
    ),
    ("fedyogi", {}, flwr_strategies.FedYogi, 3),
    ("fedadagrad", {}, flwr_strategies.FedAdagrad, 3),
    ("fedavgm", {}, flwr_strategies.FedAvgM, 2),
    (
        "fedavgm",
        {"server_learning_rate": 0.7, "server_momentum": 0.9},
        lambda: flwr_strategies.FedAvgM(server_learning_rate=0.7, server_momentum=0.9),
        3,
    ),
    ("fedprox", {"proximal_mu": 0.3}, lambda: flwr_strategies.FedProx(proximal_mu=0.3), 2),
    ("fedmedian", {"window": 5}, flwr_strategies.FedMedian, 2),
    ("fedtrimmedavg", {"window": 5}, flwr_strategies.FedTrimmedAvg, 1),
    ("fedtrimmedavg", {"beta": 0.35}, lambda: flwr_strategies.FedTrimmedAvg(beta=0.35), 1),
    (
        "krum",
        {"num_malicious_nodes": 1, "window": 6},
        lambda: flwr_strategies.Krum(num_malicious_nodes=1),
        2,
    ),
    (
        "multikrum",
        {"num_malicious_nodes": 1, "num_nodes_to_select": 4, "window": 6},
        lambda: flwr_strategies.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=4),
        2,
    ),
    (
        "bulyan",
        {"num_malicious_nodes": 1, "window": 5},
        lambda: flwr_strategies.Bulyan(num_malicious_nodes=1),
        2,
    ),
    ("bulyan", {}, flwr_strategies.Bulyan, 1),
]


@pytest.mark.parametrize(
    ("name", "settings", "flower", "rounds"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_fedsov_aggregates_as_flower(
    tmp_path: Path,
    name: str,
    settings: dict[str, Any],
    flower: Callable[[], Any],
    rounds: int,
) -> None:
    ours, theirs = create_strategy(name, **settings), flower()
    model = GlobalModel.from_arrays(initial_model(), round=0, parent=None)
    current = initial_model()
    for number in range(1, rounds + 1):
        updates = round_updates(number)
        model = asyncio.run(fedsov_round(tmp_path, ours, model, number, updates))
        current = flower_round(theirs, current, number, updates)
        for key, value in model.arrays().items():
            np.testing.assert_allclose(value, current[key], rtol=0, atol=1e-6, err_msg=key)


def test_fedprox_sends_mu_with_every_task() -> None:
    plan = TrainingPlan(local_epochs=2)
    sent = create_strategy("fedprox", proximal_mu=0.25).configure_training(plan)
    assert (sent.proximal_mu, sent.local_epochs) == (0.25, 2)
    assert create_strategy("fedavg").configure_training(plan) is plan


def test_a_spooled_rule_reads_every_update_window_by_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[int, int]] = []
    windows = SpooledAggregate.windows

    def spy(self: SpooledAggregate, updates: Any) -> Any:
        for spec, start, values in windows(self, updates):
            seen.append(values.shape)
            yield spec, start, values

    monkeypatch.setattr(SpooledAggregate, "windows", spy)
    model = GlobalModel.from_arrays(initial_model(), round=0, parent=None)
    updates = round_updates(1)
    ours = asyncio.run(
        fedsov_round(tmp_path, create_strategy("fedmedian", window=4), model, 1, updates)
    )
    theirs = flower_round(flwr_strategies.FedMedian(), initial_model(), 1, updates)
    for key, value in ours.arrays().items():
        np.testing.assert_allclose(value, theirs[key], rtol=0, atol=1e-6)
    per_tensor = [-(-int(np.prod(s)) // 4) for s in SHAPES.values()]
    assert len(seen) == sum(per_tensor)  # every window once, never a whole update
    assert {rows for rows, _ in seen} == {len(NUM_EXAMPLES)}
    assert max(width for _, width in seen) == 4
