"""Build a model from its ``module:factory`` reference and move weights in and out.

torch is imported when a model is built or loaded, not with this module: what imports
it without building a model (a tool, the command line) stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fedsov.exceptions import ConfigError, ManifestMismatch
from fedsov.refs import resolve_ref

if TYPE_CHECKING:
    import torch

__all__ = ["build_model", "load_weights"]


def build_model(
    factory: str, kwargs: Mapping[str, Any], *, seed: int | None = None
) -> torch.nn.Module:
    """Call the factory (seeding torch first when ``seed`` is given)."""
    import torch

    fn = resolve_ref(factory, what="model factory")
    if not callable(fn):
        raise ConfigError(f"model factory {factory!r} is not callable")
    if seed is not None:
        torch.manual_seed(seed)
    try:
        model = fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"model factory {factory!r} rejected its kwargs {dict(kwargs)}: {exc}"
        ) from exc
    if not isinstance(model, torch.nn.Module):
        raise ConfigError(
            f"model factory {factory!r} returned {type(model).__name__}, not a torch Module"
        )
    return model


def load_weights(model: torch.nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy ``arrays`` into the model; names and shapes must match its state_dict exactly."""
    import torch

    state = model.state_dict()
    missing = [k for k in state if k not in arrays]
    extra = [k for k in arrays if k not in state]
    if missing or extra:
        raise ManifestMismatch(
            "model weights do not fit the local model: "
            f"missing {missing[:3]}, unexpected {extra[:3]}"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            value = arrays[name]
            if tuple(value.shape) != tuple(tensor.shape):
                raise ManifestMismatch(
                    f"tensor {name!r} has shape {list(value.shape)}, the local model needs "
                    f"{list(tensor.shape)}"
                )
            tensor.copy_(torch.from_numpy(np.array(value, copy=True)))
