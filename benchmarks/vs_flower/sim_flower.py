"""Flower's simulation engine for the comparison (simulation.py runs this in its own session).

``flwr.simulation.run_simulation`` (Ray backend) with ``--sites`` SuperNodes running
sim_flower_client.py's ClientApp and a ServerApp with Flower's ``FedAvg``
(``fraction_train`` = per-round / sites, no federated evaluation) and a central
evaluation of each round's model on the test NPZ. The wall-clock time of each central
evaluation (round 0: before the first round) is what simulation.py times rounds by.
Writes {"eval_times": [...], "accuracy": [...], "loss": [...]} to ``--out``.

    VS_FLOWER_SIM='{"data_dir": ..., ...}' PYTHONPATH=benchmarks/vs_flower python sim_flower.py \\
        --sites 1000 --per-round 100 --rounds 5 --test test.npz --seed 0 --out flower.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from flwr.simulation import run_simulation
from sim_flower_client import SETTINGS_ENV, app, make_model
from torch import nn


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, required=True)
    p.add_argument("--per-round", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--test", type=Path, required=True)
    p.add_argument("--seed", type=int, required=True, help="the initial model's torch seed")
    p.add_argument("--cpus-per-client", type=float, default=1.0)
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args()


def main() -> None:
    args = _args()
    settings = json.loads(os.environ[SETTINGS_ENV])
    with np.load(args.test, allow_pickle=False) as npz:
        x_test = torch.from_numpy(np.asarray(npz["x"], dtype=np.float32))
        y_test = torch.from_numpy(np.asarray(npz["y"], dtype=np.int64))
    history: dict[str, list[float]] = {"eval_times": [], "accuracy": [], "loss": []}

    def central_eval(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = make_model(settings)
        model.load_state_dict(arrays.to_torch_state_dict())
        model.eval()
        with torch.no_grad():
            logits = model(x_test)
            loss = float(nn.functional.cross_entropy(logits, y_test))
            accuracy = float((logits.argmax(dim=1) == y_test).float().mean())
        history["eval_times"].append(time.time())
        history["accuracy"].append(accuracy)
        history["loss"].append(loss)
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        torch.manual_seed(args.seed)
        strategy = FedAvg(
            fraction_train=args.per_round / args.sites,
            fraction_evaluate=0.0,
            min_train_nodes=args.per_round,
            min_available_nodes=args.sites,
        )
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(make_model(settings).state_dict()),
            num_rounds=args.rounds,
            evaluate_fn=central_eval,
        )

    run_simulation(
        server_app=server_app,
        client_app=app,
        num_supernodes=args.sites,
        backend_config={"client_resources": {"num_cpus": args.cpus_per_client, "num_gpus": 0.0}},
    )
    if len(history["eval_times"]) != args.rounds + 1:
        done = len(history["eval_times"]) - 1
        raise SystemExit(f"Flower ran {max(done, 0)} of {args.rounds} rounds")
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
