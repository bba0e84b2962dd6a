"""Each simulated site's own data file, and the held-out test set, as NPZ files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedsov.exceptions import ConfigError
from fedsov.simulation.datasets import (
    load_dataset,
    make_synthetic,
    make_synthetic_pool,
    train_test_split,
)
from fedsov.simulation.partition import partition
from fedsov.simulation.scenario import DataPlan
from fedsov.site.data import Dataset, save_npz

__all__ = ["write_site_data"]


def _concat(parts: list[Dataset]) -> Dataset:
    return Dataset(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]))


def _pool_sites(data: DataPlan, seed: int, sites: int) -> tuple[list[Dataset], Dataset]:
    """One pool of FedProx Synthetic IID, the test set held out, the rest split with
    Dirichlet label skew; sites left below ``min_site_examples`` are topped up."""
    pool = make_synthetic_pool(samples=data.synthetic_samples, seed=seed)
    train, test = train_test_split(pool, test_fraction=data.test_fraction, seed=seed)
    if len(train) < sites * data.min_site_examples:
        raise ConfigError(
            f"synthetic: {len(train)} training examples (synthetic_samples = "
            f"{data.synthetic_samples}, less test_fraction = {data.test_fraction}) cannot "
            f"give {sites} sites min_site_examples = {data.min_site_examples} each; "
            "raise synthetic_samples or lower min_site_examples"
        )
    parts = partition(
        train.y,
        scheme="dirichlet",
        num_sites=sites,
        seed=seed,
        alpha=data.alpha,
        min_size=data.min_site_examples,
        top_up=True,  # with many sites, redrawing until each has enough never ends
    )
    return [train.subset(idx) for idx in parts], test


def _device_sites(data: DataPlan, seed: int, sites: int) -> tuple[list[Dataset], Dataset]:
    """FedProx Synthetic(alpha, beta): one device's data per site, each split alone."""
    devices = make_synthetic(
        alpha=data.synthetic_alpha, beta=data.synthetic_beta, num_devices=sites, seed=seed
    )
    splits = [
        train_test_split(dev, test_fraction=data.test_fraction, seed=seed + i)
        for i, dev in enumerate(devices)
    ]
    return [train for train, _ in splits], _concat([t for _, t in splits])


def _dataset_sites(data: DataPlan, seed: int, sites: int) -> tuple[list[Dataset], Dataset]:
    """A registered dataset, the test set held out, the rest partitioned."""
    train, test = train_test_split(
        load_dataset(data.dataset), test_fraction=data.test_fraction, seed=seed
    )
    parts = partition(
        train.y,
        scheme=data.partition,
        num_sites=sites,
        seed=seed,
        alpha=data.alpha,
        min_size=data.min_site_examples,
    )
    return [train.subset(idx) for idx in parts], test


def write_site_data(
    data: DataPlan, *, seed: int, names: Sequence[str], directory: Path
) -> tuple[dict[str, Path], Path]:
    """Partition the dataset over ``names``; returns {site: file} and the test file.

    ``synthetic`` with ``partition = "dirichlet"`` splits one pool of its IID variant
    (``synthetic_samples`` examples); with ``iid``, each site is one FedProx device.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if data.dataset == "synthetic":
        split = _pool_sites if data.partition == "dirichlet" else _device_sites
    else:
        split = _dataset_sites
    site_data, test = split(data, seed, len(names))
    paths = {}
    for name, ds in zip(names, site_data, strict=True):
        paths[name] = directory / f"{name}.npz"
        _save(paths[name], ds)
    test_path = directory / "test.npz"
    _save(test_path, test)
    return paths, test_path


def _save(path: Path, ds: Dataset) -> None:
    """A run's data is written again by every run: atomic, not fsynced."""
    save_npz(path, ds, durable=False)
