"""Offline datasets, the FedProx synthetic generator and the stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from fedsov.exceptions import ConfigError
from fedsov.simulation.datasets import (
    load_dataset,
    load_digits,
    load_mnist_subset,
    make_synthetic,
    train_test_split,
)
from fedsov.site.data import Dataset


def test_digits_shape_range_and_classes() -> None:
    ds = load_digits()
    assert ds.x.shape == (1797, 64)
    assert ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64
    assert ds.x.min() == 0.0
    assert ds.x.max() == 1.0
    assert ds.num_classes == 10
    assert len(ds) == 1797


def test_mnist_subset_shape_range_and_balance() -> None:
    ds = load_mnist_subset()
    assert ds.x.shape == (5000, 784)
    assert ds.x.dtype == np.float32
    assert 0.0 == ds.x.min() < ds.x.max() == 1.0
    assert np.array_equal(np.bincount(ds.y), np.full(10, 500))


def test_registry_loads_by_name_and_lists_known_names() -> None:
    assert len(load_dataset("digits")) == 1797
    with pytest.raises(ConfigError, match=r"'cifar'.*known: digits, mnist"):
        load_dataset("cifar")


def test_synthetic_shapes_and_determinism() -> None:
    a = make_synthetic(alpha=1.0, beta=1.0, num_devices=5, seed=7)
    b = make_synthetic(alpha=1.0, beta=1.0, num_devices=5, seed=7)
    c = make_synthetic(alpha=1.0, beta=1.0, num_devices=5, seed=8)
    assert len(a) == 5
    for da, db in zip(a, b, strict=True):
        assert da.x.shape[1] == 60
        assert len(da) >= 50
        assert da.x.dtype == np.float32
        assert da.y.dtype == np.int64
        assert da.y.min() >= 0
        assert da.y.max() <= 9
        assert np.array_equal(da.x, db.x)
        assert np.array_equal(da.y, db.y)
    assert not np.array_equal(a[0].x[:50], c[0].x[:50])


def test_synthetic_heterogeneity_follows_alpha_beta() -> None:
    iid = make_synthetic(alpha=0.0, beta=0.0, num_devices=6, seed=0, iid=True)
    skew = make_synthetic(alpha=1.0, beta=1.0, num_devices=6, seed=0)
    # IID devices share v = 0: feature means stay near zero
    assert all(abs(float(d.x.mean())) < 0.3 for d in iid)
    # non-IID devices have shifted feature means v_k ~ N(B_k, 1)
    means = [d.x.mean(axis=0) for d in skew]
    assert max(float(np.abs(m - means[0]).mean()) for m in means[1:]) > 0.5


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        make_synthetic(alpha=-1.0, beta=0.0, seed=0)
    with pytest.raises(ConfigError):
        make_synthetic(alpha=0.0, beta=0.0, num_devices=0, seed=0)


def test_train_test_split_is_stratified_disjoint_and_deterministic() -> None:
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    x = np.arange(len(y), dtype=np.float32).reshape(-1, 1)  # x encodes the row index
    ds = Dataset(x, y)
    train, test = train_test_split(ds, test_fraction=0.2, seed=0)
    assert len(test) == 40
    assert len(train) == 160
    assert np.array_equal(np.bincount(test.y), [20, 10, 6, 4])
    rows = np.concatenate([train.x[:, 0], test.x[:, 0]]).astype(np.int64)
    assert np.array_equal(np.sort(rows), np.arange(len(y)))
    assert np.array_equal(y[test.x[:, 0].astype(np.int64)], test.y)
    again, _ = train_test_split(ds, test_fraction=0.2, seed=0)
    other, _ = train_test_split(ds, test_fraction=0.2, seed=1)
    assert np.array_equal(again.x, train.x)
    assert not np.array_equal(other.x, train.x)


def test_train_test_split_handles_singleton_classes_and_bad_fractions() -> None:
    ds = Dataset(np.zeros((11, 2), np.float32), np.array([0] * 10 + [1], dtype=np.int64))
    train, test = train_test_split(ds, test_fraction=0.1, seed=0)
    assert (len(train), len(test)) == (10, 1)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ConfigError, match="test_fraction"):
            train_test_split(ds, test_fraction=bad, seed=0)
