"""One run of examples/flower-app in Flower's own simulation (``run_simulation``, Ray).

FedAvg over every node each round (no DP), the plan's training settings as the
ServerApp's train config, central evaluation on the test NPZ after each round. Each
node reads ``$FLOWER_APP_DATA_DIR/part-<partition-id>.npz`` (the app's own rule);
run.py puts fedsov's partitions there. Writes {"accuracy": [...], "loss": [...]}.

    FLOWER_APP_DATA_DIR=DIR PYTHONPATH=examples/flower-app python flower_sim.py \\
        --nodes 4 --rounds 8 --test test.npz --seed 0 --out result.json \\
        --train-config '{"local-epochs": 1, "batch-size": 32, "learning-rate": 0.5}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from flower_app.client_app import app as client_app
from flower_app.task import Net, test
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from torch.utils.data import TensorDataset


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True, help="the initial model's torch seed")
    p.add_argument("--train-config", required=True, help="JSON: the ServerApp's train config")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args()


def main() -> None:
    args = _args()
    with np.load(args.test, allow_pickle=False) as npz:
        test_set = TensorDataset(
            torch.from_numpy(np.asarray(npz["x"], dtype=np.float32)),
            torch.from_numpy(np.asarray(npz["y"], dtype=np.int64)),
        )
    history: dict[str, list[float]] = {"accuracy": [], "loss": []}

    def central_eval(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = Net()
        model.load_state_dict(arrays.to_torch_state_dict())
        loss, accuracy = test(model, test_set)
        if server_round > 0:
            history["accuracy"].append(accuracy)
            history["loss"].append(loss)
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        torch.manual_seed(args.seed)
        strategy = FedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=args.nodes,
            min_available_nodes=args.nodes,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(Net().state_dict()),
            train_config=ConfigRecord(json.loads(args.train_config)),
            num_rounds=args.rounds,
            evaluate_fn=central_eval,
        )

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=args.nodes,
        # Ray's workers inherit this process's environment: PYTHONPATH (the app) and
        # FLOWER_APP_DATA_DIR (the nodes' data)
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    if len(history["accuracy"]) != args.rounds:
        raise SystemExit(f"Flower ran {len(history['accuracy'])} of {args.rounds} rounds")
    args.out.write_text(json.dumps(history), encoding="utf-8")


if __name__ == "__main__":
    try:
        main()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # Ray's threads would keep a failed run alive
    sys.stdout.flush()
    os._exit(0)
