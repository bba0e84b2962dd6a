"""Each simulated site's own data file, and the held-out test set, as NPZ files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedsov.simulation.datasets import load_dataset, make_synthetic, train_test_split
from fedsov.simulation.partition import partition
from fedsov.simulation.scenario import DataPlan
from fedsov.site.data import Dataset, save_npz

__all__ = ["write_site_data"]


def _concat(parts: list[Dataset]) -> Dataset:
    return Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def write_site_data(
    data: DataPlan, *, seed: int, names: Sequence[str], directory: Path
) -> tuple[dict[str, Path], Path]:
    """Partition the dataset over ``names``; returns {site: file} and the test file."""
    directory.mkdir(parents=True, exist_ok=True)
    if data.dataset == "synthetic":
        devices = make_synthetic(
            alpha=data.synthetic_alpha,
            beta=data.synthetic_beta,
            num_devices=len(names),
            seed=seed,
        )
        splits = [
            train_test_split(dev, test_fraction=data.test_fraction, seed=seed + i)
            for i, dev in enumerate(devices)
        ]
        site_data = [train for train, _ in splits]
        test = _concat([t for _, t in splits])
    else:
        train, test = train_test_split(
            load_dataset(data.dataset), test_fraction=data.test_fraction, seed=seed
        )
        parts = partition(
            train.y, scheme=data.partition, num_sites=len(names), seed=seed, alpha=data.alpha
        )
        site_data = [train.subset(idx) for idx in parts]
    paths = {}
    for name, ds in zip(names, site_data, strict=True):
        paths[name] = directory / f"{name}.npz"
        save_npz(paths[name], ds)
    test_path = directory / "test.npz"
    save_npz(test_path, test)
    return paths, test_path
