"""flower-app's ClientApp: Flower's Message API, nothing fedsov-specific unless sample-dp."""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch.utils.data import DataLoader

from flower_app.task import Net, load_data, test, train

app = ClientApp()


def _data(context: Context):  # type: ignore[no-untyped-def]
    node = context.node_config
    return load_data(
        int(node.get("partition-id", 0)),
        int(node.get("num-partitions", 1)),
        str(node["data-path"]) if "data-path" in node else None,
    )


def _setting(msg: Message, context: Context, key: str) -> float:
    """The server's value for ``key`` this round, else the run config's."""
    config = msg.content.config_records.get("config", {})
    return config[key] if key in config else context.run_config[key]  # type: ignore[return-value]


@app.train()
def train_fn(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    dataset = _data(context)
    loader = DataLoader(dataset, batch_size=int(_setting(msg, context, "batch-size")), shuffle=True)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=float(_setting(msg, context, "learning-rate"))
    )
    trained = model
    if context.run_config.get("sample-dp", False):
        # fedsov's DP-SGD with the site's [privacy] settings; the site accounts the steps.
        from fedsov.site.flower_privacy import make_private

        trained, optimizer, loader = make_private(context, model, optimizer, loader)
    loss = train(trained, optimizer, loader, int(_setting(msg, context, "local-epochs")))
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(dataset)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_fn(msg: Message, context: Context) -> Message:
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    dataset = _data(context)
    loss, accuracy = test(model, dataset)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(dataset)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
