"""Opacus-compatible model factories (no BatchNorm) for the simulation datasets."""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsov.exceptions import ConfigError

__all__ = ["logistic", "mlp", "small_cnn"]


def _positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"model: {name} must be a positive integer, got {value}")


class _ToImage(nn.Module):
    """Reshape flat ``(n, C*H*W)`` (or already ``(n, C, H, W)``) input to ``(n, C, H, W)``."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.channels = channels
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.channels, self.size, self.size)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, size={self.size}"


def logistic(*, in_features: int = 64, num_classes: int = 10) -> nn.Module:
    """Multinomial logistic regression: Flatten -> Linear(in_features, num_classes).

    Few parameters, so DP-SGD's noise (whose norm grows with the parameter count) costs
    it least: the quickstart's model.
    """
    _positive(in_features=in_features, num_classes=num_classes)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))


def mlp(*, in_features: int = 64, hidden: int = 128, num_classes: int = 10) -> nn.Module:
    """Flatten -> Linear(in_features, hidden) -> ReLU -> Linear(hidden, num_classes)."""
    _positive(in_features=in_features, hidden=hidden, num_classes=num_classes)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def small_cnn(
    *, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, channels: int = 16
) -> nn.Module:
    """Two conv blocks (Conv3x3 -> GroupNorm -> ReLU -> MaxPool2) and a linear head.

    Accepts flat ``(n, C*H*W)`` or ``(n, C, H, W)`` input; ``image_size`` must be at least 4.
    """
    _positive(in_channels=in_channels, num_classes=num_classes, channels=channels)
    if image_size < 4:
        raise ConfigError(f"model: image_size must be at least 4, got {image_size}")
    wide = 2 * channels
    side = image_size // 4
    return nn.Sequential(
        _ToImage(in_channels, image_size),
        nn.Conv2d(in_channels, channels, kernel_size=3, padding=1),
        nn.GroupNorm(math.gcd(channels, 8), channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, wide, kernel_size=3, padding=1),
        nn.GroupNorm(math.gcd(wide, 8), wide),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(wide * side * side, num_classes),
    )
