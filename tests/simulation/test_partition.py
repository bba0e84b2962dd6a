"""Partitions are disjoint, cover every index, and follow their scheme."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsov.exceptions import ConfigError
from fedsov.simulation.partition import dirichlet_partition, iid_partition, partition


def _assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert joined.dtype == np.int64
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 400), sites=st.integers(1, 20), seed=st.integers(0, 2**32 - 1))
def test_iid_is_exact_cover_with_near_equal_sizes(n: int, sites: int, seed: int) -> None:
    if sites > n:
        with pytest.raises(ConfigError):
            iid_partition(np.zeros(n, dtype=np.int64), num_sites=sites, seed=seed)
        return
    parts = iid_partition(np.zeros(n, dtype=np.int64), num_sites=sites, seed=seed)
    assert len(parts) == sites
    _assert_exact_cover(parts, n)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(50, 600),
    classes=st.integers(1, 10),
    sites=st.integers(1, 5),
    alpha=st.floats(1.0, 100.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_is_exact_cover_with_min_size(
    n: int, classes: int, sites: int, alpha: float, seed: int
) -> None:
    """Inputs where a valid split is drawn: n >= 2 x sites x min_size and alpha >= 1. The
    hardest of them (one class, 50 examples, 5 sites, alpha 1) gives every site 5 in
    ~9% of the draws: all 1000 tries fail with probability 0.91^1000 < 1e-40."""
    labels = np.random.default_rng(seed).integers(0, classes, n)
    parts = dirichlet_partition(labels, num_sites=sites, alpha=alpha, seed=seed, min_size=5)
    assert len(parts) == sites
    _assert_exact_cover(parts, n)
    assert min(len(p) for p in parts) >= 5


@settings(max_examples=40, deadline=None)
@given(
    sites=st.integers(1, 20),
    min_size=st.integers(2, 30),  # n in [sites, sites x min_size): never empty
    alpha=st.floats(0.01, 100.0),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_dirichlet_refuses_too_few_examples_for_min_size(
    sites: int, min_size: int, alpha: float, seed: int, data: st.DataObject
) -> None:
    """Fewer than sites x min_size examples: no split can exist, whatever the draw."""
    n = data.draw(st.integers(sites, sites * min_size - 1))
    labels = np.arange(n) % 3
    with pytest.raises(ConfigError, match=f"{n} examples cannot give {sites} sites {min_size}"):
        dirichlet_partition(labels, num_sites=sites, alpha=alpha, seed=seed, min_size=min_size)


def test_iid_is_deterministic_and_seed_dependent() -> None:
    labels = np.arange(100) % 10
    a = iid_partition(labels, num_sites=4, seed=1)
    b = iid_partition(labels, num_sites=4, seed=1)
    c = iid_partition(labels, num_sites=4, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_dirichlet_small_alpha_skews_labels_more_than_large_alpha() -> None:
    labels = np.repeat(np.arange(10), 200)

    def skew(alpha: float) -> float:
        parts = dirichlet_partition(labels, num_sites=5, alpha=alpha, seed=0)
        # mean over sites of the share of the site's most common class
        return float(np.mean([np.bincount(labels[p]).max() / len(p) for p in parts]))

    assert skew(0.1) > 0.4
    assert skew(1000.0) < 0.2


def test_dirichlet_is_deterministic() -> None:
    labels = np.repeat(np.arange(10), 50)
    a = dirichlet_partition(labels, num_sites=5, alpha=0.5, seed=3)
    b = dirichlet_partition(labels, num_sites=5, alpha=0.5, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_dirichlet_impossible_min_size_raises() -> None:
    labels = np.repeat(np.arange(2), 20)
    with pytest.raises(ConfigError, match="cannot give 5 sites 10"):
        dirichlet_partition(labels, num_sites=5, alpha=1.0, seed=0)
    # feasible in principle but never drawn: two examples per site with tiny alpha, 1 try
    with pytest.raises(ConfigError, match="1 tries"):
        dirichlet_partition(labels, num_sites=20, alpha=0.001, seed=0, min_size=2, max_tries=1)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_dirichlet_rejects_non_positive_alpha(alpha: float) -> None:
    with pytest.raises(ConfigError, match="alpha"):
        dirichlet_partition(np.zeros(100, dtype=np.int64), num_sites=2, alpha=alpha, seed=0)


def test_partition_dispatch_and_errors() -> None:
    labels = np.repeat(np.arange(10), 30)
    iid = partition(labels, scheme="iid", num_sites=3, seed=0)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(iid, iid_partition(labels, num_sites=3, seed=0), strict=True)
    )
    dirichlet = partition(labels, scheme="dirichlet", num_sites=3, seed=0, alpha=0.5)
    _assert_exact_cover(dirichlet, len(labels))
    with pytest.raises(ConfigError, match="needs alpha"):
        partition(labels, scheme="dirichlet", num_sites=3, seed=0)
    with pytest.raises(ConfigError, match="known: iid, dirichlet"):
        partition(labels, scheme="shards", num_sites=3, seed=0)
    with pytest.raises(ConfigError, match="num_sites"):
        partition(labels, scheme="iid", num_sites=0, seed=0)
