"""The coordinator's model for the benchmark: float32 zeros of the case's shapes.

Referenced from the coordinator config as ``bench_model:zeros`` (this folder is on the
coordinator's PYTHONPATH); the Flower ServerApp builds the same tensors with numpy.
"""

from __future__ import annotations

import torch

__all__ = ["zeros"]


class _Tensors(torch.nn.Module):
    def __init__(self, shapes: list[list[int]]) -> None:
        super().__init__()
        self.t = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(*shape, dtype=torch.float32)) for shape in shapes
        )


def zeros(shapes: list[list[int]]) -> torch.nn.Module:
    """A module whose parameters are zero tensors of ``shapes``."""
    return _Tensors(shapes)
