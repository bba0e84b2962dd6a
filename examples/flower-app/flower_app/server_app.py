"""flower-app's ServerApp (for ``flwr run``): FedAvg over the ClientApps.

In a fedsov federation this file is not used: fedsov's coordinator and regional
aggregators run the rounds (and Flower's strategies: ``[strategy]``).
"""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_app.task import Net

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    strategy = FedAvg(fraction_train=float(config["fraction-train"]))
    train_config = ConfigRecord(
        {key: config[key] for key in ("local-epochs", "batch-size", "learning-rate")}
    )
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(Net().state_dict()),
        train_config=train_config,
        num_rounds=int(config["num-server-rounds"]),
    )
    print(result)
