"""Does a site's data fit the federation's model? Checked at start-up, before joining."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from fedsov.exceptions import DataError
from fedsov.site.data import Dataset

__all__ = ["check_data_fits"]


def check_data_fits(model: nn.Module, data: Dataset, *, source: str, model_ref: str) -> None:
    """A DataError naming ``source`` unless ``model`` takes ``data``'s features and labels.

    Runs the model on two rows (features must have the input shape it expects) and
    checks every label indexes one of its outputs (``0 .. outputs - 1``).
    """
    rows = torch.from_numpy(np.ascontiguousarray(data.x[:2], dtype=np.float32))
    where = f"{source}: features of shape {tuple(data.x.shape[1:])}"
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(rows)
    except Exception as exc:
        raise DataError(
            f"{where} do not fit the model {model_ref}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(rows):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(
            f"{where}: the model {model_ref} returns {shape} for {len(rows)} rows; "
            "a classifier must return (rows, classes)"
        )
    classes = int(out.shape[1])
    low, high = int(data.y.min()), int(data.y.max())
    if high >= classes:
        raise DataError(
            f"{source}: labels run from {low} to {high}, but the model {model_ref} has "
            f"{classes} outputs (labels 0..{classes - 1}); relabel the data or fix the model"
        )
