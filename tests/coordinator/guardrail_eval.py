"""An evaluation hook a test steers: the metric is the model's first bias, which the
synthetic sites of guardrail_harness move by exactly what they send (FedAvg of equal
deltas is that delta)."""

from __future__ import annotations

import torch


def first_bias(model: torch.nn.Module, *, metric: str = "accuracy") -> dict[str, float]:
    bias = next(p for name, p in model.named_parameters() if name.endswith("bias"))
    return {metric: float(bias.detach().reshape(-1)[0])}
