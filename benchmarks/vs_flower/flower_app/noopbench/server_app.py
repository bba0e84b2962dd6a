"""FedAvg over every node for N rounds; each round's close time goes to a JSON-lines file."""

import json
import time
from collections.abc import Iterable

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


class TimedFedAvg(FedAvg):
    """FedAvg that records the wall-clock time at which each round's aggregate is ready."""

    def __init__(self, timestamps: str, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.timestamps = timestamps

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if self.timestamps:
            ok = sum(1 for m in replies if not m.has_error())
            with open(self.timestamps, "a", encoding="utf-8") as f:
                f.write(json.dumps({"round": server_round, "closed": time.time(), "replies": ok}))
                f.write("\n")
        return arrays, metrics


def _arrays(shapes: str) -> ArrayRecord:
    """Float32 zeros of the given shapes ("rows,cols;n;..."), as the fedsov model has."""
    dims = [tuple(int(d) for d in spec.split(",")) for spec in shapes.split(";")]
    return ArrayRecord([np.zeros(shape, dtype=np.float32) for shape in dims])


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    nodes = int(config["num-nodes"])
    strategy = TimedFedAvg(
        str(config["timestamps-file"]),
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=nodes,
        min_available_nodes=nodes,
    )
    strategy.start(
        grid=grid,
        initial_arrays=_arrays(str(config["shapes"])),
        num_rounds=int(config["num-server-rounds"]),
    )
